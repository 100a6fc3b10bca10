"""Resuming a remote fine-tune: the local copy of metrics.jsonl drops the replayed steps as the remote's does.

The host is a stand-in: ``ssh`` and ``rsync`` on PATH are scripts that print what a resumed remote run
prints (its JSON lines, the ``rewound`` event first) and copy nothing.
"""

from __future__ import annotations

import json
import os

from finetune.metrics import encode_event, read_events
from finetune.run_config import FinetuneConfig
from studio.finetune.remote import RemoteHost, run_remote_finetune


def test_a_resumed_remote_run_leaves_one_line_per_step_in_the_local_metrics(tmp_path, monkeypatch):
    home = tmp_path / "home"
    run = home / "runs" / "far"
    run.mkdir(parents=True)
    stale = [{"event": "start", "step": 0, "run_id": "far"}]
    stale += [{"event": "train", "step": s, "loss": 1.0} for s in range(1, 11)]  # killed after step 10
    stale.insert(5, {"event": "checkpoint", "step": 4, "path": "/remote/runs/far/checkpoints/0000004"})
    (run / "metrics.jsonl").write_text("".join(json.dumps(e) + "\n" for e in stale))
    remote_out = tmp_path / "remote.out"  # what `vla-studio finetune --resume far` prints on the host
    remote_out.write_text("".join(encode_event(e, e.pop("step")) + "\n" for e in [
        {"event": "rewound", "step": 4, "dropped": 6},
        {"event": "start", "step": 4, "run_id": "far", "resumed_from": "/remote/runs/far/checkpoints/0000004"},
        {"event": "train", "step": 5, "loss": 0.5}, {"event": "train", "step": 6, "loss": 0.4},
        {"event": "done", "step": 6, "checkpoint": None, "best_val": None}]))
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "ssh").write_text(f"#!/bin/sh\ncat {remote_out}\n")
    (bin_dir / "rsync").write_text("#!/bin/sh\nexit 0\n")
    for tool in ("ssh", "rsync"):
        os.chmod(bin_dir / tool, 0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    host = RemoteHost.parse("user@gpu-box", "/remote")
    cfg = FinetuneConfig(dataset="toy", model="tiny", steps=6)
    assert run_remote_finetune(home, host, cfg, "far", [], resume=True) == 0
    events = read_events(run / "metrics.jsonl")
    train = [e for e in events if e["event"] == "train"]
    assert [e["step"] for e in train] == [1, 2, 3, 4, 5, 6]
    assert [e["loss"] for e in train[4:]] == [0.5, 0.4]
    assert [e["event"] for e in events].count("rewound") == 1 and events[-1]["event"] == "done"
