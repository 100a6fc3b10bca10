"""The Rollout tab's camera calibration field: the path overlay on non-sim cameras, and bad files."""

import json

import numpy as np
import pytest

from recorder.devices import configs as C
from recorder.devices.rig import RigConfig
from tests.rollout_doubles import FixedChunkPolicy

pytestmark = pytest.mark.gui

# a camera 1 m above the table looking straight down (OpenCV frame: x right, y down, z forward)
W2C = [[1, 0, 0, -0.2], [0, -1, 0, 0], [0, 0, -1, 1.0], [0, 0, 0, 1]]


def _calib(cx):
    return {"intrinsics": [[100, 0, cx], [0, 100, 60], [0, 0, 1]], "world_to_camera": W2C}


@pytest.fixture
def tab(qtbot, home):
    from studio.context import AppContext
    from studio.rollout.tab import RolloutTab

    ctx = AppContext(home=home)
    t = RolloutTab(ctx)
    qtbot.addWidget(t)
    t.resize(1000, 700)
    t.show()
    t.fps_spin.setValue(15)
    t.episodes_spin.setValue(1)
    yield t
    t.shutdown()
    ctx.close()


@pytest.mark.parametrize("content, suffix, expected", [
    ("{not json", ".json", "is not valid JSON"),
    ('{"usb": {"intrinsics": [[1, 0], [0, 1]]}}', ".json", "camera 'usb': needs intrinsics (3x3)"),
    ('[usb]\nintrinsics = [[0, 0, 80], [0, 0, 60], [0, 0, 1]]\n'
     'world_to_camera = [[1,0,0,0],[0,1,0,0],[0,0,1,0],[0,0,0,1]]\n', ".toml", "fx and fy must be positive"),
    (None, ".json", "does not exist"),
])
def test_a_bad_calibration_file_is_named_and_the_rollout_does_not_start(qtbot, tab, tmp_path, content, suffix,
                                                                         expected):
    path = tmp_path / f"calib{suffix}"
    if content is not None:
        path.write_text(content)
    tab.policy_object = FixedChunkPolicy()
    tab.calib_edit.setText(str(path))
    with qtbot.waitSignal(tab.ctx.error_posted, timeout=2000) as blocker:
        tab.start_rollout()
    msg = blocker.args[0]
    assert expected in msg and str(path) in msg and "\n" not in msg
    assert tab.thread is None and tab.ctx.rigs.holder == ""
    assert tab.calib_error.isVisibleTo(tab) and expected in tab.calib_error.text()
    assert expected in tab.status_label.text()
    # clearing the field clears the error
    tab.calib_edit.setText("")
    assert tab.calibrations() == {} and not tab.calib_error.isVisibleTo(tab)


def test_calibrated_cameras_get_the_path_overlay(qtbot, tab, tmp_path):
    """Two non-sim cameras whose calibrations differ only in cx: the drawn paths differ by exactly that."""
    path = tmp_path / "calib.json"
    path.write_text(json.dumps({"usb": _calib(80), "usb2": _calib(120)}))
    cam = dict(width=160, height=120, fps=15)
    tab.rig_spec = RigConfig(name="bench", robot=C.SimRobotConfig(task="pick"),
                             cameras={"usb": C.TestPatternCameraConfig(**cam), "usb2": C.TestPatternCameraConfig(**cam)})
    tab.policy_object = FixedChunkPolicy(chunk_size=4, step=2.0, camera_names=("usb",))
    tab.max_s_spin.setValue(1.5)
    tab.calib_edit.setText(str(path))
    tab.start_rollout()
    assert tab.thread is not None
    qtbot.waitUntil(lambda: tab._overlay.get("usb") is not None and tab._overlay["usb"].path_px is not None,
                    timeout=20000)
    a, b = tab._overlay["usb"].path_px, tab._overlay["usb2"].path_px
    assert np.isfinite(a).all() and len(a) >= 1
    np.testing.assert_allclose(b - a, np.broadcast_to([40.0, 0.0], a.shape), atol=1e-3)
    with qtbot.waitSignal(tab.thread.finished, timeout=20000):
        pass


def test_a_calibration_for_a_camera_the_rig_lacks_is_refused(qtbot, tab, tmp_path):
    from recorder.devices.rig import sim_rig_config

    path = tmp_path / "calib.json"
    path.write_text(json.dumps({"usb": _calib(80)}))
    tab.rig_spec = sim_rig_config(teleop="none", width=160, height=120, fps=15)
    tab.policy_object = FixedChunkPolicy()
    tab.calib_edit.setText(str(path))
    errors = []
    tab.ctx.error_posted.connect(errors.append)
    tab.start_rollout()
    qtbot.waitUntil(lambda: bool(errors) and not tab.running and tab.ctx.rigs.holder == "", timeout=20000)
    assert errors and "usb" in errors[-1] and "calibration" in errors[-1]
    assert tab.status_label.text().startswith("failed:")
    assert tab.ctx.rigs.holder == "" and tab.ctx.rigs.rig is None
