"""The flow-matching and FAST heads end to end on the tiny model (CPU): train, checkpoint, policy, export,
and the bad input a person can give (too few chunks for FAST, a head the run never had, another action size)."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch

from finetune.fast_tokenizer import FAST_FILE, MIN_FAST_CHUNKS, FastTokenizer
from finetune.recipe import FinetuneRecipe, export_merged
from finetune.run_config import FinetuneConfig
from finetune.runtime import load_policy
from recorder.errors import ConfigError, ModelError
from tests.finetune.synth_store import one_torch_thread, write_dataset  # noqa: F401
from tests.finetune.test_recipe import ListLogger, _run


@pytest.fixture(scope="module")
def home(tmp_path_factory):
    h = tmp_path_factory.mktemp("heads") / "home"
    write_dataset(h, "few", episodes=2, frames=6)  # 12 chunks: too few for FAST
    write_dataset(h, "many", episodes=4, frames=16, seed=2)  # 64 chunks
    write_dataset(h, "three_dims", episodes=2, frames=6, action_dim=3, seed=4)
    yield h
    shutil.rmtree(h / "runs", ignore_errors=True)


def _cfg(**kw):
    base = dict(dataset="many", model="tiny", steps=12, batch_size=4, lr=3e-3, lora_rank=8, eval_every=0,
                save_every=0, val_fraction=0.0, augment=False, seed=3, chunk_size=4)
    base.update(kw)
    return FinetuneConfig(**base)


def _obs(seed=0):
    return np.random.default_rng(seed).integers(0, 255, (64, 64, 3), dtype=np.uint8)


# ------------------------------------------------------------------------------------------------ FAST tokenizer


def test_fast_tokenizer_round_trips_smooth_chunks_in_far_fewer_tokens_than_bins():
    rng = np.random.default_rng(0)
    t = np.arange(8)[:, None]
    chunks = 0.8 * np.sin(rng.uniform(0, 6, (300, 1, 1)) + 0.3 * t[None] + np.arange(6)[None, None])
    tok = FastTokenizer.fit(chunks, vocab_size=256)
    ids = tok.encode(chunks[5])
    assert len(ids) < 8 * 6 / 2  # bins need one token per value: 48
    assert np.abs(tok.decode(ids) - chunks[5]).max() < 0.1  # rounding at scale 10 in the DCT domain
    again = FastTokenizer.from_dict(json.loads(tok.to_json()))
    assert again.encode(chunks[5]) == ids  # the stored tokenizer encodes exactly as the fitted one
    assert tok.decode(ids[:-1]) is None and tok.decode([10_000]) is None  # undecodable -> None, no exception


def test_fast_tokenizer_refuses_too_few_chunks_with_one_line():
    with pytest.raises(ConfigError, match=f"needs at least {MIN_FAST_CHUNKS}"):
        FastTokenizer.fit(np.zeros((10, 4, 2)), vocab_size=64)


# ------------------------------------------------------------------------------------------------ flow


def test_flow_head_trains_and_the_policy_reuses_one_prefix_for_ten_euler_steps(home, tmp_path, monkeypatch):
    result, log = _run(home, _cfg(action_head="flow", use_state=True, steps=15, lr=1e-2, eval_every=5,
                                  val_fraction=0.25, eval_batches=2))
    assert result.status == "done"
    val = [e["val_loss"] for e in log.of("eval")]  # fixed noise and times: comparable across evaluations
    assert val[-1] < val[0] - 0.05, val
    info = json.loads((result.checkpoint / "config.json").read_text())["model"]
    assert info["action_head"] == "flow" and info["head_config"]["flow_steps"] == 10

    policy = load_policy(result.checkpoint)
    assert policy.action_head == "flow" and policy.vla.state_dim == 6
    from finetune.models import vla as vla_mod

    calls = []
    real = vla_mod._prefix_layer
    monkeypatch.setattr(vla_mod, "_prefix_layer", lambda *a, **k: calls.append(1) or real(*a, **k))
    expert_calls = []
    policy.vla.flow_head.register_forward_hook(lambda *a: expert_calls.append(1))
    out = policy.predict({"front": _obs()}, np.zeros(6, np.float32), "pick up the red cube")
    n_layers = len(policy.vla.decoder.layers)
    assert len(calls) == n_layers and len(expert_calls) == 10  # each LLM layer once (the prefix), then 10 Euler steps
    assert out.actions.shape == (4, 6) and out.confidence.shape == (4,)
    assert ((out.confidence >= 0) & (out.confidence <= 1)).all()
    stats = json.loads((result.checkpoint / "norm_stats.json").read_text())["many"]["action"]
    assert (out.actions >= np.array(stats["q01"]) - 1e-3).all() and (out.actions <= np.array(stats["q99"]) + 1e-3).all()

    # the merged export carries the expert: it predicts what the checkpoint predicts from the same noise
    merged = export_merged(home, str(result.checkpoint.parent.parent), tmp_path / "flow_export")
    exported = load_policy(merged)
    assert exported.action_head == "flow"
    torch.manual_seed(5)
    a = policy.predict({"front": _obs(1)}, np.zeros(6, np.float32), "pick up the red cube").actions
    torch.manual_seed(5)
    b = exported.predict({"front": _obs(1)}, np.zeros(6, np.float32), "pick up the red cube").actions
    assert np.abs(a - b).max() < 1e-3 * np.abs(a).max() + 1e-4

    # bad input: a 3-D dataset on an export whose flow head predicts 6 dims: one line, no run folder
    runs_before = set((home / "runs").iterdir())
    with pytest.raises(ConfigError, match="predicts 6 action dims but dataset 'three_dims' has 3"):
        _run(home, _cfg(dataset="three_dims", model=str(merged), action_head="flow"))
    assert set((home / "runs").iterdir()) == runs_before

    # bad input: a policy caller expecting a flow head on a chunk-less / flow-less checkpoint
    with pytest.raises(ModelError, match="has no fast head"):
        load_policy(result.checkpoint, action_head="fast")


def test_flow_loss_and_gradients_are_the_same_with_activation_checkpointing(monkeypatch):
    import torch.utils.checkpoint as ckpt_mod

    from finetune.models import load_vla

    used = []
    real = ckpt_mod.checkpoint
    monkeypatch.setattr(ckpt_mod, "checkpoint", lambda *a, **k: used.append(1) or real(*a, **k))

    vla = load_vla("tiny", device="cpu", action_head="flow", chunk_size=4, action_dim=3)
    names = [n for n, _ in vla.named_parameters() if n.startswith("flow_head.") or
             (n.startswith("language_model.") and "layers.0.self_attn.q_proj" in n)]
    params = [dict(vla.named_parameters())[n] for n in names]
    for p in params:
        p.requires_grad_(True)
    rng = np.random.default_rng(0)
    batch = vla.collate([vla.prepare([_obs(i)], "pick it up", rng.uniform(-1, 1, (4, 3))) for i in range(2)])
    vla.train()
    results = []
    for layers in (None, "all"):
        vla.checkpoint_layers = layers
        torch.manual_seed(0)
        loss = vla(**batch).loss
        grads = torch.autograd.grad(loss, params, allow_unused=True)
        results.append((loss.detach(), grads))
    (l0, g0), (l1, g1) = results
    assert len(used) == len(vla.decoder.layers)  # the prefix layers were recomputed in backward, not stored
    assert torch.equal(l0, l1)
    assert all((a is None and b is None) or torch.allclose(a, b, atol=1e-6) for a, b in zip(g0, g1))
    learn = {k: any(g is not None and float(g.abs().sum()) > 0 for n, g in zip(names, g0) if n.startswith(k))
             for k in ("flow_head", "language_model")}
    assert learn == {"flow_head": True, "language_model": True}  # the loss reaches the expert and the VLM


def test_resuming_a_tokens_run_as_flow_is_refused_before_any_step(home):
    result, _ = _run(home, _cfg(dataset="few", steps=2, chunk_size=1))
    cfg = _cfg(dataset="few", steps=4, chunk_size=1, action_head="flow")
    log = ListLogger()
    with pytest.raises(ConfigError, match="trained with the tokens head, so its checkpoint has no flow head"):
        FinetuneRecipe(cfg, home, run_id=result.run_id, resume=True, logger=log, install_signal_handlers=False).run()
    assert not log.of("train")


# ------------------------------------------------------------------------------------------------ FAST


def test_fast_on_too_few_chunks_is_one_line_and_writes_no_run_folder(home):
    before = set((home / "runs").iterdir()) if (home / "runs").exists() else set()
    with pytest.raises(ConfigError, match=r"dataset 'few' gives 12 training chunks.*at least 50"):
        _run(home, _cfg(dataset="few", action_head="fast"))
    after = set((home / "runs").iterdir()) if (home / "runs").exists() else set()
    assert after == before


def test_fast_run_stores_its_tokenizer_and_an_undecodable_output_holds_still(home, tmp_path, monkeypatch):
    result, log = _run(home, _cfg(action_head="fast", steps=12, lr=1e-2))
    assert result.status == "done"
    head = log.of("start")[0]["head"]
    assert head["fast_mean_tokens"] < head["bin_tokens"]  # fewer tokens per chunk than K*D bins
    losses = [e["loss"] for e in log.of("train")]
    assert np.mean(losses[-3:]) < np.mean(losses[:3]), losses
    assert (result.checkpoint / FAST_FILE).is_file()

    policy = load_policy(result.checkpoint)
    saved = FastTokenizer.load(result.checkpoint)
    chunk = np.linspace(-0.5, 0.5, 24).reshape(4, 6)
    assert policy.vla.head.tokenizer.encode(chunk) == saved.encode(chunk)  # decodes as training encoded
    out = policy.predict({"front": _obs()}, np.zeros(6, np.float32), "pick up the red cube")
    assert out.actions.shape == (4, 6) and out.confidence.shape == (4,)

    # a sequence that is not a chunk (tokens outside the FAST range): a hold-still chunk, counted, no crash
    vla = policy.vla
    n0 = policy.undecodable  # (the briefly trained model may already emit a few undecodable sequences)
    monkeypatch.setattr(vla, "_fast_decode", lambda p, ids, n, L: (torch.full((1, n), 5), torch.full((1, n), 0.9)))
    state = np.array([10, -20, 30, 0, 5, 50], np.float32)
    out = policy.predict({"front": _obs()}, state, "pick up the red cube")
    assert out.held and policy.undecodable == n0 + 1
    assert np.allclose(out.actions, np.tile(state, (4, 1))) and (out.confidence == 0).all()

    merged = export_merged(home, str(result.checkpoint.parent.parent), tmp_path / "fast_export")
    assert (merged / FAST_FILE).is_file()
    assert load_policy(merged).vla.head.tokenizer.encode(chunk) == saved.encode(chunk)


def test_cli_takes_every_head_and_fast_on_too_few_chunks_exits_2_with_one_line(home, capsys):
    from studio.cli import main

    rc = main(["--home", str(home), "finetune", "--dataset", "few", "--model", "tiny", "--preset", "cpu",
               "--action-head", "fast", "--chunk", "4", "--steps", "2", "--run-id", "fast-too-few"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and "FAST tokenizer needs at least 50" in err[0], err
    assert not (home / "runs" / "fast-too-few").exists()  # nothing half-written
    with pytest.raises(SystemExit) as exit_info:  # argparse's own choice check
        main(["--home", str(home), "finetune", "--dataset", "few", "--model", "tiny", "--action-head", "diffusion"])
    assert exit_info.value.code == 2 and "'tokens', 'chunk', 'flow', 'fast'" in capsys.readouterr().err


@pytest.mark.parametrize("head", ["tokens", "chunk"])
def test_checkpoints_written_before_the_head_interface_predict_the_same_actions(head, tmp_path):
    """tests/finetune/pre_heads_fixture: written by the code before issue 15 (its make_fixture.py says how)."""
    from pathlib import Path

    fixture = Path(__file__).parent / "pre_heads_fixture"
    run = tmp_path / head
    shutil.copytree(fixture / head, run)
    expected = np.load(fixture / "expected.npz")
    policy = load_policy(run)  # the run folder, through checkpoints/last, as a user points at it
    assert policy.action_head == head
    out = policy.predict({"front": expected["image"]}, expected["state"], "pick up the red cube")
    np.testing.assert_allclose(out.actions, expected[f"{head}_actions"], rtol=1e-5, atol=1e-4)
    if head == "tokens":
        np.testing.assert_allclose(out.confidence, expected["tokens_confidence"], rtol=1e-5, atol=1e-6)


def test_a_resumed_fast_run_keeps_the_tokenizer_it_started_with(tmp_path):
    home = tmp_path / "home"
    write_dataset(home, "grow", episodes=4, frames=16, seed=5)
    first, _ = _run(home, _cfg(dataset="grow", action_head="fast", steps=6), stop_at_step=3)
    assert first.status == "cancelled"
    saved = (first.checkpoint / FAST_FILE).read_text()
    write_dataset(home, "grow", episodes=3, frames=16, seed=9)  # new demos: a refit would give another vocabulary
    done, _ = _run(home, _cfg(dataset="grow", action_head="fast", steps=6), run_id=first.run_id, resume=True)
    assert done.status == "done" and done.step == 6
    assert (done.checkpoint / FAST_FILE).read_text() == saved  # encoded with one tokenizer from step 1 to the end


# ------------------------------------------------------------------------------------------------ generic VLMs


def test_flow_on_an_llm_it_cannot_read_is_one_line_before_any_run_folder(home, tmp_path, capsys):
    from finetune.models import load_vla
    from studio.cli import main
    from tests.finetune.test_models import tiny_idefics3

    vlm = tiny_idefics3(tmp_path / "qwen3-vlm", llm="qwen3")
    capsys.readouterr()  # (transformers' save progress bars)
    rc = main(["--home", str(home), "finetune", "--dataset", "many", "--model", str(vlm), "--preset", "cpu",
               "--action-head", "flow", "--chunk", "4", "--steps", "2", "--run-id", "flow-qwen3"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1, err
    assert "flow needs a Llama, Mistral or Qwen2 LLM" in err[0] and "LLM is qwen3" in err[0] and str(vlm) in err[0]
    assert not (home / "runs" / "flow-qwen3").exists()  # nothing half-written
    with pytest.raises(ModelError, match="LLM is Qwen3Model: use --action-head chunk"):  # a caller loading it directly
        load_vla(vlm, device="cpu", action_head="flow", chunk_size=4, action_dim=6)


def test_fast_on_a_generic_vlm_exports_the_tokenizer_it_trained_with(home, tmp_path):
    from tests.finetune.test_models import tiny_idefics3

    vlm = tiny_idefics3(tmp_path / "llama-vlm")
    result, _log = _run(home, _cfg(model=str(vlm), action_head="fast", steps=3))
    assert result.status == "done"
    merged = export_merged(home, str(result.checkpoint.parent.parent), tmp_path / "generic_fast_export")
    assert (merged / FAST_FILE).is_file()
    policy = load_policy(merged)
    assert type(policy.vla).__name__ == "GenericVLA" and policy.action_head == "fast"
    chunk = np.linspace(-0.5, 0.5, 24).reshape(4, 6)
    assert policy.vla.head.tokenizer.encode(chunk) == FastTokenizer.load(result.checkpoint).encode(chunk)
    out = policy.predict({"front": _obs()}, None, "pick up the red cube")
    assert out.actions.shape == (4, 6) and np.isfinite(out.actions).all()


# ------------------------------------------------------------------------------------------------ on a GPU


@pytest.mark.gpu
@pytest.mark.parametrize("head", ["flow", "fast"])
def test_flow_and_fast_train_on_cuda_and_the_gpu_policy_predicts_the_cpu_chunk_through_cuda_graphs(home, head,
                                                                                                  monkeypatch):
    monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", False)  # fp32 on both devices: comparable chunks
    result, log = _run(home, _cfg(action_head=head, use_state=True, steps=8, lr=1e-2, device="cuda", dtype="fp32"))
    assert result.status == "done" and len(log.of("train")) == 8
    assert all(np.isfinite(e["loss"]) for e in log.of("train"))
    assert log.of("train")[-1]["gpu_mem_gb"] > 0  # the steps ran on the GPU

    cpu = load_policy(result.checkpoint, device="cpu")
    # the GPU path as a rollout gets it (fused weights, each chunk one CUDA graph); no torch.compile here, so the
    # test does not spend a minute autotuning
    gpu = load_policy(result.checkpoint, device="cuda", dtype=torch.float32, compile_decode=False)
    assert gpu.vla.use_cuda_graphs and gpu.action_head == head
    state = np.array([10, -20, 30, 0, 5, 50], np.float32)
    outs = []
    for policy in (cpu, gpu, gpu):  # CPU reference, then the GPU's capture and its replay
        torch.manual_seed(11)  # the flow head draws its noise from the CPU generator: the same draws on both
        outs.append(policy.predict({"front": _obs(2)}, state, "pick up the red cube"))
    want, first, again = outs
    for out in (first, again):
        assert out.actions.shape == (4, 6) and out.actions.dtype == np.float32 and np.isfinite(out.actions).all()
        assert out.confidence.shape == (4,)
        assert np.allclose(out.normalized, want.normalized, atol=2e-3), (out.normalized, want.normalized)
        assert out.held == want.held  # FAST: the same tokens decode (or hold still) on both devices
    assert again.latency_s < first.latency_s  # the second call replays the captured graph
