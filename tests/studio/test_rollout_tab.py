"""The Rollout tab drives the sim with a policy, offscreen, with overlays; E-STOP; review and playback."""

import numpy as np
import pytest
from PyQt6.QtCore import Qt

from recorder.devices.rig import sim_rig_config
from tests.rollout_doubles import FixedChunkPolicy

pytestmark = [pytest.mark.gui, pytest.mark.slow]


@pytest.fixture
def tab(qtbot, home):
    from studio.context import AppContext
    from studio.rollout.tab import RolloutTab

    ctx = AppContext(home=home)
    t = RolloutTab(ctx)
    qtbot.addWidget(t)
    t.resize(1100, 700)
    t.show()
    t.rig_spec = sim_rig_config(teleop="scripted", width=160, height=120, fps=15)
    t.fps_spin.setValue(15)
    t.episodes_spin.setValue(1)
    yield t
    t.shutdown()
    ctx.close()


def _pixels(view):
    img = view.grab().toImage()
    w, h = img.width(), img.height()
    ptr = img.constBits()
    ptr.setsize(img.sizeInBytes())
    return np.frombuffer(ptr, np.uint8).reshape(h, img.bytesPerLine() // 4, 4)[:, :w, :3].copy()


def test_sim_rollout_runs_with_overlays_drawn(qtbot, tab):
    tab.policy_object = FixedChunkPolicy(chunk_size=6, step=1.5, camera_names=("front",), checkpoint_id="double/1")
    tab.max_s_spin.setValue(2.0)
    tab.start_rollout()
    with qtbot.waitSignal(tab.thread.finished, timeout=30000):
        pass
    assert tab.ticks_shown >= 10
    assert tab.success_label.text() == "successes 0/1"
    view = tab.views["front"]
    data = tab._overlay["front"]
    assert data.path_px is not None and np.isfinite(data.path_px).all()
    # the path starts where the gripper is now (the sim's forward kinematics, projected like the path)
    assert data.path_start_px is not None and np.isfinite(data.path_start_px).all()
    qtbot.wait(50)
    on = _pixels(view)
    tab.overlay_checks["path"].setChecked(False)
    qtbot.wait(50)
    off = _pixels(view)
    rect, scale = view.image_rect()
    dev = view.devicePixelRatioF()
    u, v = data.path_px[0]
    x, y = int((rect.x() + u * scale) * dev), int((rect.y() + v * scale) * dev)
    patch_on = on[y - 2:y + 3, x - 2:x + 3].astype(int)
    patch_off = off[y - 2:y + 3, x - 2:x + 3].astype(int)
    assert np.abs(patch_on - patch_off).max() > 60  # the path is drawn there only when its overlay is on
    # far from the path and the other overlays, the picture is the same
    assert (np.abs(on.astype(int) - off.astype(int)).max(axis=2) > 0).mean() < 0.1

    # review: the rollout is listed with its checkpoint's success rate, and plays back with overlays
    tab.inner_tabs.setCurrentIndex(1)
    review = tab.review
    assert review.table.rowCount() == 1
    assert review.rates.item(0, 0).text() == "double/1" and review.rates.item(0, 1).text() == "0/1"
    review.table.selectRow(0)
    assert set(review.views) == {"front", "wrist"}
    with qtbot.waitSignal(review.player.frame_shown, timeout=10000, check_params_cb=lambda t: t == 5):
        review.slider.setValue(5)  # the frames are decoded off the GUI thread: they come a moment later
    assert review.tick_label.text().startswith("tick 6/")
    pb = review._overlay_data["front"]
    assert pb.path_px is not None and np.isfinite(pb.path_px).all() and pb.mode == "playback"
    # Play toggles to Pause while it plays, and back
    shown = review.tick_label.text()
    qtbot.mouseClick(review.play_button, Qt.MouseButton.LeftButton)
    assert review.play_button.text() == "Pause"
    qtbot.waitUntil(lambda: review.tick_label.text() != shown, timeout=3000)  # it plays
    qtbot.mouseClick(review.play_button, Qt.MouseButton.LeftButton)
    assert review.play_button.text() == "Play" and not review._timer.isActive()
    review.close_reader()


def test_escape_is_an_emergency_stop(qtbot, tab):
    tab.policy_object = FixedChunkPolicy(chunk_size=4, step=1.0)
    tab.max_s_spin.setValue(30.0)
    tab.start_rollout()
    qtbot.waitUntil(lambda: tab.ticks_shown >= 3, timeout=20000)
    tab.setFocus()
    with qtbot.waitSignal(tab.thread.finished, timeout=10000):
        qtbot.keyClick(tab, Qt.Key.Key_Escape)
    assert tab.thread.result.estopped
    assert "E-STOP" in tab.status_label.text()
    info = tab.ctx.store.episodes(source="policy")[0]
    assert "e-stop at tick" in info.notes
    assert info.duration_s < 10


def test_checkpoint_opened_selects_it(qtbot, tab, tmp_path):
    path = tmp_path / "runs" / "r1" / "checkpoints" / "20"
    path.mkdir(parents=True)
    tab.ctx.checkpoint_opened.emit(str(path))
    assert tab.checkpoint_combo.currentData() == str(path)
    assert tab.checkpoint_combo.currentText() == "r1 @ 20"
    assert tab.policy_spec().checkpoint == str(path)


def test_start_without_a_policy_posts_an_error(qtbot, tab):
    with qtbot.waitSignal(tab.ctx.error_posted, timeout=2000) as blocker:
        tab.start_rollout()
    assert "pick a checkpoint" in blocker.args[0]
    assert tab.thread is None


def test_open_loop_evaluation_plots_predicted_vs_recorded(qtbot, tab):
    from tests.recorder.test_evaluation import _record

    _record(tab.ctx.store, n=10)
    tab.policy_object = FixedChunkPolicy(chunk_size=3, step=1.0)
    tab.inner_tabs.setCurrentIndex(1)
    review = tab.review
    assert review.dataset_combo.currentText() == "demos"
    review.joint_combo.setCurrentIndex(2)
    with qtbot.waitSignal(tab.review.eval_button.clicked, timeout=1000):
        review.eval_button.click()
    qtbot.waitUntil(lambda: review.mae_table.rowCount() == 1, timeout=20000)
    # joint 2: predicted t + 1 vs recorded t + 2 -> MAE 1
    assert review.mae_table.item(0, 3).text() == "1.00"
    assert review.mae_table.item(0, 0).text() == "double/1"
    xs, ys = review.curve_predicted.getData()
    xr, yr = review.curve_recorded.getData()
    assert len(xs) == len(xr) == 10
    np.testing.assert_allclose(ys - yr, -1.0)


def test_takeover_hands_the_arm_to_the_keyboard_and_marks_the_segment(qtbot, tab):
    from recorder.rollout import EXTRA_TAKEOVER

    tab.rig_spec = sim_rig_config(teleop="keyboard", width=160, height=120, fps=15)
    tab.policy_object = FixedChunkPolicy(chunk_size=4, step=0.0)
    tab.max_s_spin.setValue(30.0)
    tab.start_rollout()
    qtbot.waitUntil(lambda: tab.ticks_shown >= 3, timeout=20000)
    tab.takeover_button.setChecked(True)
    tab.setFocus()
    qtbot.keyPress(tab, Qt.Key.Key_Up)
    qtbot.waitUntil(lambda: tab._overlay["front"].mode == "teleop", timeout=5000)
    qtbot.wait(300)
    qtbot.keyRelease(tab, Qt.Key.Key_Up)
    tab.takeover_button.setChecked(False)
    qtbot.waitUntil(lambda: tab._overlay["front"].mode == "policy", timeout=5000)
    with qtbot.waitSignal(tab.thread.finished, timeout=10000):
        tab.stop_button.click()
    info = tab.ctx.store.episodes(source="policy")[0]
    segs = [s for s in info.segments if s.get("kind") == "takeover"]
    assert len(segs) == 1
    low = tab.ctx.store.open_episode(info.id).lowdim()
    took = np.asarray(low[EXTRA_TAKEOVER])[:, 0] > 0
    assert took.any() and not took[-1]
    start = int(np.argmax(took))
    state = np.asarray(low["observation.state"])
    # the keyboard moved the arm while it had it (the policy alone holds still)
    assert np.abs(state[-1] - state[start]).max() > 0.5


class _BreaksAfter(FixedChunkPolicy):
    """Good chunks for a few calls, then actions of the wrong size (a broken model mid-rollout)."""

    def predict(self, images, state, instruction):
        out = super().predict(images, state, instruction)
        if len(self.calls) > 4:
            out.actions = out.actions[:, :3]
        return out


def test_a_failure_mid_rollout_clears_the_live_view(qtbot, tab):
    tab.policy_object = _BreaksAfter(chunk_size=2, step=1.0)
    tab.async_check.setChecked(False)
    tab.max_s_spin.setValue(5.0)
    tab.start_rollout()
    qtbot.waitUntil(lambda: tab.ticks_shown > 0 and tab.views["front"].image_size() is not None, timeout=20000)
    with qtbot.waitSignal(tab.thread.finished, timeout=30000):
        pass
    assert tab.status_label.text().startswith("failed:") and "dims" in tab.status_label.text()
    # no frozen frame, overlay or action bars left on screen as if the arm were still running
    assert all(v.image_size() is None for v in tab.views.values())
    assert tab._overlay == {} and tab.safety_label.text() == ""
    assert tab.start_button.isEnabled()


def test_metaworld_rollout_reports_success_per_task(qtbot, tab):
    """A Meta-World rig with two tasks: each episode runs its own task, the label counts per task."""
    from recorder.devices.configs import MetaWorldCameraConfig, MetaWorldRobotConfig
    from recorder.devices.rig import metaworld_rig_config

    cfg = metaworld_rig_config("reach-v3,button-press-topdown-v3", teleop="none", seed=0)
    cfg.robot = MetaWorldRobotConfig(tasks="reach-v3,button-press-topdown-v3", seed=0, max_steps=8)
    cfg.cameras = {"corner2": MetaWorldCameraConfig(width=48, height=48, shadows=False)}
    tab.rig_spec = cfg
    tab.fps_spin.setValue(80)
    tab.episodes_spin.setValue(2)
    tab.max_s_spin.setValue(20.0)
    tab.policy_object = FixedChunkPolicy(chunk_size=4, action_dim=4, step=0.0, camera_names=("corner2",))
    tab.start_rollout()
    with qtbot.waitSignal(tab.thread.finished, timeout=120000):
        pass
    assert tab.success_label.text() == ("successes 0/2\n0/1  Reach a goal position\n0/1  Press a button from the top")
    eps = tab.ctx.store.episodes(source="policy")
    assert [e.num_frames for e in eps] == [8, 8]  # the robot's own step limit ended each episode
