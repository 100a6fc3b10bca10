"""A form for a rig (robot, teleoperator, cameras): a pure view over the rig file's plain dict.

``set_data(d)`` shows a rig dict (the form ``RigConfig.to_dict()`` gives and rig.toml holds);
``data()`` returns the dict the form describes. Options the form does not show (e.g. ``max_relative_target``,
a keyboard's speeds) are kept from the dict last set, as long as the device type is unchanged.
``set_detected(found)`` offers detected serial ports, OpenCV sources and RealSense serials in the
editable drop-downs. Nothing here opens a device or a file: the controller (studio/record/rig_editor.py) does.
"""

from __future__ import annotations

import copy
from typing import Any

from PyQt6.QtCore import QSignalBlocker, pyqtSignal
from PyQt6.QtGui import QStandardItemModel
from PyQt6.QtWidgets import (
    QAbstractItemView,
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QHeaderView,
    QLineEdit,
    QPushButton,
    QSpinBox,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

ROBOT_TYPES = ["sim", "so101_follower", "so100_follower", "koch_follower"]
SIM_TASKS = ["pick", "push"]
TELEOP_CHOICES = ["none", "keyboard", "scripted", "leader arm", "gamepad", "spacemouse"]
CAMERA_TYPES = ["sim", "opencv", "realsense", "test_pattern"]
SIM_SCENE_CAMERAS = ["front", "wrist"]
_SOURCE_KEY = {"sim": "camera", "opencv": "index_or_path", "realsense": "serial", "test_pattern": "pattern"}
COLUMNS = ["name", "type", "source", "width", "height", "fps", "option"]


def leader_type(robot_type: str) -> str:
    """The leader arm that goes with a follower (the sim arm is SO-101-shaped)."""
    prefix = robot_type.split("_", 1)[0]
    return f"{prefix}_leader" if prefix in ("so101", "so100", "koch") else "so101_leader"


def _combo(items, editable: bool = False) -> QComboBox:
    c = QComboBox()
    c.setEditable(editable)
    c.addItems(items)
    return c


def _set_combo(c: QComboBox, text: str) -> None:
    i = c.findText(text)
    if i >= 0:
        c.setCurrentIndex(i)
    elif c.isEditable():
        c.setEditText(text)


class RigFormWidget(QWidget):
    """Robot, teleoperator and a camera table.

    Signals:
        changed(): any field was edited.
    """

    changed = pyqtSignal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._orig: dict[str, Any] = {}
        self._orig_cams: list[dict] = []  # original dict per camera row (same order as the table)
        self._ports: list[str] = []
        self._opencv: list[str] = []
        self._serials: list[str] = []

        self.name_edit = QLineEdit("rig")
        # robot
        self.robot_type = _combo(ROBOT_TYPES)
        self.task_combo = _combo(SIM_TASKS)
        self.robot_port = _combo([], editable=True)
        self.robot_port.lineEdit().setPlaceholderText("/dev/ttyACM0")
        self.robot_id = QLineEdit()
        self.robot_id.setPlaceholderText("follower (names the calibration file)")
        robot_box = QGroupBox("Robot")
        self.robot_form = QFormLayout(robot_box)
        self.robot_form.addRow("type", self.robot_type)
        self.robot_form.addRow("sim task", self.task_combo)
        self.robot_form.addRow("port", self.robot_port)
        self.robot_form.addRow("id", self.robot_id)
        # teleop
        self.teleop_combo = _combo(TELEOP_CHOICES)
        self.teleop_port = _combo([], editable=True)
        self.teleop_port.lineEdit().setPlaceholderText("/dev/ttyACM1")
        self.teleop_id = QLineEdit()
        self.teleop_id.setPlaceholderText("leader")
        teleop_box = QGroupBox("Teleoperator")
        self.teleop_form = QFormLayout(teleop_box)
        self.teleop_form.addRow("type", self.teleop_combo)
        self.teleop_form.addRow("leader port", self.teleop_port)
        self.teleop_form.addRow("leader id", self.teleop_id)
        # cameras
        cam_box = QGroupBox("Cameras")
        self.table = QTableWidget(0, len(COLUMNS))
        self.table.setHorizontalHeaderLabels(COLUMNS)
        self.table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        self.table.horizontalHeader().setSectionResizeMode(2, QHeaderView.ResizeMode.Stretch)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.verticalHeader().setVisible(False)
        self.add_btn = QPushButton("Add camera")
        self.remove_btn = QPushButton("Remove camera")
        self.add_btn.clicked.connect(lambda: self.add_camera())
        self.remove_btn.clicked.connect(self._on_remove_clicked)
        cl = QVBoxLayout(cam_box)
        cl.addWidget(self.table)
        row = QHBoxLayout()
        row.addWidget(self.add_btn)
        row.addWidget(self.remove_btn)
        row.addStretch(1)
        cl.addLayout(row)

        top = QFormLayout()
        top.addRow("rig name", self.name_edit)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addLayout(top)
        pair = QHBoxLayout()
        pair.addWidget(robot_box)
        pair.addWidget(teleop_box)
        layout.addLayout(pair)
        layout.addWidget(cam_box, 1)

        self.robot_type.currentTextChanged.connect(self._on_robot_type_changed)
        self.teleop_combo.currentTextChanged.connect(self._on_teleop_changed)
        for w in (self.name_edit, self.robot_id, self.teleop_id):
            w.textEdited.connect(self.changed)
        for c in (self.task_combo, self.robot_port, self.teleop_port):
            c.currentTextChanged.connect(self.changed)
        self._on_robot_type_changed(self.robot_type.currentText())

    # ------------------------------------------------------------------ visibility
    def _on_robot_type_changed(self, rtype: str) -> None:
        sim = rtype == "sim"
        self.robot_form.setRowVisible(self.task_combo, sim)
        self.robot_form.setRowVisible(self.robot_port, not sim)
        self.robot_form.setRowVisible(self.robot_id, not sim)
        # the scripted expert exists only for the sim tasks
        model = self.teleop_combo.model()
        if isinstance(model, QStandardItemModel):
            model.item(TELEOP_CHOICES.index("scripted")).setEnabled(sim)
        if not sim and self.teleop_combo.currentText() == "scripted":
            self.teleop_combo.setCurrentText("leader arm")
        self._on_teleop_changed(self.teleop_combo.currentText())
        self.changed.emit()

    def _on_teleop_changed(self, choice: str) -> None:
        leader = choice == "leader arm"
        self.teleop_form.setRowVisible(self.teleop_port, leader)
        self.teleop_form.setRowVisible(self.teleop_id, leader)
        self.changed.emit()

    # ------------------------------------------------------------------ cameras
    def add_camera(self, name: str | None = None, d: dict | None = None) -> int:
        """Append a camera row (defaults: a test pattern, or a sim camera on the sim robot)."""
        if d is None:
            sim = self.robot_type.currentText() == "sim"
            d = {"type": "sim", "camera": "front"} if sim else {"type": "opencv", "index_or_path": 0}
        if name is None:
            taken = set(self.camera_names())
            name = next(n for n in ["front", "wrist", "side", "top"] + [f"cam{i}" for i in range(2, 99)]
                        if n not in taken)
        r = self.table.rowCount()
        self.table.insertRow(r)
        self._orig_cams.append(copy.deepcopy(d))
        self.table.setItem(r, 0, QTableWidgetItem(name))
        tcombo = _combo(CAMERA_TYPES)
        _set_combo(tcombo, str(d.get("type", "opencv")))
        self.table.setCellWidget(r, 1, tcombo)
        src = _combo([], editable=True)
        self.table.setCellWidget(r, 2, src)
        for col, key, lo, hi, default in ((3, "width", 1, 7680, 320), (4, "height", 1, 4320, 240),
                                          (5, "fps", 1, 1000, 30)):
            sp = QSpinBox() if key != "fps" else QDoubleSpinBox()
            sp.setRange(lo, hi)
            sp.setValue(d.get(key, default) if key == "fps" else int(d.get(key, default)))
            sp.valueChanged.connect(self.changed)
            self.table.setCellWidget(r, col, sp)
        opt = QCheckBox()
        self.table.setCellWidget(r, 6, opt)
        self._fill_source(r, str(d.get("type", "opencv")), d)
        tcombo.currentTextChanged.connect(lambda t, w=tcombo: self._on_camera_type_changed(w, t))
        src.currentTextChanged.connect(self.changed)
        opt.toggled.connect(self.changed)
        self.changed.emit()
        return r

    def _row_of(self, widget) -> int:
        for r in range(self.table.rowCount()):
            if self.table.cellWidget(r, 1) is widget:
                return r
        return -1

    def _on_camera_type_changed(self, widget, ctype: str) -> None:
        r = self._row_of(widget)
        if r >= 0:
            self._fill_source(r, ctype, self._orig_cams[r] if self._orig_cams[r].get("type") == ctype else {})
        self.changed.emit()

    def _fill_source(self, r: int, ctype: str, d: dict) -> None:
        src: QComboBox = self.table.cellWidget(r, 2)
        opt: QCheckBox = self.table.cellWidget(r, 6)
        with QSignalBlocker(src), QSignalBlocker(opt):
            src.clear()
            src.setEditable(ctype != "sim")
            if ctype == "sim":
                src.addItems(SIM_SCENE_CAMERAS)
                _set_combo(src, str(d.get("camera", self.table.item(r, 0).text() if self.table.item(r, 0) else "front")))
            elif ctype == "opencv":
                src.addItems(self._opencv)
                src.setEditText(str(d.get("index_or_path", self._opencv[0] if self._opencv else 0)))
                src.setToolTip("camera index (0, 1, …), /dev/videoN or a video file")
            elif ctype == "realsense":
                src.addItems(self._serials)
                src.setEditText(str(d.get("serial") or ""))
                src.lineEdit().setPlaceholderText("serial (empty: the first camera)")
            else:
                src.addItems(["bars"])
                src.setEditText(str(d.get("pattern", "bars")))
            opt.setVisible(ctype in ("opencv", "realsense"))
            opt.setText({"opencv": "MJPG", "realsense": "depth"}.get(ctype, ""))
            if ctype == "opencv":
                opt.setChecked(bool(d.get("fourcc", "MJPG")))
            elif ctype == "realsense":
                opt.setChecked(bool(d.get("use_depth", False)))
            else:
                opt.setChecked(False)

    def _on_remove_clicked(self) -> None:
        rows = sorted({i.row() for i in self.table.selectedIndexes()}, reverse=True)
        if not rows and self.table.rowCount():
            rows = [self.table.rowCount() - 1]
        for r in rows:
            self.remove_camera(r)

    def remove_camera(self, row: int) -> None:
        self.table.removeRow(row)
        del self._orig_cams[row]
        self.changed.emit()

    def camera_names(self) -> list[str]:
        return [(self.table.item(r, 0).text() if self.table.item(r, 0) else "").strip()
                for r in range(self.table.rowCount())]

    def camera_widgets(self, row: int) -> dict[str, QWidget]:
        """The editors of one camera row by column name (tests and the controller use them)."""
        return {c: self.table.cellWidget(row, i) for i, c in enumerate(COLUMNS) if i > 0}

    # ------------------------------------------------------------------ detection
    def set_detected(self, found: dict) -> None:
        """Offer what `vla-studio devices` found: {"serial": [{"port"}], "opencv": [{"source"}], "realsense": [{"serial"}]}."""
        self._ports = [str(p["port"]) for p in found.get("serial", [])]
        self._opencv = [str(c["source"]) for c in found.get("opencv", [])]
        self._serials = [str(d["serial"]) for d in found.get("realsense", [])]
        for combo in (self.robot_port, self.teleop_port):
            text = combo.currentText()
            with QSignalBlocker(combo):
                combo.clear()
                combo.addItems(self._ports)
                combo.setEditText(text)
        for r in range(self.table.rowCount()):
            ctype = self.table.cellWidget(r, 1).currentText()
            if ctype in ("opencv", "realsense"):
                src: QComboBox = self.table.cellWidget(r, 2)
                text = src.currentText()
                with QSignalBlocker(src):
                    src.clear()
                    src.addItems(self._opencv if ctype == "opencv" else self._serials)
                    src.setEditText(text)
        if not self.robot_port.currentText() and self._ports:
            self.robot_port.setEditText(self._ports[0])
        if not self.teleop_port.currentText() and len(self._ports) > 1:
            self.teleop_port.setEditText(self._ports[1])

    # ------------------------------------------------------------------ data in / out
    def set_data(self, d: dict) -> None:
        self._orig = copy.deepcopy(d)
        robot = dict(d.get("robot", {}))
        teleop = d.get("teleop")
        if isinstance(teleop, str):
            teleop = {"type": teleop}
        self.name_edit.setText(str(d.get("name", "rig")))
        _set_combo(self.robot_type, str(robot.get("type", "sim")))
        _set_combo(self.task_combo, str(d.get("task") or robot.get("task") or "pick"))
        self.robot_port.setEditText(str(robot.get("port", "")))
        self.robot_id.setText(str(robot.get("id", "")) if robot.get("type") != "sim" else "")
        ttype = (teleop or {}).get("type", "none")
        choice = "leader arm" if str(ttype).endswith("_leader") else ttype
        _set_combo(self.teleop_combo, choice if choice in TELEOP_CHOICES else "none")
        self.teleop_port.setEditText(str((teleop or {}).get("port", "")))
        self.teleop_id.setText(str((teleop or {}).get("id", "")))
        self.table.setRowCount(0)
        self._orig_cams = []
        for name, cam in (d.get("cameras") or {}).items():
            self.add_camera(str(name), dict(cam))
        self._on_robot_type_changed(self.robot_type.currentText())

    def data(self) -> dict[str, Any]:
        """The rig dict the form describes (not validated: the controller checks it with the rig loader)."""
        out: dict[str, Any] = {"name": self.name_edit.text().strip() or "rig"}
        rtype = self.robot_type.currentText()
        orig_robot = dict(self._orig.get("robot", {}))
        robot = orig_robot if orig_robot.get("type") == rtype else {}
        robot["type"] = rtype
        if rtype == "sim":
            out["task"] = self.task_combo.currentText()
            robot["task"] = out["task"]
            for k in ("port", "id"):
                if k in robot and robot.get("type") != orig_robot.get("type"):
                    robot.pop(k)
        else:
            robot.pop("task", None)
            robot["port"] = self.robot_port.currentText().strip()
            robot["id"] = self.robot_id.text().strip() or "follower"
        out["robot"] = robot
        cams: dict[str, dict] = {}
        for r in range(self.table.rowCount()):
            name = (self.table.item(r, 0).text() if self.table.item(r, 0) else "").strip()
            w = self.camera_widgets(r)
            ctype = w["type"].currentText()
            orig = self._orig_cams[r]
            cam = dict(orig) if orig.get("type") == ctype else {}
            cam["type"] = ctype
            src = w["source"].currentText().strip()
            key = _SOURCE_KEY[ctype]
            if ctype == "opencv":
                cam[key] = int(src) if src.lstrip("-").isdigit() else src
                cam["fourcc"] = "MJPG" if w["option"].isChecked() else ""
            elif ctype == "realsense":
                if src:
                    cam[key] = src
                else:
                    cam.pop(key, None)
                cam["use_depth"] = w["option"].isChecked()
            else:
                cam[key] = src
            cam["width"], cam["height"] = w["width"].value(), w["height"].value()
            cam["fps"] = float(w["fps"].value())
            cams[name] = cam  # the controller refuses empty or repeated names (camera_names())
        out["cameras"] = cams
        choice = self.teleop_combo.currentText()
        if choice != "none":
            ttype = leader_type(rtype) if choice == "leader arm" else choice
            orig_t = self._orig.get("teleop")
            orig_t = {"type": orig_t} if isinstance(orig_t, str) else dict(orig_t or {})
            teleop = orig_t if orig_t.get("type") == ttype else {}
            teleop["type"] = ttype
            if choice == "leader arm":
                teleop["port"] = self.teleop_port.currentText().strip()
                teleop["id"] = self.teleop_id.text().strip() or "leader"
            out["teleop"] = teleop
        return out


__all__ = ["RigFormWidget", "ROBOT_TYPES", "TELEOP_CHOICES", "CAMERA_TYPES", "leader_type"]
