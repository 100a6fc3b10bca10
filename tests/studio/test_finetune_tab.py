"""The Fine-tune tab driving real `vla-studio finetune` child processes on the tiny model (CPU)."""

from __future__ import annotations

import sys

import pytest

from tests.finetune.synth_store import CHILD_ENV, one_torch_thread, write_dataset  # noqa: F401

pytestmark = pytest.mark.gui


@pytest.fixture
def ctx(home, qtbot):
    from studio.context import AppContext

    write_dataset(home, "toy", episodes=2, frames=6)
    context = AppContext(home=home)
    yield context
    context.close()


def _tab(ctx, qtbot):
    from studio.finetune.tab import FinetuneTab

    tab = FinetuneTab(ctx)
    tab.child_env = dict(CHILD_ENV)
    qtbot.addWidget(tab)
    return tab


def _small_run(tab, steps, eval_every=2):
    tab.dataset_combo.setCurrentText("toy")
    tab.model_edit.setCurrentText("tiny")
    tab.preset_combo.setCurrentIndex(tab.preset_combo.findData("cpu"))
    tab.steps_spin.setValue(steps)
    tab.batch_spin.setValue(2)
    tab.lr_spin.setValue(0.03)
    tab.rank_spin.setValue(4)
    tab.eval_spin.setValue(eval_every)
    tab.save_spin.setValue(0)
    tab.val_spin.setValue(0.5)


@pytest.mark.slow
def test_a_whole_tiny_finetune_from_the_tab_and_a_run_that_does_not_learn_is_flagged(ctx, qtbot, home):
    """One child run to the end serves both: the tab follows it live and lists it, and a run that cannot
    learn (the smallest learning rate the tab allows: the predicted actions cannot move in 6 steps) is flagged."""
    tab = _tab(ctx, qtbot)
    assert tab.dataset_combo.currentText() == "toy"
    _small_run(tab, steps=6, eval_every=2)
    tab.lr_spin.setValue(1e-6)
    assert tab.learning_label.isHidden()
    with qtbot.waitSignal(tab.run_finished, timeout=180_000) as finished:
        qtbot.mouseClick(tab.start_button, __import__("PyQt6.QtCore", fromlist=["Qt"]).Qt.MouseButton.LeftButton)
        assert not tab.start_button.isEnabled() and tab.cancel_button.isEnabled()
    run_id, status = finished.args
    assert status == "done", tab.log_view.toPlainText()
    assert tab.curves.train_steps == [1, 2, 3, 4, 5, 6] and len(tab.curves.train_loss) == 6
    assert tab.curves.val_steps == [2, 4, 6]
    assert tab.progress.value() == tab.progress.maximum() == 6
    assert "samples/s" in tab.stats_label.text() and "ETA" in tab.stats_label.text()
    assert not tab.learning_label.isHidden()
    text = tab.learning_label.text()
    assert "not learning" in text and "validation L1 stayed at" in text and "likely causes" in text
    assert "learning rate" in tab.learning_label.toolTip()
    rows = tab.history_rows()
    assert rows[0][0] == run_id and rows[0][1] == "done" and rows[0][2] == "toy" and rows[0][6] == "1"
    assert rows[0][5] != "-"  # best val loss
    tab.select_run(run_id)
    assert tab.open_button.isEnabled()
    with qtbot.waitSignal(ctx.checkpoint_opened, timeout=2000) as opened:
        tab.open_button.click()
    assert opened.args[0].endswith(f"{run_id}/checkpoints/0000006")
    # delete the run: gone from the index and the disk
    tab._confirm = lambda _text: True
    tab.delete_button.click()
    assert tab.history_rows() == []
    assert not (home / "runs" / run_id).exists()


def test_a_crashing_child_shows_the_error_and_the_tab_survives(ctx, qtbot):
    tab = _tab(ctx, qtbot)
    _small_run(tab, steps=3)
    code = ("import sys; print('loading model', file=sys.stderr); "
            "print('RuntimeError: CUDA error: device-side assert triggered', file=sys.stderr); sys.exit(1)")
    tab.child_program = [sys.executable, "-c", code]
    errors = []
    ctx.error_posted.connect(errors.append)
    with qtbot.waitSignal(tab.run_finished, timeout=30_000) as finished:
        tab.start_button.click()
    assert finished.args[1] == "failed"
    assert "device-side assert" in tab.status_label.text()
    assert "device-side assert" in tab.log_view.toPlainText()
    assert errors and "device-side assert" in errors[-1] and "\n" not in errors[-1]
    assert tab.start_button.isEnabled() and not tab.cancel_button.isEnabled()
    # a dataset that is not in the store is refused before any child starts
    tab.child_program = None
    tab.dataset_combo.addItem("ghost")
    tab.dataset_combo.setCurrentText("ghost")
    tab.process = None
    tab.start_button.click()
    assert tab.process is None
    assert "dataset 'ghost' is not in the store" in tab.status_label.text()
    assert "dataset 'ghost' is not in the store" in errors[-1]


def test_the_dataset_choice_never_switches_and_empty_datasets_or_bad_models_never_start(ctx, qtbot, home):
    tab = _tab(ctx, qtbot)
    ctx.store.get_or_create_dataset("aaa-empty")
    ctx.store_changed.emit()
    # the empty dataset is listed (marked), the one with episodes is chosen
    assert [tab.dataset_combo.itemText(i) for i in range(tab.dataset_combo.count())] == ["aaa-empty", "toy"]
    assert tab.dataset_combo.currentText() == "toy" and tab.dataset_info.text() == "2 episodes"
    tab.dataset_combo.setCurrentText("aaa-empty")
    assert "empty (0 episodes)" in tab.dataset_info.text()
    _small_run(tab, steps=2)
    tab.dataset_combo.setCurrentText("aaa-empty")
    tab.start_button.click()
    assert tab.process is None and tab.start_button.isEnabled()
    assert "Not started: dataset 'aaa-empty' is empty" in tab.status_label.text()
    # every episode of the chosen dataset goes to the trash: the choice stays, and says why it cannot train
    tab.dataset_combo.setCurrentText("toy")
    for e in ctx.store.episodes(dataset="toy"):
        ctx.store.update_episode(e.id, status="trashed")
    ctx.store_changed.emit()
    assert tab.dataset_combo.currentText() == "toy" and "empty (0 episodes)" in tab.dataset_info.text()
    # a model folder that does not exist is refused before the child process starts
    ctx.store.get_or_create_dataset("toy")
    write_dataset(home, "toy2", episodes=1, frames=4)
    ctx.store_changed.emit()
    tab.dataset_combo.setCurrentText("toy2")
    tab.model_edit.setCurrentText(str(home / "no-such-model"))
    tab.start_button.click()
    assert tab.process is None
    assert "base model:" in tab.status_label.text() and "no such folder" in tab.status_label.text()


_RESUMED_CHILD = """
import sys, time
from pathlib import Path
from finetune.metrics import JsonlLogger
home, run_id = Path(sys.argv[sys.argv.index("--home") + 1]), sys.argv[sys.argv.index("--resume") + 1]
time.sleep(0.5)  # a real child spends seconds importing torch before it opens the run
log = JsonlLogger(home / "runs" / run_id / "metrics.jsonl", stream=None)
log.rewind(4)  # what FinetuneRecipe.setup does on --resume from checkpoint 4
log.log_dict({"event": "start", "run_id": run_id, "steps": 6, "resumed_from": "checkpoints/0000004"}, 4)
for step in (5, 6):
    time.sleep(0.2)
    log.log_dict({"event": "train", "loss": 0.5 - step / 100, "lr": 1e-3}, step)
log.log_dict({"event": "eval", "val_loss": 0.25}, 6)
log.log_dict({"event": "done", "checkpoint": None}, 6)
log.close()
"""


def test_after_a_resume_the_replayed_steps_appear_once_in_the_file_and_the_curves(ctx, qtbot, home):
    """A run killed after step 30 with its last checkpoint at step 4 replays from step 5 when resumed (this
    stand-in child stops after step 6, so the test reads: everything after step 6 is gone, steps 5-6 are new)."""
    import json
    from pathlib import Path

    from finetune.metrics import read_events

    run = home / "runs" / "killed-run"
    run.mkdir(parents=True)
    old = [{"event": "start", "step": 0, "run_id": "killed-run", "steps": 6}]
    for step in range(1, 31):
        old.append({"event": "train", "step": step, "loss": 1.0 - step / 100})
        if step % 2 == 0:
            old.append({"event": "eval", "step": step, "val_loss": 0.9 - step / 100})
        if step == 4:
            old.append({"event": "checkpoint", "step": 4, "path": str(run / "checkpoints" / "0000004")})
    (run / "metrics.jsonl").write_text("".join(json.dumps(e) + "\n" for e in old))  # then SIGKILL
    tab = _tab(ctx, qtbot)
    root = str(Path(__file__).resolve().parents[2])
    tab.child_env = dict(CHILD_ENV, PYTHONPATH=root)
    tab.child_program = [sys.executable, "-c", _RESUMED_CHILD]
    with qtbot.waitSignal(tab.run_finished, timeout=30_000) as finished:
        tab.resume_run("killed-run")
        assert tab.curves.train_steps == list(range(1, 31))  # where the run stood, from the file
    assert finished.args == ["killed-run", "done"], tab.log_view.toPlainText()
    assert tab.curves.train_steps == [1, 2, 3, 4, 5, 6]
    assert tab.curves.train_loss[4:] == [0.45, 0.44]  # steps 5-6 as the resumed run trained them
    assert tab.curves.val_steps == [2, 4, 6] and tab.curves.val_loss[-1] == 0.25
    events = read_events(run / "metrics.jsonl")
    assert [e["step"] for e in events if e["event"] == "train"] == [1, 2, 3, 4, 5, 6]
    assert [e["step"] for e in events if e["event"] == "eval"] == [2, 4, 6]
    assert [e["event"] for e in events].count("rewound") == 1


@pytest.mark.slow
def test_cancel_leave_running_on_close_reattach_and_resume(ctx, qtbot, home):
    tab = _tab(ctx, qtbot)
    _small_run(tab, steps=100_000, eval_every=0)
    run_id = tab.start_run()
    qtbot.waitUntil(lambda: len(tab.curves.train_steps) >= 2, timeout=180_000)
    pid = tab.process.pid
    # closing the studio: "leave running" keeps the child alive
    tab.ask_close = lambda: "leave"
    assert tab.confirm_close()
    tab.shutdown()
    from studio.finetune.process import _alive

    assert _alive(pid)
    # the next studio session re-attaches to it and rebuilds the curves from metrics.jsonl
    tab2 = _tab(ctx, qtbot)
    assert tab2.run_id == run_id and tab2.is_running and tab2.process.pid == pid
    qtbot.waitUntil(lambda: len(tab2.curves.train_steps) >= 2, timeout=10_000)
    assert "re-attached" in tab2.log_view.toPlainText()
    with qtbot.waitSignal(tab2.run_finished, timeout=120_000) as finished:
        tab2.cancel_button.click()
    assert finished.args == [run_id, "cancelled"]
    assert not _alive(pid)
    row = next(r for r in tab2.history_rows() if r[0] == run_id)
    assert row[1] == "cancelled" and int(row[6]) == 1
    # resume from the runs list: continues from the checkpoint's step
    tab2.select_run(run_id)
    assert tab2.resume_button.isEnabled()
    stopped_at = tab2.curves.train_steps[-1]
    tab2.resume_button.click()
    qtbot.waitUntil(lambda: tab2.curves.train_steps and tab2.curves.train_steps[-1] > stopped_at, timeout=180_000)
    assert "resumed from step" in tab2.status_label.text()
    assert f"--resume {run_id}" in tab2.log_view.toPlainText()
    # closing with "stop" cancels and waits for the checkpoint
    tab2.ask_close = lambda: "stop"
    assert tab2.confirm_close()
    tab2.shutdown()
    assert not tab2.process.is_running
    assert tab2.process.final_event["event"] == "cancelled"


def test_memory_estimate_follows_the_options_and_multi_gpu_choices_reach_the_command(ctx, qtbot, tmp_path):
    from finetune.models import build_tiny_openvla

    model_dir = build_tiny_openvla(tmp_path / "model")  # a local folder: its config gives the shape
    tab = _tab(ctx, qtbot)
    tab.preset_combo.setCurrentIndex(tab.preset_combo.findData("gpu-24gb"))
    tab.model_edit.setCurrentText(str(model_dir))
    tab.batch_spin.setValue(2)
    small = tab.estimate_label.text()
    tab.batch_spin.setValue(64)
    assert "Estimate" in small
    assert tab.estimate_label.text() != small  # a bigger batch needs more memory, shown before starting
    tab.gpus_spin.setValue(2)
    tab.sharding_combo.setCurrentText("fsdp")
    tab.vision_lora_check.setChecked(True)
    tab.dataset_combo.setCurrentText("toy")
    args = tab.build_args(tab.build_config(), "run-x")
    assert args[args.index("--gpus") + 1] == "2" and args[args.index("--sharding") + 1] == "fsdp"
    assert "--lora-include-vision" in args


def test_detected_8gb_card_picks_qlora_says_why_and_an_oversized_run_is_refused(ctx, qtbot, tmp_path, monkeypatch):
    """An RTX 4060 (8 GB): auto picks the measured 4-bit preset and says so; batch 64 of a local 7B-shaped folder
    would need more than the card has, so Start refuses with the number instead of launching a child."""
    import json

    from PyQt6.QtCore import Qt

    import studio.finetune.tab as ft
    from finetune.models.tiny import openvla_7b_config
    from finetune.presets import GpuInfo

    monkeypatch.setattr(ft, "detect_gpu", lambda: GpuInfo("NVIDIA GeForce RTX 4060", 7.6))
    model_dir = tmp_path / "openvla-7b-like"
    model_dir.mkdir()
    (model_dir / "config.json").write_text(json.dumps(openvla_7b_config()))  # shape only: no weights needed
    tab = _tab(ctx, qtbot)
    assert "RTX 4060" in tab.gpu_label.text() and "7.6 GiB" in tab.gpu_label.text()
    assert "gpu-8gb" in tab.gpu_label.text() and "gpu-8gb" in tab.preset_combo.currentText()
    assert tab.quant_check.isChecked() and tab.batch_spin.value() == 4  # the 8 GB preset: QLoRA, batch 4
    tab.dataset_combo.setCurrentText("toy")
    tab.model_edit.setCurrentText(str(model_dir))
    assert "GiB" in tab.estimate_label.text()
    tab.batch_spin.setValue(64)
    with qtbot.waitSignal(ctx.error_posted, timeout=5000) as err:
        qtbot.mouseClick(tab.start_button, Qt.MouseButton.LeftButton)
    assert "needs ~" in err.args[0] and "7.6 GiB" in err.args[0] and "--batch" in err.args[0]
    assert tab.process is None and tab.start_button.isEnabled()
    assert not (ctx.home / "runs").exists() or not any((ctx.home / "runs").iterdir())
