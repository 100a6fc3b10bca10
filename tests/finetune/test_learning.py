"""A fine-tune whose loss / val L1 stays flat is flagged as not learning, with likely causes (issue 12, item 8)."""

from __future__ import annotations

import json

from finetune.learning import NOT_LEARNING, LearningWatch
from studio.cli import main
from tests.finetune.synth_store import CHILD_ENV, one_torch_thread, write_dataset  # noqa: F401


def test_flat_val_l1_is_flagged_once_and_a_falling_one_never():
    w = LearningWatch(evals=3)
    assert w.on_eval(2, {"l1_real": 35.870, "val_loss": 5.1}) is None
    assert w.on_eval(4, {"l1_real": 35.870, "val_loss": 4.0}) is None
    warn = w.on_eval(6, {"l1_real": 35.870, "val_loss": 3.2})  # the loss falls, the actions do not change
    assert warn["event"] == "warning" and warn["kind"] == NOT_LEARNING and warn["metric"] == "l1_real"
    assert "validation L1 stayed at 35.87 over the last 3 evaluations" in warn["message"]
    assert "likely causes" in warn["message"] and len(warn["causes"]) >= 3
    assert w.on_eval(8, {"l1_real": 35.870}) is None  # flagged once
    ok = LearningWatch(evals=3)
    assert all(ok.on_eval(s, {"l1_real": v}) is None for s, v in enumerate([3.0, 2.5, 2.49, 2.2, 2.2001]))


def test_flat_training_loss_is_flagged_and_a_noisy_falling_one_is_not():
    w = LearningWatch(train_window=5, lr=0.0)
    flagged = [w.on_train(s, 2.5) for s in range(1, 6)]
    assert flagged[:4] == [None] * 4 and flagged[4]["metric"] == "loss"
    assert flagged[4]["causes"][0] == "the learning rate is 0"
    ok = LearningWatch(train_window=5)
    assert all(ok.on_train(s, 3.0 - 0.1 * s + 0.01 * (s % 2)) is None for s in range(1, 30))


def test_cli_run_that_cannot_learn_says_so_in_its_events(tmp_path, capsys):
    home = tmp_path / "home"
    write_dataset(home, "toy", episodes=2, frames=6)
    rc = main(["--home", str(home), "finetune", "--dataset", "toy", "--model", "tiny", "--steps", "6",
               "--batch", "2", "--lr", "0", "--eval-every", "2", "--eval-batches", "1", "--val-fraction", "0.5",
               "--lora-rank", "4", "--save-every", "0", "--run-id", "flat"])
    assert rc == 0
    events = [json.loads(x) for x in capsys.readouterr().out.splitlines() if x.startswith("{")]
    warns = [e for e in events if e.get("kind") == NOT_LEARNING]
    assert len(warns) == 1 and "not learning" in warns[0]["message"]
    assert warns[0]["causes"][0] == "the learning rate is 0"
    on_disk = (home / "runs" / "flat" / "metrics.jsonl").read_text()
    assert NOT_LEARNING in on_disk
