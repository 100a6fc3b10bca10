"""The Record tab: connect a rig, watch every camera live, record episodes with hotkeys.

Controller only: the rig is connected through the window's one ``RigManager`` (``ctx.rigs``, a worker
thread) under its lease, so the Rollout tab cannot drive the same arm meanwhile; the record session runs
on its own thread (``SessionThread``), and this tab only reacts to their signals.
Hotkeys: Space start/stop, S save, D discard, R re-record, F/G success/failure label, Esc e-stop.
When the rig is driven by the keyboard teleoperator every plain letter, Space and Tab steer the arm, so the
session hotkeys move to Enter start/stop, Ctrl+S save, Ctrl+D discard, Ctrl+R re-record, Ctrl+F/Ctrl+G
success/failure (Esc stays the e-stop); the buttons show the keys in force. Held keys are released when the
tab loses focus, so the arm never keeps moving on a key whose release went elsewhere.
"""

from __future__ import annotations

import time
from pathlib import Path

from PyQt6.QtCore import QEvent, QSignalBlocker, Qt, QTimer
from PyQt6.QtGui import QKeyEvent
from PyQt6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFileDialog,
    QFormLayout,
    QFrame,
    QGraphicsItem,
    QGridLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QScrollArea,
    QSpinBox,
    QSplitter,
    QVBoxLayout,
    QWidget,
)

from recorder.errors import KnownError, error_text
from studio.context import remember_splitter
from studio.qt.teleop_keys import forward_teleop_key
from studio.record.rig_editor import RigEditorDialog, detect_devices  # noqa: F401 - detect_devices re-exported
from studio.record.session_thread import SessionThread
from studio.rig_manager import default_rig_factory
from widgets.camera_grid import CameraGridWidget
from widgets.camera_view import CameraView
from widgets.status_widgets import CameraStatsWidget, DiskWidget, RateMeter
from widgets.strip_chart import StripChartWidget

PHASE_COLORS = {
    "idle": "#555", "recording": "#c00", "review": "#b60", "reset": "#06a", "estopped": "#800",
    "fault": "#a0a", "done": "#080", "closed": "#555", "disconnected": "#555",
}



_PLAIN = Qt.KeyboardModifier.NoModifier
_CTRL = Qt.KeyboardModifier.ControlModifier
# session hotkeys: name -> ((key, modifiers), label); letters only when no keyboard teleoperator needs them
HOTKEYS_PLAIN = {
    "start_stop": ((Qt.Key.Key_Space, _PLAIN), "Space"), "save": ((Qt.Key.Key_S, _PLAIN), "S"),
    "discard": ((Qt.Key.Key_D, _PLAIN), "D"), "rerecord": ((Qt.Key.Key_R, _PLAIN), "R"),
    "success": ((Qt.Key.Key_F, _PLAIN), "F"), "failure": ((Qt.Key.Key_G, _PLAIN), "G"),
}
HOTKEYS_KEYBOARD_TELEOP = {
    "start_stop": ((Qt.Key.Key_Return, _PLAIN), "Enter"), "save": ((Qt.Key.Key_S, _CTRL), "Ctrl+S"),
    "discard": ((Qt.Key.Key_D, _CTRL), "Ctrl+D"), "rerecord": ((Qt.Key.Key_R, _CTRL), "Ctrl+R"),
    "success": ((Qt.Key.Key_F, _CTRL), "Ctrl+F"), "failure": ((Qt.Key.Key_G, _CTRL), "Ctrl+G"),
}
TELEOP_HELP = ("Keyboard teleop: W/S or Up/Down forward/back, A/D or Left/Right left/right, "
               "R/F or PageUp/PageDown up/down, T/G pitch, Q/E roll, O/C open/close gripper, Space toggle "
               "gripper, M or Tab joint mode (1-6 / Q-Y move joints). Shift+letter also reaches the arm.")
BUTTON_TEXT = {"start_stop": "Start", "save": "Save", "discard": "Discard", "rerecord": "Re-record",
               "success": "Success", "failure": "Failure"}

OWNER = "Record"
CHART_HZ = 10.0  # strip chart redraws per second (the previews run at the camera rate)


class RecordTab(QWidget):
    """Record tab controller.

    Signals: none of its own; it posts to the AppContext (status_posted, error_posted, store_changed).
    """

    def __init__(self, ctx, parent=None) -> None:
        super().__init__(parent)
        self.ctx = ctx
        self.rig_factory = default_rig_factory
        self.rig = None
        self.session = None
        self.thread: SessionThread | None = None
        self._connecting = False
        self._disconnecting = False
        self._phase = "disconnected"
        self._views: dict[str, CameraView] = {}
        self._meters: dict[str, RateMeter] = {}
        self._last_index: dict[str, int] = {}
        self._ticks_seen = 0
        self._chart_drawn = 0.0
        self.last_status = None
        self.saved_episodes: list = []
        self.faults: list[str] = []
        self.setFocusPolicy(Qt.FocusPolicy.StrongFocus)
        self._build()
        self._disk_timer = QTimer(self)
        self._disk_timer.timeout.connect(self.disk.refresh)
        self._disk_timer.start(5000)
        self._set_phase_ui("disconnected")
        self._update_hotkey_labels()
        rigs = ctx.rigs
        rigs.rig_connected.connect(self._on_manager_connected)
        rigs.rig_failed.connect(self._on_manager_failed)
        rigs.rig_disconnected.connect(self._on_manager_disconnected)
        rigs.lease_changed.connect(self._on_lease_changed)
        self._on_lease_changed(rigs.holder)
        ctx.local_training_changed.connect(self._on_local_training_changed)

    # ------------------------------------------------------------------ layout
    def _build(self) -> None:
        rig_box = QGroupBox("Rig")
        self.rig_combo = QComboBox()
        self.rig_combo.setEditable(True)
        self.rig_combo.addItems(["sim", "sim:push", "metaworld:mt10"])
        self.rig_combo.setCurrentText(str(getattr(self.ctx, "rig", "sim") or "sim"))
        self.browse_btn = QPushButton("Open…")
        self.edit_btn = QPushButton("Edit…")
        self.connect_btn = QPushButton("Connect")
        self.conn_label = QLabel("disconnected")
        row = QHBoxLayout(rig_box)
        row.addWidget(QLabel("rig"))
        row.addWidget(self.rig_combo, 1)
        for w in (self.browse_btn, self.edit_btn, self.connect_btn):
            row.addWidget(w)
        row.addWidget(self.conn_label)

        form_box = QGroupBox("Session")
        form = QFormLayout(form_box)
        self.dataset_edit = QLineEdit("demos")
        self.task_edit = QLineEdit("pick up the red cube")
        self.episode_time = QDoubleSpinBox()
        self.episode_time.setRange(1, 3600)
        self.episode_time.setValue(30)
        self.episode_time.setSuffix(" s")
        self.reset_time = QDoubleSpinBox()
        self.reset_time.setRange(0, 600)
        self.reset_time.setValue(5)
        self.reset_time.setSuffix(" s")
        self.num_episodes = QSpinBox()
        self.num_episodes.setRange(0, 10000)
        self.num_episodes.setSpecialValueText("unlimited")
        self.auto_advance = QCheckBox("auto-advance (save at the time limit, reset, record the next)")
        self.auto_advance.setChecked(False)
        form.addRow("dataset", self.dataset_edit)
        form.addRow("task", self.task_edit)
        form.addRow("max episode", self.episode_time)
        form.addRow("reset time", self.reset_time)
        form.addRow("episodes", self.num_episodes)
        form.addRow("", self.auto_advance)

        self.views = CameraGridWidget()  # the live previews, as large as the space allows
        self.views.set_placeholder("No rig connected.\n\nChoose 'sim' (the built-in simulated arm with two cameras) "
                                   "or your rig file above and press Connect: the cameras show here live.")

        self.phase_label = QLabel()
        self.phase_label.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.phase_label.setStyleSheet("font-size: 18px; font-weight: bold; color: white; padding: 4px")
        self.timer_label = QLabel("00:00.0")
        self.timer_label.setStyleSheet("font-size: 28px; font-family: monospace")
        self.timer_label.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.count_label = QLabel("episodes saved: 0")
        self.label_label = QLabel("label: -")
        self.message_label = QLabel("")
        self.message_label.setWordWrap(True)
        self.start_btn = QPushButton("Start (Space)")
        self.save_btn = QPushButton("Save (S)")
        self.discard_btn = QPushButton("Discard (D)")
        self.rerecord_btn = QPushButton("Re-record (R)")
        self.success_btn = QPushButton("Success (F)")
        self.failure_btn = QPushButton("Failure (G)")
        self.estop_btn = QPushButton("E-STOP (Esc)")
        self.estop_btn.setMinimumHeight(70)
        self.estop_btn.setStyleSheet(
            "QPushButton { background: #d00; color: white; font-size: 22px; font-weight: bold; border-radius: 8px }"
            "QPushButton:pressed { background: #800 }")
        for b in (self.start_btn, self.save_btn, self.discard_btn, self.rerecord_btn, self.success_btn,
                  self.failure_btn, self.estop_btn, self.browse_btn, self.edit_btn, self.connect_btn):
            b.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        self.stats = CameraStatsWidget()
        self.disk = DiskWidget(self.ctx.home)
        self.chart = StripChartWidget()

        side_panel = QWidget()
        side = QVBoxLayout(side_panel)
        side.setContentsMargins(0, 0, 4, 0)
        side.addWidget(form_box)
        side.addWidget(self.phase_label)
        side.addWidget(self.timer_label)
        side.addWidget(self.count_label)
        side.addWidget(self.label_label)
        grid = QGridLayout()
        grid.addWidget(self.start_btn, 0, 0)
        grid.addWidget(self.save_btn, 0, 1)
        grid.addWidget(self.discard_btn, 1, 0)
        grid.addWidget(self.rerecord_btn, 1, 1)
        grid.addWidget(self.success_btn, 2, 0)
        grid.addWidget(self.failure_btn, 2, 1)
        side.addLayout(grid)
        side.addWidget(self.estop_btn)
        side.addWidget(self.message_label)
        side.addWidget(self.stats)
        side.addWidget(self.disk)
        self.teleop_help = QLabel("")  # the keyboard teleoperator's keys, shown while it drives the arm
        self.teleop_help.setWordWrap(True)
        self.teleop_help.setStyleSheet("color: #444;")
        side.addWidget(self.teleop_help)
        side.addStretch(1)

        # one column of controls on the left (scrolls on a small screen), the previews and the chart beside it
        scroll = QScrollArea()
        scroll.setWidget(side_panel)
        scroll.setWidgetResizable(True)
        scroll.setFrameShape(QFrame.Shape.NoFrame)
        scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        scroll.setMinimumWidth(side_panel.minimumSizeHint().width() + scroll.verticalScrollBar().sizeHint().width() + 4)
        self.center_splitter = QSplitter(Qt.Orientation.Vertical)
        self.center_splitter.addWidget(self.views)
        self.center_splitter.addWidget(self.chart)
        self.center_splitter.setStretchFactor(0, 3)
        self.center_splitter.setStretchFactor(1, 1)
        self.center_splitter.setSizes([460, 260])
        self.splitter = QSplitter(Qt.Orientation.Horizontal)
        self.splitter.addWidget(scroll)
        self.splitter.addWidget(self.center_splitter)
        self.splitter.setStretchFactor(0, 0)
        self.splitter.setStretchFactor(1, 1)
        self.splitter.setSizes([400, 1000])
        remember_splitter(self.ctx, self.splitter, "record.main")  # the person's pane sizes come back next launch
        remember_splitter(self.ctx, self.center_splitter, "record.views")
        layout = QVBoxLayout(self)
        layout.addWidget(rig_box)
        layout.addWidget(self.splitter, 1)

        self.browse_btn.clicked.connect(self._on_browse_clicked)
        self.edit_btn.clicked.connect(self._on_edit_clicked)
        self.connect_btn.clicked.connect(self._on_connect_clicked)
        self.start_btn.clicked.connect(lambda: self._command("start_stop"))
        self.save_btn.clicked.connect(lambda: self._command("save"))
        self.discard_btn.clicked.connect(lambda: self._command("discard"))
        self.rerecord_btn.clicked.connect(lambda: self._command("rerecord"))
        self.success_btn.clicked.connect(lambda: self._label(True))
        self.failure_btn.clicked.connect(lambda: self._label(False))
        self.estop_btn.clicked.connect(self.estop)
        self.task_edit.editingFinished.connect(self._on_task_edited)
        self.rig_combo.currentTextChanged.connect(self._update_hotkey_labels)  # the keys follow the rig chosen

    # ------------------------------------------------------------------ rig
    def _on_browse_clicked(self) -> None:
        name, _ = QFileDialog.getOpenFileName(self, "Open rig", str(self.ctx.home), "Rig files (*.toml)")
        if name:
            self.rig_combo.setCurrentText(name)

    def _on_edit_clicked(self) -> None:
        spec = self.rig_combo.currentText().strip() or "sim"
        try:
            text = RigEditorDialog.text_for(spec)
        except KnownError as err:
            self.ctx.error_posted.emit(str(err))
            return
        path = None if spec.startswith("sim") else Path(spec)
        dlg = RigEditorDialog(text, path, self)
        if dlg.exec() and dlg.path is not None:
            self.rig_combo.setCurrentText(str(dlg.path))

    def _on_connect_clicked(self) -> None:
        if self.rig is None:
            self.connect_rig()
        else:
            self.disconnect_rig()

    def connect_rig(self) -> None:
        """Take the rig's lease and connect it through ``ctx.rigs`` (a worker thread); on success start a session."""
        if self._connecting or self.rig is not None:
            return
        rigs = self.ctx.rigs
        if not rigs.acquire(OWNER):
            msg = rigs.in_use_message(OWNER)
            self.conn_label.setText(f"rig in use by {rigs.holder}")
            self.message_label.setText(msg)
            self.ctx.error_posted.emit(msg)
            return
        spec = self.rig_combo.currentText().strip() or "sim"
        self._connecting = True
        self.conn_label.setText(f"connecting to {spec}…")
        self.connect_btn.setEnabled(False)
        rigs.connect_rig(spec, factory=self.rig_factory)

    def _on_manager_connected(self, rig) -> None:
        if not self._connecting:
            return  # another tab connected it
        self._connecting = False
        self.connect_btn.setEnabled(True)
        self._on_rig_connected(rig)

    def _on_manager_failed(self, msg: str) -> None:
        if self._connecting:
            self._connecting = False
            self.ctx.rigs.release_lease(OWNER)
            self.connect_btn.setEnabled(True)
            self.conn_label.setText("not connected")
            self._clear_live("not connected", f"not connected: {msg}")
            self.ctx.error_posted.emit(msg)
        elif self._disconnecting:
            self.ctx.error_posted.emit(msg)
            self._disconnecting = False
            self._on_disconnected(None)

    def _on_manager_disconnected(self) -> None:
        if self._disconnecting:
            self._disconnecting = False
            self._on_disconnected(None)

    def _on_lease_changed(self, holder: str) -> None:
        if self.rig is not None or self._connecting or self._disconnecting:
            return
        if holder and holder != OWNER:
            self.conn_label.setText(f"rig in use by {holder}")
            self.connect_btn.setEnabled(False)
            self.connect_btn.setToolTip(f"{holder} drives the arm now; stop it there to record")
        else:
            self.conn_label.setText("disconnected")
            self.connect_btn.setEnabled(True)
            self.connect_btn.setToolTip("")

    def _on_rig_connected(self, rig) -> None:
        from recorder.session import make_record_session

        self.rig = rig
        n = self.num_episodes.value()
        self.thread = SessionThread(self)
        try:
            # the same set-up as `vla-studio record` (sim reset before each episode, scripted expert, task)
            self.session = make_record_session(
                self.ctx.store, rig, dataset=self.dataset_edit.text().strip() or "demos",
                # an empty field on a sim rig records the rig's own task; a real rig needs some text
                task=self.task_edit.text().strip() or (None if getattr(rig.robot, "task", None) else "demonstration"),
                episode_time_s=self.episode_time.value(),
                reset_time_s=self.reset_time.value(), auto_advance=self.auto_advance.isChecked(),
                num_episodes=n or None, seed=None, callbacks=self.thread.callbacks(),
            )
            cfg = self.session.cfg
        except KnownError as err:
            self.thread = None
            self.ctx.error_posted.emit(str(err))
            self.disconnect_rig()
            return
        self.thread.set_session(self.session)
        self.session.set_yield(self.ctx.local_training)
        self.thread.ticked.connect(self._on_ticked)
        self.thread.state_changed.connect(self._on_state_changed)
        self.thread.episode_saved.connect(self._on_episode_saved)
        self.thread.fault_raised.connect(self._on_fault_raised)
        self._setup_views(list(rig.cameras), list(rig.robot.joint_names))
        self.thread.start()
        self.conn_label.setText(f"connected: {self.rig_combo.currentText()}")
        self.connect_btn.setText("Disconnect")
        self.dataset_edit.setEnabled(False)
        self.rig_combo.setEnabled(False)
        self.ctx.status_posted.emit(f"rig connected; recording into dataset '{cfg.dataset}'")
        self._update_hotkey_labels()
        self.setFocus()

    def _on_local_training_changed(self, on: bool) -> None:
        """A local fine-tune wants the CPU: the idle rig renders and loops slower (recording is never slowed)."""
        if self.session is not None:
            self.session.set_yield(on)
            if on:
                from recorder.session import IDLE_YIELD_CAMERA_FPS

                self.ctx.status_posted.emit(
                    f"a fine-tune is training on this computer: the idle rig's previews run at "
                    f"{IDLE_YIELD_CAMERA_FPS:g} fps meanwhile (recording runs at the full rate)")

    def disconnect_rig(self, wait: bool = False) -> None:
        """Stop the session (keeping an open episode), give the lease back and disconnect the rig off the
        GUI thread (``wait``: now, at shutdown)."""
        if self.thread is not None:
            self.thread.stop()
            self.thread = None
        self.session = None
        rig, self.rig = self.rig, None
        if rig is None:
            return
        rigs = self.ctx.rigs
        if wait:
            rigs.release_lease(OWNER)
            try:
                rigs.close_rig()
            except Exception as err:  # noqa: BLE001 - shutting down: report, go on
                self.ctx.error_posted.emit(error_text(err))
            self._on_disconnected(None)
            return
        self.connect_btn.setEnabled(False)
        self._disconnecting = True
        rigs.release(OWNER)

    def _on_disconnected(self, _result) -> None:
        self.conn_label.setText("disconnected")
        self._clear_live("disconnected", "disconnected: connect a rig to see its cameras")
        self._update_hotkey_labels()
        self.connect_btn.setText("Connect")
        self.connect_btn.setEnabled(True)
        self.dataset_edit.setEnabled(True)
        self.rig_combo.setEnabled(True)
        self._set_phase_ui("disconnected")
        self._on_lease_changed(self.ctx.rigs.holder)

    def _clear_live(self, view_text: str, message: str) -> None:
        """Nothing of the last session stays on screen as if it were live: previews (showing ``view_text``),
        counters, timer, label and status go back to their empty state and ``message`` says why."""
        self.views.clear_frames(view_text)
        self._last_index = {}
        self.stats.clear()
        self.chart.clear()
        self.timer_label.setText("00:00.0")
        self.label_label.setText("label: -")
        self.last_status = None
        if self.faults and self.message_label.text() == self.faults[-1]:
            message = f"{message}\nlast fault: {self.faults[-1]}"  # a failure stays readable
        self.message_label.setText(message)

    def _setup_views(self, cameras: list[str], joints: list[str]) -> None:
        self._views = dict(self.views.set_cameras(cameras))
        self._meters = {n: RateMeter() for n in cameras}
        self._last_index = {}
        self.stats.set_cameras(cameras)
        self.chart.set_names(joints)
        self._setup_chart_axes()

    def _setup_chart_axes(self) -> None:
        """A fixed y range (the joint limits) and no x axis: pyqtgraph then does not re-lay out and re-render
        its axes on each redraw (the axes cost most of the GUI thread's time while recording)."""
        plot = self.chart.plot.getPlotItem()
        plot.hideAxis("bottom")
        try:
            low, high = self.rig.robot.joint_limits
            lo, hi = float(min(low)), float(max(high))
        except Exception:  # noqa: BLE001 - a robot without limits: keep auto range
            return
        if lo < hi:
            plot.enableAutoRange(y=False)
            plot.setYRange(lo, hi, padding=0.02)
            # the y axis no longer changes: keep it as a cached pixmap instead of re-playing its text each paint
            plot.getAxis("left").setCacheMode(QGraphicsItem.CacheMode.DeviceCoordinateCache)

    # ------------------------------------------------------------------ session signals
    def _on_ticked(self, info, status) -> None:
        try:
            now = time.monotonic()
            for name, pkt in info.frames.items():
                view = self._views.get(name)
                if view is None:
                    continue
                if self._last_index.get(name) != pkt.index:
                    view.set_frame(pkt.image)
                    self._meters[name].tick(now)
                    self._last_index[name] = pkt.index
            self._ticks_seen += 1
            state = info.observation.get("observation.state")
            if state is not None:
                redraw = now - self._chart_drawn >= 1.0 / CHART_HZ
                self.chart.append(state, redraw=redraw)
                if redraw:
                    self._chart_drawn = now
            if self._ticks_seen % 5 == 0:
                for name in self._views:
                    self.stats.update_camera(name, self._meters[name].rate(), info.stale.get(name, 0),
                                             info.dropped.get(name, 0))
                self.stats.set_late_ticks(info.late_ticks, info.timings.get("tick", 0) * 1000)
            self._show_time(status)
            self.last_status = status
        finally:
            if self.thread is not None:
                self.thread.tick_consumed()

    def _show_time(self, status) -> None:
        phase = status.phase.value
        if phase == "recording":
            t = status.episode_elapsed_s
            text = f"{int(t // 60):02d}:{t % 60:04.1f}"
            if status.remaining_s is not None:
                text += f"  (-{status.remaining_s:.0f} s)"
        elif phase == "reset" and status.remaining_s is not None:
            text = f"reset {status.remaining_s:.1f}"
        else:
            return
        self.timer_label.setText(text)

    def _on_state_changed(self, status) -> None:
        self.last_status = status
        self._set_phase_ui(status.phase.value)
        self.count_label.setText(f"episodes saved: {status.saved}" + (f", discarded: {status.discarded}"
                                                                      if status.discarded else ""))
        self.label_label.setText("label: " + {True: "success", False: "failure", None: "-"}[status.label])
        if status.message:
            message = self._in_force_keys(status.message)
            self.message_label.setText(message)
            self.ctx.status_posted.emit(message)
        with QSignalBlocker(self.task_edit):
            if not self.task_edit.hasFocus():
                self.task_edit.setText(status.task)

    def _on_episode_saved(self, info) -> None:
        self.saved_episodes.append(info)
        self.ctx.store_changed.emit()
        self.disk.refresh()

    def _on_fault_raised(self, msg: str) -> None:
        self.faults.append(msg)
        self.message_label.setText(msg)
        self.ctx.error_posted.emit(msg)

    def _set_phase_ui(self, phase: str) -> None:
        self._phase = phase
        color = PHASE_COLORS.get(phase, "#555")
        self.phase_label.setText(phase.upper())
        self.phase_label.setStyleSheet(
            f"font-size: 18px; font-weight: bold; color: white; padding: 4px; background: {color}")
        connected = phase != "disconnected"
        open_episode = phase in ("recording", "review")
        key = self._keys_in_force()["start_stop"][1]
        self.start_btn.setText(f"{'Stop' if phase == 'recording' else 'Start'} ({key})")
        self.start_btn.setEnabled(connected and phase != "review")
        for b in (self.save_btn, self.discard_btn, self.rerecord_btn):
            b.setEnabled(open_episode)
        for b in (self.success_btn, self.failure_btn):
            b.setEnabled(connected)
        self.estop_btn.setEnabled(connected)
        self.task_edit.setEnabled(phase != "recording")

    # ------------------------------------------------------------------ commands
    @property
    def phase(self) -> str:
        return self._phase

    def _command(self, name: str) -> None:
        if self.session is not None:
            getattr(self.session, name)()

    def _label(self, success: bool) -> None:
        if self.session is not None:
            self.session.set_label(success)

    def estop(self) -> None:
        if self.session is not None:
            self.session.estop()

    def _on_task_edited(self) -> None:
        text = self.task_edit.text().strip()
        if self.session is not None and text and text != self.session.task:
            self.session.set_task(text)
        self.setFocus()

    def _teleop_key(self, event: QKeyEvent, pressed: bool) -> bool:
        return forward_teleop_key(getattr(self.rig, "teleop", None), event, pressed)

    def _keyboard_teleop(self) -> bool:
        """Whether the connected rig is steered by key presses (then letters belong to the teleoperator)."""
        return callable(getattr(getattr(self.rig, "teleop", None), "press", None))

    def _keys_in_force(self) -> dict:
        """The session hotkeys that work now: with the keyboard teleoperator (the sim rig's, before it is even
        connected) letters steer the arm, so the session keys are Enter and Ctrl+letters."""
        if self.rig is not None:
            keyboard = self._keyboard_teleop()
        else:
            keyboard = (self.rig_combo.currentText().strip() or "sim").startswith("sim")
        return HOTKEYS_KEYBOARD_TELEOP if keyboard else HOTKEYS_PLAIN

    def _in_force_keys(self, text: str) -> str:
        """A session message names the terminal's keys ("press Space to record"); say the ones in force here."""
        start = self._keys_in_force()["start_stop"][1]
        return text.replace("press Space", f"press {start}") if start != "Space" else text

    def key_hint(self) -> str:
        """One sentence naming the keys that record with the teleoperator in force (for the first-launch guide)."""
        keys = self._keys_in_force()
        text = (f"{keys['start_stop'][1]} starts and stops an episode, {keys['save'][1]} saves it, "
                f"{keys['discard'][1]} discards it, {keys['success'][1]}/{keys['failure'][1]} label it, "
                "Esc is the emergency stop")
        if keys is HOTKEYS_KEYBOARD_TELEOP:
            text += "; the letters steer the arm (W/S, A/D, R/F move the gripper, O/C open and close it)"
        return text

    def _update_hotkey_labels(self, *_args) -> None:
        self.teleop_help.setText(TELEOP_HELP if self._keyboard_teleop() else "")
        keys = self._keys_in_force()
        for name, btn in (("start_stop", self.start_btn), ("save", self.save_btn), ("discard", self.discard_btn),
                          ("rerecord", self.rerecord_btn), ("success", self.success_btn),
                          ("failure", self.failure_btn)):
            btn.setText(f"{BUTTON_TEXT[name]} ({keys[name][1]})")

    def _hotkey(self, event: QKeyEvent) -> str | None:
        mods = event.modifiers() & ~Qt.KeyboardModifier.KeypadModifier
        keys = HOTKEYS_KEYBOARD_TELEOP if self._keyboard_teleop() else HOTKEYS_PLAIN
        for name, ((key, mod), _label) in keys.items():
            if event.key() == key and mods == mod:
                return name
        return None

    def event(self, event) -> bool:  # noqa: D401 (Qt name)
        # Tab would move the focus into the task field (and letters typed after it would land there):
        # with a keyboard teleoperator it is a teleop key (mode switch) instead.
        if (event.type() in (QEvent.Type.KeyPress, QEvent.Type.KeyRelease)
                and event.key() in (Qt.Key.Key_Tab, Qt.Key.Key_Backtab) and self._keyboard_teleop()):
            if event.type() == QEvent.Type.KeyPress:
                self.keyPressEvent(event)
            else:
                self.keyReleaseEvent(event)
            return True
        return super().event(event)

    def keyPressEvent(self, event: QKeyEvent) -> None:  # noqa: N802 (Qt name)
        key = event.key()
        if key == Qt.Key.Key_Escape:
            self.estop()
            return
        name = self._hotkey(event)
        if name is not None:
            if not event.isAutoRepeat():
                self._run_hotkey(name)
            return
        if not event.isAutoRepeat() and self._teleop_key(event, True):
            return
        super().keyPressEvent(event)

    def _run_hotkey(self, name: str) -> None:
        if name == "success":
            self._label(True)
        elif name == "failure":
            self._label(False)
        else:
            self._command(name)

    def keyReleaseEvent(self, event: QKeyEvent) -> None:  # noqa: N802 (Qt name)
        if self._hotkey(event) is not None:
            return  # the press was a session hotkey: the teleoperator never saw it
        if not event.isAutoRepeat() and self._teleop_key(event, False):
            return
        super().keyReleaseEvent(event)

    def _release_teleop_keys(self) -> None:
        release_all = getattr(getattr(self.rig, "teleop", None), "release_all", None)
        if callable(release_all):
            release_all()

    def focusOutEvent(self, event) -> None:  # noqa: N802 (Qt name)
        self._release_teleop_keys()
        super().focusOutEvent(event)

    def changeEvent(self, event) -> None:  # noqa: N802 (Qt name)
        if event.type() == QEvent.Type.ActivationChange and not self.isActiveWindow():
            self._release_teleop_keys()
        super().changeEvent(event)

    # ------------------------------------------------------------------ app shell hooks
    def confirm_close(self) -> bool:
        return True

    def shutdown(self) -> None:
        self._disk_timer.stop()
        self.disconnect_rig(wait=True)


__all__ = ["RecordTab", "RigEditorDialog", "default_rig_factory"]
