"""The rig editor: a form (``widgets.rig_form.RigFormWidget``) with a raw-TOML toggle, device detection
on a worker thread, validation by the same loader as rig files, and ``save_rig`` to rig.toml.

Controller only: the form is a view over a plain dict; detection (which opens cameras) runs on a
``CallThread``; every check goes through ``RigConfig.from_dict`` so the form and rig.toml agree.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from PyQt6.QtCore import QSignalBlocker
from PyQt6.QtGui import QFont
from PyQt6.QtWidgets import (
    QCheckBox,
    QDialog,
    QDialogButtonBox,
    QFileDialog,
    QHBoxLayout,
    QLabel,
    QPlainTextEdit,
    QPushButton,
    QStackedWidget,
    QVBoxLayout,
)

from recorder.errors import ConfigError, KnownError
from studio.qt.threads import CallThread
from widgets.rig_form import RigFormWidget

WHERE = "rig form"


def discover_devices() -> dict[str, Any]:
    """What is plugged in, as ``vla-studio devices`` finds it, plus a text listing.

    {"opencv": [{"source", "modes"}], "realsense": [{"serial", "name"}], "serial": [{"port", "description"}],
    "text": str}. Each part that cannot be listed is empty and explained in the text. Blocks (opens cameras).
    """
    from recorder.devices.configs import registered_types

    found: dict[str, Any] = {"opencv": [], "realsense": [], "serial": []}
    lines = []
    try:
        from recorder.devices.opencv_camera import list_opencv_cameras

        found["opencv"] = list_opencv_cameras()
        lines += [f"opencv camera: source = {c['source']!r}  modes: "
                  + ", ".join(f"{m['width']}x{m['height']}" for m in c.get("modes", [])) for c in found["opencv"]]
    except Exception as err:  # noqa: BLE001 - a listing must never fail the dialog
        lines.append(f"opencv cameras: not listed ({err})")
    try:
        from recorder.devices.realsense import list_realsense

        found["realsense"] = list_realsense()
        lines += [f"realsense: serial = {d['serial']!r}  {d.get('name', '')}" for d in found["realsense"]]
    except Exception as err:  # noqa: BLE001
        lines.append(f"realsense: not listed ({err})")
    try:
        from serial.tools import list_ports

        found["serial"] = [{"port": p.device, "description": p.description or ""}
                           for p in sorted(list_ports.comports(), key=lambda p: p.device)]
        lines += [f"serial port: port = {p['port']!r}  {p['description']}" for p in found["serial"]]
    except Exception as err:  # noqa: BLE001
        lines.append(f"serial ports: not listed ({err})")
    if not any(found[k] for k in ("opencv", "realsense", "serial")):
        lines.append("no cameras or serial ports found (the sim rig and test_pattern cameras need none)")
    for kind in ("robot", "teleop", "camera"):
        lines.append(f"{kind} types: {', '.join(registered_types(kind))}")
    found["text"] = "\n".join(lines)
    return found


def detect_devices() -> str:
    """The text listing of :func:`discover_devices`."""
    return discover_devices()["text"]


def _form_cannot_show(data: dict) -> str | None:
    """What of a rig the form has no fields for (its device types), or None."""
    from widgets.rig_form import CAMERA_TYPES, ROBOT_TYPES

    robot = data.get("robot") if isinstance(data.get("robot"), dict) else {}
    if robot.get("type", "sim") not in ROBOT_TYPES:
        return f"robot type '{robot.get('type')}'"
    cams = data.get("cameras") if isinstance(data.get("cameras"), dict) else {}
    for name, cam in cams.items():
        if isinstance(cam, dict) and cam.get("type") not in CAMERA_TYPES:
            return f"camera '{name}' of type '{cam.get('type')}'"
    return None


def form_problems(data: dict, camera_names: list[str] | None = None) -> None:
    """Checks the loader cannot make (it never sees empty fields as wrong): ConfigError naming the field."""
    robot = data.get("robot", {})
    simulated = robot.get("type") in ("sim", "metaworld")  # no serial port, a scripted expert
    if not simulated and not str(robot.get("port", "")).strip():
        raise ConfigError(f"{WHERE}: robot port is empty: pick the follower arm's serial port "
                          f"(Detect devices lists them), e.g. /dev/ttyACM0")
    teleop = data.get("teleop") or {}
    if isinstance(teleop, dict):
        if str(teleop.get("type", "")).endswith("_leader") and not str(teleop.get("port", "")).strip():
            raise ConfigError(f"{WHERE}: teleop leader port is empty: pick the leader arm's serial port")
        if teleop.get("type") == "scripted" and not simulated:
            raise ConfigError(f"{WHERE}: teleop 'scripted' drives the sim or Meta-World robot only: pick another "
                              "teleoperator")
    names = camera_names if camera_names is not None else list(data.get("cameras", {}))
    seen = set()
    for i, n in enumerate(names):
        if not n:
            raise ConfigError(f"{WHERE}: camera {i + 1} has no name: give it one (e.g. front, wrist)")
        if n in seen:
            raise ConfigError(f"{WHERE}: camera name '{n}' is used twice: camera names must differ")
        seen.add(n)
    for name, cam in data.get("cameras", {}).items():
        if cam.get("type") == "sim" and robot.get("type") != "sim":
            raise ConfigError(f"{WHERE}: [cameras.{name}] type 'sim' needs the sim robot: pick opencv, realsense "
                              f"or test_pattern")
        if cam.get("type") == "metaworld" and robot.get("type") != "metaworld":
            raise ConfigError(f"{WHERE}: [cameras.{name}] type 'metaworld' needs the Meta-World robot")
        if cam.get("type") == "opencv" and cam.get("index_or_path") in ("", None):
            raise ConfigError(f"{WHERE}: [cameras.{name}] source is empty: give a camera index, /dev/videoN or a file")


class RigEditorDialog(QDialog):
    """Edits a rig in a form (or as raw TOML), checks it with the rig loader, and writes rig.toml.

    ``RigEditorDialog(text, path)``: ``text`` is the rig as TOML (``text_for(spec)`` gives it); ``path``
    where Save writes (None: ask). ``raw_check`` switches between the form and the TOML editor.
    Signals: none beyond QDialog's.
    """

    def __init__(self, text: str, path: Path | None, parent=None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Edit rig")
        self.resize(760, 640)
        self.path = path
        self.saved_config = None
        self.form = RigFormWidget()
        self.editor = QPlainTextEdit(text)
        self.editor.setFont(QFont("monospace"))
        self.stack = QStackedWidget()
        self.stack.addWidget(self.form)
        self.stack.addWidget(self.editor)
        self.raw_check = QCheckBox("raw TOML")
        self.raw_check.toggled.connect(self._on_raw_toggled)
        self.error = QLabel("")
        self.error.setStyleSheet("color: #c00")
        self.error.setWordWrap(True)
        self.devices = QPlainTextEdit()
        self.devices.setReadOnly(True)
        self.devices.setMaximumHeight(110)
        self.devices.setPlaceholderText("Detect devices lists cameras, RealSense serials and serial ports "
                                        "and offers them in the form")
        self.detect_btn = QPushButton("Detect devices")
        self.detect_btn.clicked.connect(self._on_detect_clicked)
        self._detect: CallThread | None = None
        self.detected: dict | None = None
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Save | QDialogButtonBox.StandardButton.Cancel)
        buttons.accepted.connect(self._on_save)
        buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        top = QHBoxLayout()
        top.addWidget(QLabel("robot, teleoperator and cameras (saved as rig.toml)"))
        top.addStretch(1)
        top.addWidget(self.raw_check)
        layout.addLayout(top)
        layout.addWidget(self.stack, 1)
        layout.addWidget(self.error)
        row = QHBoxLayout()
        row.addWidget(self.detect_btn)
        row.addStretch(1)
        layout.addLayout(row)
        layout.addWidget(self.devices)
        layout.addWidget(buttons)
        try:
            data = self._parse(text)
            unknown = _form_cannot_show(data)
            if unknown:  # a rig the form has no fields for (Meta-World) opens as TOML, so nothing is lost
                raise ConfigError(f"rig: {unknown} has no form fields: edit it as TOML")
            self.form.set_data(data)
        except KnownError as err:  # a broken file opens in the raw editor with its error shown
            self.error.setText(str(err))
            self.editor.setPlainText(text)
            with QSignalBlocker(self.raw_check):
                self.raw_check.setChecked(True)
            self.stack.setCurrentWidget(self.editor)

    # ------------------------------------------------------------------ raw / form
    @staticmethod
    def _parse(text: str) -> dict:
        import tomllib

        try:
            return tomllib.loads(text)
        except tomllib.TOMLDecodeError as err:
            raise ConfigError(f"rig: not valid TOML ({err})") from None

    @property
    def raw(self) -> bool:
        return self.raw_check.isChecked()

    def _on_raw_toggled(self, raw: bool) -> None:
        import tomli_w

        if raw:
            self.editor.setPlainText(tomli_w.dumps(self.form.data()))
            self.stack.setCurrentWidget(self.editor)
            self.error.setText("")
            return
        try:
            data = self._parse(self.editor.toPlainText())
            from recorder.devices.rig import RigConfig

            RigConfig.from_dict(data, where="rig")
            unknown = _form_cannot_show(data)
            if unknown:
                raise ConfigError(f"rig: {unknown} has no form fields: edit it as TOML")
        except KnownError as err:  # stay in the editor until it parses
            self.error.setText(str(err))
            with QSignalBlocker(self.raw_check):
                self.raw_check.setChecked(True)
            return
        self.form.set_data(data)
        self.stack.setCurrentWidget(self.form)
        self.error.setText("")

    # ------------------------------------------------------------------ detection
    def _on_detect_clicked(self) -> None:
        if self._detect is not None:
            return
        self.detect_btn.setEnabled(False)
        self.devices.setPlainText("detecting…")
        self._detect = CallThread(discover_devices, self)  # opening cameras blocks: never on the GUI thread
        self._detect.succeeded.connect(self._on_detected)
        self._detect.failed.connect(self.devices.setPlainText)
        self._detect.finished.connect(self._on_detect_finished)
        self._detect.start()

    def _on_detected(self, found: dict) -> None:
        self.detected = found
        self.devices.setPlainText(found.get("text", ""))
        self.form.set_detected(found)

    def _on_detect_finished(self) -> None:
        self.detect_btn.setEnabled(True)
        if self._detect is not None:
            self._detect.deleteLater()
        self._detect = None

    def done(self, result: int) -> None:
        if self._detect is not None:
            self._detect.wait(10000)
        super().done(result)

    # ------------------------------------------------------------------ check and save
    @staticmethod
    def text_for(spec: str) -> str:
        import tomli_w

        from recorder.devices.rig import metaworld_rig_config, read_rig_config, sim_rig_config

        if spec == "sim" or spec.startswith("sim:"):
            cfg = sim_rig_config(task=spec.split(":", 1)[1] if ":" in spec else "pick")
        elif spec == "metaworld" or spec.startswith("metaworld:"):
            cfg = metaworld_rig_config(spec.split(":", 1)[1] if ":" in spec else "mt10")
        else:
            cfg = read_rig_config(spec)
        return tomli_w.dumps(cfg.to_dict())

    def check(self):
        """The RigConfig the dialog describes; ConfigError (one line naming the field) when it is wrong."""
        from recorder.devices.rig import RigConfig

        if self.raw:
            return RigConfig.from_dict(self._parse(self.editor.toPlainText()), where="rig")
        data = self.form.data()
        form_problems(data, self.form.camera_names())
        return RigConfig.from_dict(data, where=WHERE)

    def _on_save(self) -> None:
        from recorder.devices.rig import save_rig

        try:
            cfg = self.check()
        except KnownError as err:
            self.error.setText(str(err))
            return
        if self.path is None:
            name, _ = QFileDialog.getSaveFileName(self, "Save rig", "rig.toml", "Rig files (*.toml)")
            if not name:
                return
            self.path = Path(name)
        try:
            save_rig(cfg, self.path)
        except OSError as err:
            self.error.setText(f"rig file {self.path}: cannot write ({err.strerror}): pick another folder")
            return
        self.saved_config = cfg
        self.accept()


__all__ = ["RigEditorDialog", "detect_devices", "discover_devices", "form_problems"]
