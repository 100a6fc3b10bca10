"""The whole loop through the real tabs on the sim rig (issue 12, "Tests"): record 2 episodes with a reset
between them, curate, fine-tune the tiny model, roll it out, review; asserting what a person sees and what
the store holds, frame by frame against the sim's exact projection."""

from __future__ import annotations

import numpy as np
import pytest
from PyQt6.QtCore import Qt

from recorder.devices.rig import load_rig, sim_rig_config
from recorder.store import Store
from tests.finetune.synth_store import CHILD_ENV, one_torch_thread  # noqa: F401
from tests.recorder.sim_truth import assert_frames_show_the_cube, note_cube_truth

pytestmark = [pytest.mark.gui, pytest.mark.slow]

SIZE = dict(width=96, height=72, fps=15.0)


def test_record_curate_finetune_rollout_review_in_the_tabs(qtbot, home):
    from studio.context import AppContext
    from studio.datasets.tab import DatasetsTab
    from studio.finetune.tab import FinetuneTab
    from studio.record.tab import RecordTab
    from studio.rollout.tab import RolloutTab

    ctx = AppContext(home=home)
    rec = RecordTab(ctx)
    data = DatasetsTab(ctx)
    ft = FinetuneTab(ctx)
    ft.child_env = dict(CHILD_ENV)
    ro = RolloutTab(ctx)
    for t in (rec, data, ft, ro):
        qtbot.addWidget(t)
        t.resize(1100, 700)
        t.show()
    try:
        # ---- record: the push rig with its scripted expert, 2 episodes, auto-advance with a reset countdown
        rec.rig_factory = lambda spec, home: load_rig(sim_rig_config(task="push", teleop="scripted", **SIZE), home=home)
        rec.dataset_edit.setText("loop")
        assert rec.task_edit.text() == "pick up the red cube"  # the field's default, another rig's task
        rec.episode_time.setValue(1.5)
        rec.reset_time.setValue(0.5)
        rec.num_episodes.setValue(2)
        rec.auto_advance.setChecked(True)
        qtbot.mouseClick(rec.connect_btn, Qt.MouseButton.LeftButton)
        qtbot.waitUntil(lambda: rec.phase == "idle", timeout=20000)
        # the push rig records the push instruction, shown in the task field
        assert rec.task_edit.text() == "push the red cube onto the green square"
        session = rec.session
        cubes = note_cube_truth(session)
        rec.setFocus()
        qtbot.keyClick(rec, Qt.Key.Key_Space)
        qtbot.waitUntil(lambda: rec.phase == "done", timeout=30000)
        assert rec.count_label.text().startswith("episodes saved: 2")
        robot = session.rig.robot
        qtbot.mouseClick(rec.connect_btn, Qt.MouseButton.LeftButton)  # disconnect: the rollout needs the rig
        qtbot.waitUntil(lambda: rec.connect_btn.text() == "Connect" and rec.connect_btn.isEnabled(), timeout=20000)

        store = ctx.store
        eps = store.episodes(dataset="loop")
        assert len(eps) == 2
        assert all(e.task == "push the red cube onto the green square" and e.source == "scripted" for e in eps)
        assert np.linalg.norm(cubes[1][0] - cubes[0][-1]) > 0.005  # episode 2 started from a fresh reset
        assert_frames_show_the_cube(store, [e.id for e in eps], [cubes[0], cubes[1]], robot)

        # ---- curate: label the first episode a success in the Datasets tab, split train/val
        ctx.store_changed.emit()
        qtbot.waitUntil(lambda: data.loaded, timeout=10000)  # the tab reads its rows in a thread
        assert sorted(data.visible_ids()) == sorted(e.id for e in eps)
        data.select_episode(eps[0].id)
        data.success_edit.setCurrentIndex(data.success_edit.findData(True))
        data.tags_edit.setText("good")
        qtbot.mouseClick(data.save_button, Qt.MouseButton.LeftButton)
        assert store.episode(eps[0].id).success is True and "good" in store.episode(eps[0].id).tags
        parts = data.split_dataset("loop", 0.5, seed=0)
        assert len(parts["val"]) == 1 and len(parts["train"]) == 1

        # ---- fine-tune the tiny model on it in the Fine-tune tab (a real child process)
        ft.refresh_datasets()
        ft.dataset_combo.setCurrentText("loop")
        assert ft.dataset_info.text() == "2 episodes"
        ft.model_edit.setCurrentText("tiny")
        ft.preset_combo.setCurrentIndex(ft.preset_combo.findData("cpu"))
        ft.steps_spin.setValue(4)
        ft.batch_spin.setValue(2)
        ft.lr_spin.setValue(0.01)
        ft.rank_spin.setValue(4)
        ft.eval_spin.setValue(2)
        ft.save_spin.setValue(0)
        with qtbot.waitSignal(ft.run_finished, timeout=240_000) as finished:
            qtbot.mouseClick(ft.start_button, Qt.MouseButton.LeftButton)
        run_id, status = finished.args
        assert status == "done", ft.log_view.toPlainText()
        assert ft.progress.value() == ft.progress.maximum() == 4 and ft.curves.train_steps == [1, 2, 3, 4]
        ft.select_run(run_id)
        with qtbot.waitSignal(ctx.checkpoint_opened, timeout=2000):
            ft.open_button.click()
        assert ro.checkpoint_combo.currentText().startswith(run_id)

        # ---- roll the tuned checkpoint out in the Rollout tab, on the same rig shape
        ro.rig_spec = sim_rig_config(task="push", teleop="scripted", **SIZE)
        ro.fps_spin.setValue(15)
        ro.episodes_spin.setValue(1)
        ro.max_s_spin.setValue(1.0)
        ro.start_rollout()
        assert ro.thread is not None
        with qtbot.waitSignal(ro.thread.finished, timeout=120_000):
            pass
        assert ro.success_label.text() in ("successes 0/1", "successes 1/1")
        (roll,) = store.episodes(source="policy")
        assert roll.checkpoint_id is not None and roll.dataset == "rollouts"

        # ---- review it: listed with its checkpoint, plays back
        ro.inner_tabs.setCurrentIndex(1)
        review = ro.review
        qtbot.waitUntil(lambda: review.table.rowCount() == 1, timeout=5000)
        review.table.selectRow(0)
        assert set(review.views) == {"front", "wrist"}
        review.slider.setValue(3)
        assert review.tick_label.text().startswith("tick 4/")
        review.close_reader()
        with Store.open(home) as s2:
            with s2.open_episode(roll.id) as r:
                assert not r.stale("front")[0]  # frame 0 of the rollout is of its own moment
    finally:
        for t in (rec, data, ro):
            t.shutdown()
        ft.shutdown(wait_s=30)
        ctx.close()
