"""`--gpus N` on the CPU: torchrun + DDP on the gloo backend matches one process with the same global batch."""

from __future__ import annotations

import json

import pytest
import torch

from studio.cli import main
from tests.finetune.synth_store import CHILD_ENV, one_torch_thread, write_dataset  # noqa: F401


def _train_losses(run):
    events = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    return [e["loss"] for e in events if e["event"] == "train"], events


@pytest.mark.slow
def test_two_gloo_ranks_match_a_single_process_with_the_same_global_batch(home, capsys):
    write_dataset(home, "toy", episodes=2, frames=6)
    common = ["--home", str(home), "finetune", "--dataset", "toy", "--model", "tiny", "--steps", "3",
              "--lr", "0.03", "--lora-rank", "4", "--val-fraction", "0", "--eval-every", "0", "--device", "cpu",
              "--no-augment"]
    assert main([*common, "--batch", "2", "--run-id", "single"]) == 0
    assert main([*common, "--batch", "1", "--gpus", "2", "--run-id", "ddp"]) == 0
    capsys.readouterr()
    single, _ = _train_losses(home / "runs" / "single")
    ddp, events = _train_losses(home / "runs" / "ddp")
    assert len(ddp) == 3 and ddp == pytest.approx(single, rel=1e-4, abs=1e-5)
    start = next(e for e in events if e["event"] == "start")
    assert start["world"] == 2
    sync = next(e for e in events if e["event"] == "ranks_in_sync")
    assert sync["max_param_diff"] == 0.0
    # one set of metrics and checkpoints (rank 0 only)
    assert sum(1 for e in events if e["event"] == "done") == 1
    from safetensors.torch import load_file

    a = load_file(str(home / "runs" / "single" / "checkpoints" / "0000003" / "adapter" / "adapter_model.safetensors"))
    b = load_file(str(home / "runs" / "ddp" / "checkpoints" / "0000003" / "adapter" / "adapter_model.safetensors"))
    assert a.keys() == b.keys()
    assert all(torch.allclose(a[k], b[k], atol=1e-5, rtol=1e-4) for k in a)
