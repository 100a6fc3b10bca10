"""`--gpus N` on the CPU: torchrun + DDP / FSDP2 on the gloo backend match one process with the same global batch,
a run resumes across a change of N, and only rank 0 writes metrics and checkpoints."""

from __future__ import annotations

import json

import pytest

from studio.cli import main
from tests.finetune.synth_store import CHILD_ENV, one_torch_thread, write_dataset  # noqa: F401


def _events(run):
    lines = (run / "metrics.jsonl").read_text().splitlines()
    return lines, [json.loads(line) for line in lines]


def _train_losses(run):
    _, events = _events(run)
    return [e["loss"] for e in events if e["event"] == "train"], events


def _adapter(home, run, step):
    from safetensors.torch import load_file

    return load_file(str(home / "runs" / run / "checkpoints" / f"{step:07d}" / "adapter" / "adapter_model.safetensors"))


def _assert_same_adapter(a, b, atol=1e-5):
    assert a.keys() == b.keys() and len(a) > 0
    worst = max(float((a[k] - b[k]).abs().max()) for k in a)
    assert worst <= atol, f"adapters differ by {worst:g}"


def _common(home, steps=3):
    return ["--home", str(home), "finetune", "--dataset", "toy", "--model", "tiny", "--steps", str(steps),
            "--lr", "0.03", "--lora-rank", "4", "--val-fraction", "0", "--eval-every", "0", "--device", "cpu",
            "--no-augment"]


def _assert_rank0_only(home, run, capfd_text, steps):
    """One writer: every line of metrics.jsonl is unique, one start/done, one train event per step, and the
    children's stdout carries each train line once (rank 1 prints nothing)."""
    lines, events = _events(home / "runs" / run)
    assert len(lines) == len(set(lines)), "metrics.jsonl has duplicated lines (more than one writer)"
    kinds = [e["event"] for e in events]
    assert kinds.count("start") == 1 and kinds.count("done") == 1
    assert [e["step"] for e in events if e["event"] == "train"] == list(range(1, steps + 1))
    printed = [json.loads(ln) for ln in capfd_text.splitlines() if ln.startswith("{")]
    mine = [e for e in printed if e.get("event") == "start" and e.get("run_id") == run]
    assert len(mine) == 1  # the launcher's ranks printed one start line: rank 1 has no logger
    for line in (ln for ln in lines if '"train"' in ln):
        assert capfd_text.count(line) == 1
    assert sorted(p.name for p in (home / "runs" / run).rglob("metrics.jsonl")) == ["metrics.jsonl"]


@pytest.mark.slow
def test_two_gloo_ranks_match_a_single_process_with_the_same_global_batch(home, capfd):
    write_dataset(home, "toy", episodes=2, frames=6)
    common = _common(home)
    assert main([*common, "--batch", "2", "--run-id", "single"]) == 0
    assert main([*common, "--batch", "1", "--gpus", "2", "--run-id", "ddp"]) == 0
    out = capfd.readouterr().out
    single, _ = _train_losses(home / "runs" / "single")
    ddp, events = _train_losses(home / "runs" / "ddp")
    assert len(ddp) == 3 and ddp == pytest.approx(single, rel=1e-4, abs=1e-5)
    start = next(e for e in events if e["event"] == "start")
    assert start["world"] == 2 and start["sharding"] == "ddp" and start["global_batch"] == 2
    sync = next(e for e in events if e["event"] == "ranks_in_sync")
    assert sync["max_param_diff"] == 0.0
    _assert_rank0_only(home, "ddp", out, 3)
    _assert_same_adapter(_adapter(home, "single", 3), _adapter(home, "ddp", 3))


@pytest.mark.slow
def test_a_run_resumes_across_changes_of_n_and_sharding_with_the_same_global_batch(home, capfd):
    """One run of 6 steps, global batch 4, whose process layout changes at every resume (no --batch: the CLI keeps
    the global batch): FSDP2 (decoder layers sharded) on 2 gloo ranks (steps 1-2) -> one plain process from the
    gathered checkpoint (3) -> 2 DDP ranks (4) -> one process (5) -> FSDP on 2 ranks again from the plain
    checkpoint (6). The losses and the final adapter are those of one uninterrupted single process: AdamW's
    moments, the schedule and the data stream go on across every change. (One chain of 3 launches instead of
    a test per change: each torchrun launch costs several seconds of CPU here.)"""
    write_dataset(home, "toy", episodes=2, frames=6)
    common = _common(home, steps=6)
    assert main([*common, "--batch", "4", "--run-id", "ref"]) == 0
    assert main([*common, "--batch", "2", "--gpus", "2", "--sharding", "fsdp", "--run-id", "split",
                 "--stop-at-step", "2"]) == 0
    from finetune.checkpoint import load_training_state

    # the FSDP ranks wrote the usual checkpoint: a plain optimizer state (parameter indices), whole tensors
    state = load_training_state(home / "runs" / "split" / "checkpoints" / "0000002")
    assert sorted(state["optimizer"]["state"]) == list(range(len(state["optimizer"]["state"])))  # plain form
    assert all(s["exp_avg"].abs().sum() > 0 for s in state["optimizer"]["state"].values())
    shapes_2 = {k: v.shape for k, v in _adapter(home, "split", 2).items()}
    resume = ["--home", str(home), "finetune", "--resume", "split"]
    assert main([*resume, "--gpus", "1", "--stop-at-step", "3"]) == 0  # the gathered checkpoint on one process
    assert main([*resume, "--gpus", "2", "--sharding", "ddp", "--stop-at-step", "4"]) == 0  # one process -> 2 ranks
    assert main([*resume, "--gpus", "1", "--stop-at-step", "5"]) == 0  # 2 DDP ranks -> one process
    assert main([*resume, "--gpus", "2", "--sharding", "fsdp"]) == 0  # a plain checkpoint into FSDP
    out = capfd.readouterr().out
    ref, _ = _train_losses(home / "runs" / "ref")
    split, events = _train_losses(home / "runs" / "split")
    starts = [e for e in events if e["event"] == "start"]
    assert [(e["world"], e["sharding"], e["resumed_world"]) for e in starts] == [
        (2, "fsdp", None), (1, None, 2), (2, "ddp", 1), (1, None, 2), (2, "fsdp", 1)]
    assert [e["resumed_from"] for e in starts[1:]] == [
        str(home / "runs" / "split" / "checkpoints" / f"{step:07d}") for step in (2, 3, 4, 5)]
    assert {e["global_batch"] for e in starts} == {4}
    assert starts[0]["fsdp_units"] == starts[4]["fsdp_units"] == 2  # one unit per decoder layer of the tiny model
    assert not [e for e in events if e["event"] == "config_drift"]  # the split changed, the global batch did not
    assert [e["max_param_diff"] for e in events if e["event"] == "ranks_in_sync"] == [0.0, 0.0, 0.0]
    # the step count continues (1, 2 | 3 | 4 | 5 | 6), the loss sequence is the uninterrupted run's and keeps falling
    assert [e["step"] for e in events if e["event"] == "train"] == [1, 2, 3, 4, 5, 6]
    assert split == pytest.approx(ref, rel=1e-4, abs=1e-5)
    assert max(split[2:]) < min(split[:2])
    # the same adapter at the end: every resume restored the optimizer (a fresh AdamW would take a different
    # step with lr 0.03) and the data stream went on where it stopped
    final = _adapter(home, "split", 6)
    assert {k: v.shape for k, v in final.items()} == shapes_2  # whole tensors, not rank 0's shard
    _assert_same_adapter(_adapter(home, "ref", 6), final)
    assert sum(1 for ln in out.splitlines() if '"event":"done"' in ln.replace(" ", "") and '/split/' in ln) == 1


def test_a_change_of_n_that_cannot_keep_the_global_batch_is_reported_as_drift():
    from finetune.distributed import global_batch, keep_global_batch
    from finetune.run_config import FinetuneConfig, config_drift

    saved = FinetuneConfig(dataset="toy", batch_size=3, gpus=1, grad_accum=1).to_dict()
    cfg = FinetuneConfig.from_dict({**saved, "gpus": 2})
    assert not keep_global_batch(cfg, saved) and cfg.batch_size == 3  # 3 samples do not split over 2 ranks
    assert global_batch(cfg.to_dict()) == 6 != global_batch(saved)
    ok = FinetuneConfig.from_dict({**saved, "batch_size": 4, "grad_accum": 2, "gpus": 4})
    assert keep_global_batch(ok, {**saved, "batch_size": 4, "grad_accum": 2})  # 8 = 4 ranks x 1 x 2 accumulations
    assert (ok.batch_size, ok.grad_accum) == (1, 2)
    odd = FinetuneConfig.from_dict({**saved, "batch_size": 4, "grad_accum": 3, "gpus": 3})
    assert keep_global_batch(odd, {**saved, "batch_size": 4, "grad_accum": 3})  # 12 = 3 ranks x 4, accumulation 1
    assert (odd.batch_size, odd.grad_accum) == (4, 1)
    assert "gpus" not in config_drift(saved, cfg.to_dict())  # N alone is neutral; the recipe adds global_batch


@pytest.mark.slow
def test_resuming_on_more_ranks_without_a_whole_split_reports_the_global_batch_drift(home, capfd):
    write_dataset(home, "toy", episodes=2, frames=6)
    assert main([*_common(home, steps=2), "--batch", "3", "--run-id", "odd", "--stop-at-step", "1"]) == 0
    assert main(["--home", str(home), "finetune", "--resume", "odd", "--gpus", "2"]) == 0
    capfd.readouterr()
    _, events = _train_losses(home / "runs" / "odd")
    drift = [e for e in events if e["event"] == "config_drift"]
    assert len(drift) == 1 and drift[0]["fields"] == {"global_batch": {"saved": 3, "now": 6}}
    assert [e["step"] for e in events if e["event"] == "train"] == [1, 2]
