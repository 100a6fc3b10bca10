"""The LoRA recipe on the tiny model (CPU): learning, exact resume, NaN stop, checkpoints in the index."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch

from finetune.recipe import FinetuneRecipe, TrainingError, lr_lambda
from finetune.run_config import FinetuneConfig, last_checkpoint
from tests.finetune.synth_store import CHILD_ENV, one_torch_thread, write_dataset  # noqa: F401


class ListLogger:
    """Keeps the raw event payloads (full float precision) in memory."""

    def __init__(self):
        self.events = []

    def log_dict(self, payload, step=None):
        self.events.append({**payload, "step": step})

    def close(self):
        pass

    def of(self, kind):
        return [e for e in self.events if e["event"] == kind]


@pytest.fixture(scope="module")
def two_episodes(tmp_path_factory):
    home = tmp_path_factory.mktemp("recipe") / "home"
    write_dataset(home, "toy", episodes=2, frames=6)
    write_dataset(home, "three", episodes=3, frames=5, seed=1)
    return home


def _cfg(**kw):
    base = dict(dataset="toy", model="tiny", steps=6, batch_size=2, lr=3e-2, lora_rank=8, eval_every=0,
                save_every=0, val_fraction=0.0, augment=False, seed=3)
    base.update(kw)
    return FinetuneConfig(**base)


def _run(home, cfg, **kw):
    log = ListLogger()
    result = FinetuneRecipe(cfg, home, logger=log, install_signal_handlers=False, **kw).run()
    return result, log


def test_loss_falls_when_overfitting_two_episodes(two_episodes):
    result, log = _run(two_episodes, _cfg(steps=20))
    losses = [e["loss"] for e in log.of("train")]
    assert result.status == "done" and len(losses) == 20
    assert sum(losses[-5:]) / 5 < losses[0] - 0.2, losses
    start = log.of("start")[0]
    assert start["train_episodes"] == 2 and start["memory"]["total_gib"] > 0
    assert "GiB" in start["memory_summary"]


def test_resume_continues_bit_exact_against_an_uninterrupted_run(two_episodes):
    cfg = _cfg(dataset="three", steps=8, save_every=4, eval_every=4, val_fraction=0.34, augment=True, eval_batches=1)
    full, full_log = _run(two_episodes, cfg, run_id="full")
    part, part_log = _run(two_episodes, cfg, run_id="split", stop_at_step=4)
    assert part.status == "cancelled" and part.step == 4
    assert part_log.of("cancelled")[0]["checkpoint"].endswith("0000004")
    rest, rest_log = _run(two_episodes, cfg, run_id="split", resume=True)
    assert rest.status == "done" and rest_log.of("start")[0]["resumed_from"].endswith("0000004")
    assert not rest_log.of("config_drift")
    full_losses = [e["loss"] for e in full_log.of("train")]
    split_losses = [e["loss"] for e in part_log.of("train")] + [e["loss"] for e in rest_log.of("train")]
    assert split_losses == full_losses  # bit-exact, not approximately equal
    assert [e["val_loss"] for e in rest_log.of("eval")] == [e["val_loss"] for e in full_log.of("eval")][-1:]
    from safetensors.torch import load_file

    a = load_file(str(full.checkpoint / "adapter" / "adapter_model.safetensors"))
    b = load_file(str(rest.checkpoint / "adapter" / "adapter_model.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    # the run and its checkpoints are in the store index
    from recorder.store import Store

    with Store.open(two_episodes) as store:
        run = store.run("split")
        assert run.status == "done" and run.best_metric is not None
        assert [c.step for c in store.checkpoints(run_id="split")] == [4, 8]
    ck = last_checkpoint(two_episodes / "runs" / "split")
    assert sorted(p.name for p in ck.iterdir()) == ["adapter", "config.json", "norm_stats.json",
                                                 "training_state.json", "training_state.safetensors"]
    stats = json.loads((ck / "norm_stats.json").read_text())
    assert set(stats["three"]["action"]) >= {"q01", "q99", "mask"}


def test_resume_with_changed_hyperparameters_reports_drift(two_episodes):
    cfg = _cfg(steps=3, save_every=2)
    _run(two_episodes, cfg, run_id="drift", stop_at_step=2)
    cfg.lr = 1e-3
    _, log = _run(two_episodes, cfg, run_id="drift", resume=True)
    drift = log.of("config_drift")
    assert drift and drift[0]["fields"]["lr"] == {"saved": 3e-2, "now": 1e-3}


def test_nan_loss_stops_with_a_clear_message_and_keeps_the_last_good_checkpoint(two_episodes):
    log = ListLogger()
    recipe = FinetuneRecipe(_cfg(steps=10, save_every=2), two_episodes, run_id="nan", logger=log,
                            install_signal_handlers=False)
    recipe.setup()
    inner = recipe.train_model

    class PoisonAfterThree(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.inner = inner

        def forward(self, **batch):
            out = self.inner(**batch)
            if recipe.step >= 3:
                out.loss = out.loss * float("nan")
            return out

    recipe.train_model = PoisonAfterThree()
    with pytest.raises(TrainingError, match=r"loss became nan at step 4 .*lower --lr.*0000002") as err:
        try:
            recipe.train()
        finally:
            recipe.cleanup()
    assert "\n" not in str(err.value)
    assert log.of("error")[0]["kind"] == "nan_loss"
    assert last_checkpoint(two_episodes / "runs" / "nan").name == "0000002"
    from recorder.store import Store

    with Store.open(two_episodes) as store:
        assert store.run("nan").status == "failed"


def test_chunk_head_trains_with_l1_and_reports_real_unit_error(two_episodes):
    result, log = _run(two_episodes, _cfg(dataset="three", action_head="chunk", chunk_size=4, steps=10,
                                          lr=3e-3, eval_every=8, val_fraction=0.34, eval_batches=1))
    losses = [e["loss"] for e in log.of("train")]
    assert sum(losses[-3:]) < sum(losses[:3]), losses
    ev = log.of("eval")[-1]
    assert ev["l1_real"] > ev["l1"]  # real units (|a| up to 40) are larger than normalized ones
    info = json.loads((result.checkpoint / "config.json").read_text())["model"]
    assert info["action_head"] == "chunk" and info["chunk_size"] == 4 and info["action_dim"] == 6


def test_schedule_warms_up_then_decays_to_the_floor():
    assert lr_lambda(0, 4, 20, 0.1) == pytest.approx(0.25)
    assert lr_lambda(3, 4, 20, 0.1) == pytest.approx(1.0)
    assert lr_lambda(20, 4, 20, 0.1) == pytest.approx(0.1)
    assert lr_lambda(12, 4, 20, 0.1) == pytest.approx(0.55)


def test_4bit_on_cpu_is_a_clear_error(two_episodes):
    from recorder.errors import ConfigError

    with pytest.raises(ConfigError, match="--4bit .*CUDA"):
        FinetuneRecipe(_cfg(quantize_4bit=True, device="cpu"), two_episodes, logger=ListLogger(),
                       install_signal_handlers=False).run()


@pytest.fixture(autouse=True, scope="module")
def _cleanup_runs(two_episodes):
    yield
    shutil.rmtree(two_episodes / "runs", ignore_errors=True)


@pytest.mark.parametrize("checkpointing, batch, measured_gib", [
    (False, 1, 18.7), (False, 4, 28.3), (False, 16, 66.8), (True, 8, 22.9), (True, 16, 30.4)])
def test_memory_estimate_matches_the_measured_openvla_7b_numbers(checkpointing, batch, measured_gib):
    """OpenVLA-7B-shaped, LoRA r=32 all-linear, 224 px, bf16 on an H100 (../shared/ENVIRONMENT.md)."""
    from finetune.presets import ModelShape, estimate_memory, llama_lora_params_per_rank

    shape = ModelShape(7_541_000_000, 4096, 32, 11008, 286, int(llama_lora_params_per_rank(4096, 11008, 32) * 1.4))
    est = estimate_memory(shape, batch_size=batch, lora_rank=32, dtype="bf16", quantize_4bit=False,
                          activation_checkpointing=checkpointing, lean=False)  # plain transformers + peft
    assert measured_gib <= est.total_gib <= measured_gib * 1.1  # errs on the safe side, by little
    assert 100e6 < est.lora_params < 130e6  # ~114M trainable were measured


def test_presets_follow_gpu_memory_and_an_oversized_batch_is_refused_before_training():
    from finetune.presets import GpuInfo, ModelShape, check_fits, estimate_memory, preset_for
    from recorder.errors import ConfigError

    assert preset_for(None).name == "cpu"
    assert preset_for(GpuInfo("RTX 4090", 23.6)).name == "gpu-24gb"
    assert preset_for(GpuInfo("RTX 3060", 11.8)).name == "gpu-12gb"
    assert preset_for(GpuInfo("H100", 79.2)).name == "gpu-80gb"
    shape = ModelShape(7_541_000_000, 4096, 32, 11008, 286, 2_500_000)
    est = estimate_memory(shape, batch_size=16, lora_rank=32, dtype="bf16", quantize_4bit=False,
                          activation_checkpointing=True, lean=False)
    with pytest.raises(ConfigError, match=r"batch 16 needs ~\d+\.\d GiB but GPU RTX 4090 has 23.6 GiB: use --batch [4-8] "):
        check_fits(est, 23.6, "GPU RTX 4090")


def _lora_params(model):
    return {n: p for n, p in model.named_parameters() if "lora_" in n}


def test_default_lora_adapts_llm_and_projector_with_frozen_towers_and_include_vision_adds_them(two_episodes):
    recipe = FinetuneRecipe(_cfg(dtype="bf16", activation_checkpointing=True, checkpoint_layers=1), two_episodes,
                            logger=ListLogger(), install_signal_handlers=False)
    try:
        recipe.setup()
        lora = _lora_params(recipe.model)
        assert lora and not any("vision_backbone" in n for n in lora)
        assert any("projector" in n for n in lora) and any("language_model" in n for n in lora)
        # adapters stay in the base weights' dtype (no fp32 upcast), and so does every trainable tensor
        assert {p.dtype for p in recipe.model.parameters() if p.requires_grad} == {torch.bfloat16}
        towers = list(recipe.vla.vision_backbone.parameters())
        assert not any(p.requires_grad for p in towers)
        assert recipe.vla.checkpoint_layers == 1  # the first LLM layer, as configured
        assert recipe.estimate.lora_params == sum(p.numel() for p in lora.values())
        batch, _ = next(iter(recipe.train_loader))
        recipe.train_model.train()
        loss = recipe.train_model(**batch).loss
        loss.backward()  # towers run under no_grad: nothing of theirs gets a gradient
        assert loss.dtype in (torch.bfloat16, torch.float32) and torch.isfinite(loss)
        assert all(p.grad is None for p in towers)
        assert all(p.grad is not None for p in lora.values())
    finally:
        recipe.cleanup()
        shutil.rmtree(recipe.path, ignore_errors=True)

    wide = FinetuneRecipe(_cfg(lora_include_vision=True), two_episodes, logger=ListLogger(),
                          install_signal_handlers=False)
    try:
        wide.setup()
        lora = _lora_params(wide.model)
        assert any("vision_backbone" in n for n in lora)
        assert {p.dtype for p in lora.values()} == {torch.float32}  # the CPU stays fp32
        assert wide.estimate.lora_params == sum(p.numel() for p in lora.values())
        assert wide.estimate.lora_params > recipe.estimate.lora_params
    finally:
        wide.cleanup()
        shutil.rmtree(wide.path, ignore_errors=True)


@pytest.mark.parametrize("checkpointing, batch, measured_gib", [(False, 8, 26.6), (True, 8, 15.7), (True, 32, 19.2)])
def test_lean_memory_estimate_matches_the_measured_recipe_on_openvla_7b(checkpointing, batch, measured_gib):
    """bench/finetune_gpu.py "ours" rows (H100, docs/benchmarks.md): 81.0M LoRA params on LLM + projector."""
    from finetune.presets import ModelShape, estimate_memory

    shape = ModelShape(7_541_000_000, 4096, 32, 11008, 286, 81_000_000 // 32)
    est = estimate_memory(shape, batch_size=batch, lora_rank=32, dtype="bf16", quantize_4bit=False,
                          activation_checkpointing=checkpointing, lean=True)
    assert measured_gib <= est.total_gib <= measured_gib * 1.1


def test_24gb_preset_is_batch_32_with_every_layer_checkpointed_and_fits_a_4090():
    from finetune.presets import PRESETS, ModelShape, check_fits, estimate_memory

    s = PRESETS["gpu-24gb"].settings
    assert (s["batch_size"], s["grad_accum"], s["activation_checkpointing"], s["checkpoint_layers"]) == (32, 1, True, 0)
    shape = ModelShape(7_541_000_000, 4096, 32, 11008, 286, 81_000_000 // 32)
    est = estimate_memory(shape, batch_size=32, lora_rank=32, dtype="bf16", quantize_4bit=False,
                          activation_checkpointing=True, lean=True)
    check_fits(est, 23.6, "GPU RTX 4090")  # does not raise
    assert est.total_gib <= 22.0


@pytest.mark.gpu
def test_recipe_on_cuda_trains_bf16_adapters_with_fused_adamw_and_checkpointing(two_episodes):
    """The GPU path: bf16 base and adapters, fused AdamW, every LLM layer checkpointed, towers frozen."""
    cfg = _cfg(device="cuda", dtype="auto", steps=4, activation_checkpointing=True, lr=1e-2)
    recipe = FinetuneRecipe(cfg, two_episodes, logger=ListLogger(), install_signal_handlers=False,
                            run_id="gpu-run")
    try:
        recipe.setup()
        assert recipe.dtype == torch.bfloat16 and recipe.vla.checkpoint_layers == "all"
        lora = _lora_params(recipe.model)
        assert {p.dtype for p in lora.values()} == {torch.bfloat16} and all(p.is_cuda for p in lora.values())
        assert not any("vision_backbone" in n for n in lora)
        assert recipe.optimizer.defaults.get("fused") is True
        result = recipe.train()
    finally:
        recipe.cleanup()
    losses = [e["loss"] for e in recipe.logger.of("train")]
    assert result.status == "done" and len(losses) == 4 and all(np.isfinite(losses))
    assert all(e["gpu_mem_gb"] > 0 for e in recipe.logger.of("train"))


def test_after_a_resume_each_replayed_step_is_in_metrics_jsonl_once(two_episodes):
    """Killed after logging step 5 (its last checkpoint is step 4): the resumed run trains step 5 again, and
    metrics.jsonl (what the Fine-tune tab draws) has one line per step."""
    from finetune.metrics import JsonlLogger, read_events

    run = two_episodes / "runs" / "killed"

    class DiesAfterStep5(JsonlLogger):
        def log_dict(self, payload, step=None):
            super().log_dict(payload, step)
            if payload.get("event") == "train" and step == 5:
                raise KeyboardInterrupt  # the process dies here (as a SIGKILL would, a step after the checkpoint)

    cfg = _cfg(steps=6, save_every=2)
    logger = DiesAfterStep5(run / "metrics.jsonl", stream=None)
    with pytest.raises(KeyboardInterrupt):
        FinetuneRecipe(cfg, two_episodes, run_id="killed", logger=logger, install_signal_handlers=False).run()
    logger.close()
    assert last_checkpoint(run).name == "0000004"
    first = {e["step"]: e["loss"] for e in read_events(run / "metrics.jsonl") if e["event"] == "train"}
    result = FinetuneRecipe(cfg, two_episodes, run_id="killed", resume=True, install_signal_handlers=False).run()
    assert result.status == "done" and result.step == 6
    events = read_events(run / "metrics.jsonl")
    assert [e["step"] for e in events if e["event"] == "train"] == [1, 2, 3, 4, 5, 6]
    assert [e["step"] for e in events if e["event"] == "checkpoint"] == [2, 4, 6]
    rewound = [e for e in events if e["event"] == "rewound"]
    assert len(rewound) == 1 and rewound[0]["step"] == 4 and rewound[0]["dropped"] == 1
    again = {e["step"]: e["loss"] for e in events if e["event"] == "train"}
    assert [again[s] for s in (1, 2, 3, 4)] == [first[s] for s in (1, 2, 3, 4)]  # history before the checkpoint kept
