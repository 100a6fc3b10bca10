"""`vla-studio finetune` end to end on the tiny model: train, list, export, SIGTERM, bad input."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from studio.cli import main
from tests.finetune.synth_store import CHILD_ENV, one_torch_thread, write_dataset  # noqa: F401

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def toy_home(tmp_path_factory):
    home = tmp_path_factory.mktemp("cli") / "home"
    write_dataset(home, "toy", episodes=2, frames=6)
    return home


def _events(text):
    out = []
    for line in text.splitlines():
        if line.startswith("{"):
            out.append(json.loads(line))
    return out


def test_cli_trains_lists_and_exports_a_merged_model(toy_home, capsys, tmp_path):
    rc = main(["--home", str(toy_home), "finetune", "--dataset", "toy", "--model", "tiny", "--steps", "3",
               "--batch", "2", "--lr", "0.03", "--eval-every", "2", "--eval-batches", "1", "--val-fraction", "0.5", "--lora-rank", "4",
               "--run-id", "cli-run"])
    events = _events(capsys.readouterr().out)
    assert rc == 0
    kinds = [e["event"] for e in events]
    assert kinds[0] == "start" and kinds[-1] == "done" and "eval" in kinds and "checkpoint" in kinds
    train = [e for e in events if e["event"] == "train"]
    assert [e["step"] for e in train] == [1, 2, 3]
    assert all({"loss", "lr", "samples_per_s", "gpu_mem_gb", "eta_s"} <= set(e) for e in train)
    assert events[0]["memory"]["batch_size"] == 2
    # the same lines are in the run folder
    on_disk = _events((toy_home / "runs" / "cli-run" / "metrics.jsonl").read_text())
    assert [e["event"] for e in on_disk] == kinds

    assert main(["--home", str(toy_home), "finetune", "list", "--json"]) == 0
    rows = _events(capsys.readouterr().out.replace('{"run_id"', '{"event": "run", "run_id"'))
    row = next(r for r in rows if r["run_id"] == "cli-run")
    assert row["status"] == "done" and row["checkpoints"] == 1 and row["best_val"] is not None

    out = tmp_path / "merged"
    assert main(["--home", str(toy_home), "finetune", "export", "cli-run", "--out", str(out)]) == 0
    capsys.readouterr()
    from peft import PeftModel

    from finetune.models import load_vla

    merged = load_vla(str(out), device="cpu")
    assert merged.norm_stats and "toy" in merged.norm_stats
    ckpt = toy_home / "runs" / "cli-run" / "checkpoints" / "0000003"
    torch.manual_seed(0)
    tuned = PeftModel.from_pretrained(load_vla("tiny", device="cpu", action_dim=6), str(ckpt / "adapter")).eval()
    img = np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)
    batch_m = merged.collate([merged.prepare([img], "pick up the red cube")])
    batch_t = tuned.collate([tuned.prepare([img], "pick up the red cube")])
    a_m, _ = merged.eval().predict(batch_m)
    a_t, _ = tuned.predict(batch_t)
    assert torch.equal(a_m, a_t)


def test_sigterm_writes_a_checkpoint_and_exits_cleanly(toy_home):
    env = dict(os.environ, PYTHONUNBUFFERED="1", **CHILD_ENV)
    proc = subprocess.Popen([sys.executable, "-m", "studio.cli", "--home", str(toy_home), "finetune", "--dataset",
                             "toy", "--model", "tiny", "--steps", "100000", "--batch", "2", "--eval-every", "0",
                             "--save-every", "0", "--run-id", "sigterm-run"],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    lines = []
    try:
        for line in proc.stdout:
            lines.append(line)
            if '"event":"train"' in line:
                break
        proc.send_signal(signal.SIGTERM)
        rest, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    events = _events("".join(lines) + rest)
    assert proc.returncode == 0, err
    assert events[-1]["event"] == "cancelled" and events[-1]["reason"] == "SIGTERM"
    ckpt = Path(events[-1]["checkpoint"])
    assert (ckpt / "training_state.json").is_file() and (ckpt / "training_state.safetensors").is_file()
    assert (ckpt / "adapter").is_dir()
    assert (toy_home / "runs" / "sigterm-run" / "checkpoints" / "last").read_text().strip() == ckpt.name
    assert not (toy_home / "runs" / "sigterm-run" / "pid").exists()
    from recorder.store import Store

    with Store.open(toy_home) as store:
        assert store.run("sigterm-run").status == "cancelled"
        assert [c.step for c in store.checkpoints(run_id="sigterm-run")] == [int(ckpt.name)]


@pytest.mark.parametrize("args, message", [
    (["finetune", "--model", "tiny"], "pass --dataset NAME"),
    (["finetune", "--dataset", "nope", "--model", "tiny"], "dataset 'nope' is not in the store"),
    (["finetune", "--dataset", "toy", "--model", "tiny", "--batch", "100000000"], "use --batch"),
    (["finetune", "--dataset", "toy", "--model", "/no/such/folder"], "/no/such/folder"),
    (["finetune", "--resume", "no-such-run"], "run 'no-such-run' not found"),
    (["finetune", "--dataset", "toy", "--preset", "huge"], "--preset 'huge' is not known"),
    (["finetune", "export", "no-such-run", "--out", "/tmp/x-never"], "run 'no-such-run' not found"),
])
def test_bad_input_is_one_clear_line_and_exit_2(toy_home, capsys, args, message):
    rc = main(["--home", str(toy_home), *args])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2
    assert len(err) == 1 and message in err[0], err


@pytest.mark.parametrize("extra, message", [
    (["--4bit", "--device", "cpu"], "--4bit (QLoRA) needs a CUDA GPU"),
    (["--4bit", "--gpus", "2", "--sharding", "fsdp"], "--4bit and --sharding fsdp do not go together"),
])
def test_4bit_where_it_cannot_run_is_one_line_and_no_run_folder(toy_home, capsys, extra, message):
    rc = main(["--home", str(toy_home), "finetune", "--dataset", "toy", "--model", "tiny", "--run-id", "q4",
               "--steps", "1", *extra])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and message in err[0], err
    assert not (toy_home / "runs" / "q4").exists()


def test_rollout_4bit_on_cpu_is_one_line(toy_home, capsys):
    assert main(["--home", str(toy_home), "finetune", "--dataset", "toy", "--model", "tiny", "--steps", "1",
                 "--batch", "2", "--eval-every", "0", "--run-id", "bf16-cpu"]) == 0
    capsys.readouterr()
    rc = main(["--home", str(toy_home), "rollout", "--checkpoint", "bf16-cpu", "--device", "cpu", "--quantize", "4bit",
               "--open-loop", "toy"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and "--quantize 4bit needs a CUDA GPU" in err[0], err
