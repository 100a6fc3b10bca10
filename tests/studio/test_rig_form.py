"""The rig editor's form: fill it, save rig.toml, load it back the same; a bad field is named."""

import pytest

from recorder.devices import configs as C
from recorder.devices.rig import read_rig_config

pytestmark = pytest.mark.gui


@pytest.fixture
def dialog(qtbot, tmp_path):
    from studio.record.rig_editor import RigEditorDialog

    def make(spec="sim", path=None):
        dlg = RigEditorDialog(RigEditorDialog.text_for(spec), path or tmp_path / "rig.toml")
        qtbot.addWidget(dlg)
        return dlg

    return make


def test_form_round_trip_for_a_real_arm_with_cameras(qtbot, dialog, tmp_path):
    dlg = dialog()
    form = dlg.form
    assert form.camera_names() == ["front", "wrist"] and form.robot_type.currentText() == "sim"
    form.name_edit.setText("bench-arm")
    form.robot_type.setCurrentText("so101_follower")
    form.robot_port.setEditText("/dev/ttyACM0")
    form.robot_id.setText("follower")
    # the scripted expert is for the sim only
    assert not form.teleop_combo.model().item(form.teleop_combo.findText("scripted")).isEnabled()
    form.teleop_combo.setCurrentText("leader arm")
    form.teleop_port.setEditText("/dev/ttyACM1")
    form.teleop_id.setText("leader")
    # front -> a USB webcam 640x480 MJPG, wrist -> a RealSense with depth, plus a test pattern
    w = form.camera_widgets(0)
    w["type"].setCurrentText("opencv")
    w["source"].setEditText("/dev/video2")
    w["width"].setValue(640)
    w["height"].setValue(480)
    assert w["option"].text() == "MJPG" and w["option"].isChecked()
    w = form.camera_widgets(1)
    w["type"].setCurrentText("realsense")
    w["source"].setEditText("123456789")
    w["option"].setChecked(True)
    r = form.add_camera("pattern")
    form.camera_widgets(r)["type"].setCurrentText("test_pattern")
    form.camera_widgets(r)["fps"].setValue(15)
    dlg._on_save()
    assert dlg.error.text() == "" and dlg.result() == dlg.DialogCode.Accepted

    cfg = read_rig_config(tmp_path / "rig.toml")
    assert cfg.name == "bench-arm"
    assert isinstance(cfg.robot, C.SO101FollowerConfig) and cfg.robot.port == "/dev/ttyACM0" and cfg.robot.id == "follower"
    assert isinstance(cfg.teleop, C.SO101LeaderConfig) and cfg.teleop.port == "/dev/ttyACM1"
    assert list(cfg.cameras) == ["front", "wrist", "pattern"]
    front, wrist, pattern = cfg.cameras.values()
    assert isinstance(front, C.OpenCVCameraConfig) and front.index_or_path == "/dev/video2"
    assert (front.width, front.height, front.fourcc) == (640, 480, "MJPG")
    assert isinstance(wrist, C.RealSenseCameraConfig) and wrist.serial == "123456789" and wrist.use_depth
    assert isinstance(pattern, C.TestPatternCameraConfig) and pattern.fps == 15

    # reload into a new dialog: the form shows the same rig, and saving it again changes nothing
    from studio.record.rig_editor import RigEditorDialog

    again = RigEditorDialog(RigEditorDialog.text_for(str(tmp_path / "rig.toml")), tmp_path / "rig2.toml")
    qtbot.addWidget(again)
    assert again.form.robot_port.currentText() == "/dev/ttyACM0"
    assert again.form.teleop_combo.currentText() == "leader arm"
    again._on_save()
    assert read_rig_config(tmp_path / "rig2.toml") == cfg


def test_sim_rig_round_trip_keeps_options_the_form_does_not_show(qtbot, dialog, tmp_path):
    src = tmp_path / "src.toml"
    src.write_text('name = "s"\ntask = "push"\nteleop = "keyboard"\n[robot]\ntype = "sim"\nseed = 7\n'
                   '[cameras.front]\ntype = "sim"\ncamera = "front"\nshadows = true\n')
    dlg = dialog(str(src), tmp_path / "out.toml")
    assert dlg.form.task_combo.currentText() == "push"
    dlg.form.teleop_combo.setCurrentText("scripted")
    dlg._on_save()
    cfg = read_rig_config(tmp_path / "out.toml")
    assert cfg.task == "push" and cfg.robot.seed == 7 and cfg.cameras["front"].shadows is True
    assert isinstance(cfg.teleop, C.ScriptedTeleopConfig)
    # raw TOML shows what the form holds, and back
    dlg2 = dialog(str(tmp_path / "out.toml"), tmp_path / "out2.toml")
    dlg2.raw_check.setChecked(True)
    assert 'type = "scripted"' in dlg2.editor.toPlainText()
    dlg2.editor.setPlainText(dlg2.editor.toPlainText().replace('task = "push"', 'task = "pick"', 1))
    dlg2.raw_check.setChecked(False)
    assert dlg2.form.task_combo.currentText() == "pick"


def test_bad_fields_are_named_and_nothing_is_written(qtbot, dialog, tmp_path):
    path = tmp_path / "rig.toml"
    dlg = dialog(path=path)
    dlg.form.robot_type.setCurrentText("koch_follower")
    dlg.form.robot_port.setEditText("")
    dlg._on_save()
    assert not path.exists()
    assert "robot port is empty" in dlg.error.text() and "\n" not in dlg.error.text()
    dlg.form.robot_port.setEditText("/dev/ttyUSB0")
    dlg.form.table.item(1, 0).setText("front")  # two cameras named front
    dlg._on_save()
    assert not path.exists() and "'front' is used twice" in dlg.error.text()
    dlg.form.table.item(1, 0).setText("wrist")
    dlg._on_save()  # the sim scene cameras stayed on a real arm
    assert not path.exists() and "[cameras.front] type 'sim' needs the sim robot" in dlg.error.text()
    dlg.form.camera_widgets(1)["type"].setCurrentText("test_pattern")
    # an OpenCV camera with no source is named by its table name
    dlg.form.camera_widgets(0)["type"].setCurrentText("opencv")
    dlg.form.camera_widgets(0)["source"].setEditText("")
    dlg._on_save()
    assert not path.exists() and "[cameras.front] source is empty" in dlg.error.text()
    dlg.form.camera_widgets(0)["source"].setEditText("0")
    dlg._on_save()
    assert path.exists() and read_rig_config(path).cameras["front"].index_or_path == 0


def test_detected_devices_fill_the_form_choices(qtbot, dialog):
    dlg = dialog()
    dlg.form.robot_type.setCurrentText("so100_follower")
    dlg._on_detected({"serial": [{"port": "/dev/ttyACM5"}, {"port": "/dev/ttyACM6"}],
                      "opencv": [{"source": "/dev/video4"}], "realsense": [{"serial": "999"}], "text": "found"})
    form = dlg.form
    assert form.robot_port.currentText() == "/dev/ttyACM5"
    assert [form.teleop_port.itemText(i) for i in range(form.teleop_port.count())] == ["/dev/ttyACM5", "/dev/ttyACM6"]
    form.camera_widgets(0)["type"].setCurrentText("opencv")
    assert form.camera_widgets(0)["source"].currentText() == "/dev/video4"
    form.camera_widgets(1)["type"].setCurrentText("realsense")
    assert form.camera_widgets(1)["source"].itemText(0) == "999"
    assert dlg.devices.toPlainText() == "found"


def test_metaworld_rig_opens_as_toml_and_saves_unchanged(qtbot, dialog, tmp_path):
    from pathlib import Path

    src = Path(__file__).resolve().parents[2] / "assets" / "rigs" / "metaworld_mt10.toml"
    dlg = dialog(str(src), tmp_path / "out.toml")
    # the form has no Meta-World fields: the rig opens as TOML (nothing is turned into the sim arm) and says why
    assert dlg.raw_check.isChecked() and "robot type 'metaworld' has no form fields" in dlg.error.text()
    dlg.raw_check.setChecked(False)
    assert dlg.raw_check.isChecked()  # it stays in TOML
    dlg._on_save()
    cfg = read_rig_config(tmp_path / "out.toml")
    assert isinstance(cfg.robot, C.MetaWorldRobotConfig) and cfg.robot.tasks == "mt10" and cfg.robot.seed == 0
    assert cfg.cameras["corner2"].camera == "corner2" and cfg.cameras["corner2"].width == 224
    assert isinstance(cfg.teleop, C.ScriptedTeleopConfig)
