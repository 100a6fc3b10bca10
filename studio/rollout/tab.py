"""The Rollout tab: run a tuned policy on the rig with overlays (Live), review rollouts (Review).

The policy is loaded and run on a ``RolloutThread``; the GUI thread only shows frames and overlays
and sets the control events (stop, E-STOP, takeover). The rig is connected through the window's one
``RigManager`` (``ctx.rigs``) under its lease: while the Record tab holds the rig, Start is refused.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PyQt6.QtCore import Qt
from PyQt6.QtGui import QFont, QKeySequence, QShortcut
from PyQt6.QtWidgets import (
    QButtonGroup,
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFileDialog,
    QFormLayout,
    QFrame,
    QGridLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QRadioButton,
    QScrollArea,
    QSizePolicy,
    QSpinBox,
    QSplitter,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from finetune.checkpoint_ref import CheckpointRef, runs_root
from recorder.errors import KnownError
from recorder.safety import RULES as SAFETY_RULES
from studio.context import remember_splitter
from studio.qt.teleop_keys import forward_teleop_key
from studio.rollout.calibration import load_calibrations
from studio.rollout.overlay import control_rate_meter, overlay_from_live, path_start_projector
from studio.rollout.review import JOINTS, RolloutReviewWidget
from studio.rollout.threads import EvaluationThread, PolicySpec, RolloutThread
from widgets.action_bars import ActionBarsWidget
from widgets.camera_grid import CameraGridWidget
from widgets.camera_view import CameraView
from widgets.overlays import OVERLAY_TIPS, OVERLAYS, install_overlays
from widgets.status_widgets import COUNTER_TIPS

OWNER = "Rollout"

OVERLAY_LABELS = {"path": "future path", "gripper": "gripper", "bars": "action bars", "timing": "latency / rate",
                  "confidence": "confidence", "safety": "safety"}


class RolloutTab(QWidget):
    """Live rollouts with overlays, and their review.

    Signals: none of its own; it posts status and errors through the AppContext and emits
    ``ctx.store_changed`` after each stored rollout.
    """

    def __init__(self, ctx, parent=None) -> None:
        super().__init__(parent)
        self.ctx = ctx
        self.rig_spec = ctx.rig
        self.thread: RolloutThread | None = None
        self.eval_thread: EvaluationThread | None = None
        self.policy_object = None  # a ready policy to use instead of loading one (the demo, tests)
        self._rig = None  # the connected rig of the running batch (its keyboard teleoperator gets keys)
        self.views: dict[str, CameraView] = {}
        self._overlay: dict[str, object] = {}
        self._rate = control_rate_meter()
        self._low = np.array([-180.0] * 5 + [0.0])
        self._high = np.array([180.0] * 5 + [100.0])
        self._names = list(JOINTS)
        self._calibrations: dict = {}  # of the running batch (the path overlay's start point uses them too)
        self._path_start = None  # observation -> {camera: (u, v)} of the gripper now
        self.successes = 0
        self.per_task: dict[str, list[int]] = {}  # task -> [successes, episodes] of this batch
        self.episodes_done = 0
        self.ticks_shown = 0

        outer = QVBoxLayout(self)
        self.inner_tabs = QTabWidget()
        outer.addWidget(self.inner_tabs)
        live = QWidget()
        self.inner_tabs.addTab(live, "Live")
        self.review = RolloutReviewWidget(ctx)
        self.inner_tabs.addTab(self.review, "Review")
        self.review.evaluation_requested.connect(self._on_evaluation_requested)
        self.inner_tabs.currentChanged.connect(self._on_inner_tab_changed)

        lay = QHBoxLayout(live)
        panel = QWidget()
        pl = QVBoxLayout(panel)
        pl.setContentsMargins(0, 0, 4, 0)
        scroll = QScrollArea()  # the controls scroll on a small screen instead of growing the window
        scroll.setWidget(panel)
        scroll.setWidgetResizable(True)
        scroll.setFrameShape(QFrame.Shape.NoFrame)
        scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        lay.addWidget(scroll)

        # --- policy
        pol = QGroupBox("Policy")
        pf = QFormLayout(pol)
        self.local_radio = QRadioButton("local checkpoint")
        self.remote_radio = QRadioButton("policy server")
        self.local_radio.setChecked(True)
        grp = QButtonGroup(self)
        grp.addButton(self.local_radio)
        grp.addButton(self.remote_radio)
        pf.addRow(self.local_radio)
        ck_row = QHBoxLayout()
        self.checkpoint_combo = QComboBox()
        self.checkpoint_combo.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
        self.checkpoint_combo.setMinimumContentsLength(18)
        browse = QPushButton("…")
        browse.setToolTip("pick a checkpoint folder")
        browse.clicked.connect(self._on_browse_clicked)
        ck_row.addWidget(self.checkpoint_combo, 1)
        ck_row.addWidget(browse)
        pf.addRow("checkpoint", ck_row)
        pf.addRow(self.remote_radio)
        self.url_edit = QLineEdit()
        self.url_edit.setPlaceholderText("ws://gpu-host:8765")
        self.token_edit = QLineEdit()
        self.token_edit.setEchoMode(QLineEdit.EchoMode.Password)
        pf.addRow("URL", self.url_edit)
        pf.addRow("token", self.token_edit)
        pl.addWidget(pol)

        # --- run settings
        run = QGroupBox("Run")
        rf = QFormLayout(run)
        self.task_edit = QLineEdit()
        self.task_edit.setPlaceholderText("instruction (default: the sim task's)")
        self.episodes_spin = QSpinBox()
        self.episodes_spin.setRange(1, 1000)
        self.episodes_spin.setValue(5)
        self.fps_spin = QDoubleSpinBox()
        self.fps_spin.setRange(1, 200)
        self.fps_spin.setValue(30)
        self.max_s_spin = QDoubleSpinBox()
        self.max_s_spin.setRange(0.5, 600)
        self.max_s_spin.setValue(20)
        self.mode_combo = QComboBox()
        self.mode_combo.addItems(["execute n of K", "temporal ensembling"])
        self.execute_spin = QSpinBox()
        self.execute_spin.setRange(0, 256)
        self.execute_spin.setSpecialValueText("all K")
        self.async_check = QCheckBox("inference off the loop thread")
        self.async_check.setChecked(True)
        self.max_delta_spin = QDoubleSpinBox()
        self.max_delta_spin.setRange(0.1, 180)
        self.max_delta_spin.setValue(10)
        self.max_delta_spin.setSuffix(" °/tick")
        self.max_delta_spin.setToolTip(COUNTER_TIPS["max_delta"])
        rf.addRow("task", self.task_edit)
        rf.addRow("episodes", self.episodes_spin)
        rf.addRow("control rate (Hz)", self.fps_spin)
        rf.addRow("max episode (s)", self.max_s_spin)
        rf.addRow("chunks", self.mode_combo)
        rf.addRow("execute n", self.execute_spin)
        rf.addRow(self.async_check)
        rf.addRow("max joint step", self.max_delta_spin)
        calib_row = QHBoxLayout()
        self.calib_edit = QLineEdit()
        self.calib_edit.setPlaceholderText("real cameras: calibration .json/.toml (sim: none)")
        self.calib_edit.setToolTip("{camera: {intrinsics: 3x3, world_to_camera: 4x4}}: draws the predicted "
                                   "path on real cameras")
        calib_browse = QPushButton("…")
        calib_browse.setToolTip("pick a camera calibration file")
        calib_browse.clicked.connect(self._on_calib_browse_clicked)
        calib_row.addWidget(self.calib_edit, 1)
        calib_row.addWidget(calib_browse)
        rf.addRow("calibration", calib_row)
        self.calib_error = QLabel("")
        self.calib_error.setStyleSheet("color: #c00")
        self.calib_error.setWordWrap(True)
        self.calib_error.setVisible(False)
        rf.addRow(self.calib_error)
        self.calib_edit.editingFinished.connect(self._on_calib_edited)
        pl.addWidget(run)

        # --- controls
        buttons = QHBoxLayout()
        self.start_button = QPushButton("Start")
        self.start_button.clicked.connect(self.start_rollout)
        self.stop_button = QPushButton("Stop")
        self.stop_button.setEnabled(False)
        self.stop_button.clicked.connect(self._on_stop_clicked)
        buttons.addWidget(self.start_button)
        buttons.addWidget(self.stop_button)
        pl.addLayout(buttons)
        self.rig_label = QLabel("")
        self.rig_label.setWordWrap(True)
        self.rig_label.setStyleSheet("color: #b60; font-weight: bold")
        pl.addWidget(self.rig_label)
        self.takeover_button = QPushButton("Take over (teleoperator drives)")
        self.takeover_button.setCheckable(True)
        self.takeover_button.toggled.connect(self._on_takeover_toggled)
        pl.addWidget(self.takeover_button)
        self.estop_button = QPushButton("E-STOP  (Esc)")
        self.estop_button.setMinimumHeight(70)
        self.estop_button.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)
        f = QFont(self.estop_button.font())
        f.setPointSize(max(14, f.pointSize() + 6))
        f.setBold(True)
        self.estop_button.setFont(f)
        self.estop_button.setStyleSheet("QPushButton { background: #c00000; color: white; border-radius: 6px; }"
                                        "QPushButton:pressed { background: #800000; }")
        self.estop_button.clicked.connect(self.emergency_stop)
        pl.addWidget(self.estop_button)
        self._esc = QShortcut(QKeySequence(Qt.Key.Key_Escape), self)
        self._esc.setContext(Qt.ShortcutContext.WidgetWithChildrenShortcut)
        self._esc.activated.connect(self.emergency_stop)

        # --- overlays
        ov = QGroupBox("Overlays")
        og = QGridLayout(ov)
        self.overlay_checks: dict[str, QCheckBox] = {}
        for i, name in enumerate(OVERLAYS):
            cb = QCheckBox(OVERLAY_LABELS[name])
            cb.setChecked(True)
            cb.toggled.connect(lambda on, n=name: self.set_overlay_enabled(n, on))
            og.addWidget(cb, i // 2, i % 2)
            self.overlay_checks[name] = cb
        pl.addWidget(ov)
        self.success_label = QLabel("successes 0/0")
        f2 = QFont(self.success_label.font())
        f2.setBold(True)
        self.success_label.setFont(f2)
        self.status_label = QLabel("idle")
        self.status_label.setWordWrap(True)
        self.safety_label = QLabel("")
        self.safety_label.setWordWrap(True)
        self.success_label.setToolTip("rollout episodes the task detector judged a success, of those stored so far")
        self.status_label.setToolTip(COUNTER_TIPS["held"])
        self.safety_label.setToolTip("\n".join(f"{k}: {v}" for k, v in COUNTER_TIPS.items() if k in SAFETY_RULES))
        pl.addWidget(self.success_label)
        pl.addWidget(self.status_label)
        pl.addWidget(self.safety_label)
        pl.addStretch(1)

        # the controls fit beside their scroll bar; the cameras get the rest
        scroll.setFixedWidth(min(460, panel.sizeHint().width() + scroll.verticalScrollBar().sizeHint().width() + 4))

        # --- views
        self.views_grid = CameraGridWidget()  # the cameras as large as the space allows
        self.views_grid.set_placeholder(
            "Pick a checkpoint (fine-tune one in the Fine-tune tab) or a policy server, then press Start:\n"
            "the policy drives the rig and its cameras show here with the predicted path and the overlays.")
        self.views_grid.setToolTip(OVERLAY_TIPS)
        self.bars = ActionBarsWidget(self._names, self._low, self._high)
        bars_box = QWidget()
        bl = QVBoxLayout(bars_box)
        bl.setContentsMargins(0, 0, 0, 0)
        bl.addWidget(QLabel("predicted (blue) vs executed (orange) per joint"))
        bl.addWidget(self.bars, 1)
        self.splitter = QSplitter(Qt.Orientation.Vertical)  # cameras above the action bars, sizes remembered
        self.splitter.addWidget(self.views_grid)
        self.splitter.addWidget(bars_box)
        self.splitter.setStretchFactor(0, 1)
        self.splitter.setStretchFactor(1, 0)
        self.splitter.setSizes([560, 150])
        remember_splitter(ctx, self.splitter, "rollout.live")
        lay.addWidget(self.splitter, 1)

        ctx.rigs.lease_changed.connect(self._on_lease_changed)
        self._on_lease_changed(ctx.rigs.holder)
        ctx.checkpoint_opened.connect(self._on_checkpoint_opened)
        ctx.store_changed.connect(self.refresh_checkpoints)
        self.refresh_checkpoints()

    # ------------------------------------------------------------------ checkpoints
    def refresh_checkpoints(self) -> None:
        try:
            store = self.ctx.store
            items = []
            for run in store.runs():
                for ck in store.checkpoints(run.run_id):
                    items.append((CheckpointRef(Path(ck.path), run.run_id, int(ck.step)).display, str(ck.path)))
        except Exception as err:  # noqa: BLE001 - a broken store is reported, the tab stays usable
            self.ctx.status_posted.emit(f"rollout: cannot list checkpoints ({err})")
            return
        current = self.checkpoint_combo.currentData()
        self.checkpoint_combo.blockSignals(True)
        self.checkpoint_combo.clear()
        for label, path in reversed(items):
            self.checkpoint_combo.addItem(label, path)
        if current:
            self.select_checkpoint(current)
        self.checkpoint_combo.blockSignals(False)

    def select_checkpoint(self, path: str) -> None:
        i = self.checkpoint_combo.findData(str(path))
        if i < 0:
            self.checkpoint_combo.addItem(CheckpointRef.from_path(path).display, str(path))
            i = self.checkpoint_combo.count() - 1
        self.checkpoint_combo.setCurrentIndex(i)
        self.local_radio.setChecked(True)

    def _on_checkpoint_opened(self, path: str) -> None:
        self.select_checkpoint(path)
        self.inner_tabs.setCurrentIndex(0)

    def _on_browse_clicked(self) -> None:
        path = QFileDialog.getExistingDirectory(self, "Checkpoint folder", str(runs_root(self.ctx.home)))
        if path:
            self.select_checkpoint(path)

    def policy_spec(self) -> PolicySpec:
        if self.remote_radio.isChecked():
            return PolicySpec(url=self.url_edit.text().strip() or None, token=self.token_edit.text() or None)
        return PolicySpec(checkpoint=self.checkpoint_combo.currentData())

    # ------------------------------------------------------------------ calibration
    def _on_calib_browse_clicked(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Camera calibration", str(self.ctx.home),
                                              "Calibration (*.json *.toml)")
        if path:
            self.calib_edit.setText(path)
            self._on_calib_edited()

    def _on_calib_edited(self) -> None:
        try:
            calibs = self.calibrations()
        except KnownError:
            return
        self.status_label.setText(f"calibration: {', '.join(calibs)}" if calibs else "no calibration")

    def calibrations(self) -> dict:
        """camera -> PinholeCalibration from the calibration field; a bad file is shown under the field and
        raised (KnownError)."""
        try:
            calibs = load_calibrations(self.calib_edit.text())
        except KnownError as err:
            self.calib_error.setText(str(err))
            self.calib_error.setVisible(True)
            raise
        self.calib_error.setText("")
        self.calib_error.setVisible(False)
        return calibs

    # ------------------------------------------------------------------ the rig's lease
    def _on_lease_changed(self, holder: str) -> None:
        if holder and holder != OWNER:
            self.rig_label.setText(f"rig in use by {holder}: disconnect it there to roll out")
            self.start_button.setEnabled(False)
            self.start_button.setToolTip(f"{holder} drives the arm now")
        else:
            self.rig_label.setText("")
            self.start_button.setEnabled(not self.running)
            self.start_button.setToolTip("")

    # ------------------------------------------------------------------ running
    def rollout_config(self, calibrations: dict | None = None):
        from recorder.rollout import ChunkConfig, RolloutConfig

        ensemble = self.mode_combo.currentIndex() == 1
        return RolloutConfig(instruction=self.task_edit.text().strip(), episodes=self.episodes_spin.value(),
                             fps=self.fps_spin.value(), max_seconds=self.max_s_spin.value(),
                             chunk=ChunkConfig(execute=self.execute_spin.value() or None, ensemble=ensemble,
                                               asynchronous=self.async_check.isChecked()),
                             calibrations=calibrations or {})

    @property
    def running(self) -> bool:
        return self.thread is not None and self.thread.isRunning()

    def start_rollout(self) -> None:
        if self.running:
            return
        spec = self.policy_spec()
        if self.policy_object is None and not spec.url and not spec.checkpoint:
            self.ctx.error_posted.emit("rollout: pick a checkpoint (fine-tune one first) or a policy server URL")
            return
        try:
            calibs = self.calibrations()
        except KnownError as err:
            self.status_label.setText(f"failed: {err}")
            self.ctx.error_posted.emit(str(err))
            return
        rigs = self.ctx.rigs
        if not rigs.acquire(OWNER):
            msg = rigs.in_use_message(OWNER)
            self.status_label.setText(msg)
            self.rig_label.setText(f"rig in use by {rigs.holder}: disconnect it there to roll out")
            self.ctx.error_posted.emit(msg)
            return
        self.successes = self.episodes_done = 0
        self.per_task = {}
        self._calibrations = calibs
        self._update_success_label()
        self._rate.reset()
        th = RolloutThread(store=self.ctx.store, rig_spec=self.rig_spec, policy=spec,
                           config=self.rollout_config(calibs), home=self.ctx.home, max_delta=self.max_delta_spin.value(),
                           policy_object=self.policy_object, rigs=rigs, parent=self)
        th.status_posted.connect(self._on_status_posted)
        th.rig_ready.connect(self._on_rig_ready)
        th.ticked.connect(self._on_ticked)
        th.episode_saved.connect(self._on_episode_saved)
        th.finished_batch.connect(self._on_batch_finished)
        th.failed.connect(self._on_failed)
        th.finished.connect(self._on_thread_finished)
        self.thread = th
        self.start_button.setEnabled(False)
        self.stop_button.setEnabled(True)
        self.takeover_button.setChecked(False)
        th.start()

    def emergency_stop(self) -> None:
        """E-STOP: the arm holds where it is within one tick and the batch ends."""
        if self.thread is not None:
            self.thread.emergency_stop()
        self.status_label.setText("E-STOP pressed: the arm holds where it is")
        self.ctx.status_posted.emit("rollout: E-STOP")

    def _on_stop_clicked(self) -> None:
        if self.thread is not None:
            self.thread.request_stop()
        self.status_label.setText("stopping after this tick …")

    def _on_takeover_toggled(self, on: bool) -> None:
        if not on:
            release = getattr(getattr(self._rig, "teleop", None), "release_all", None)
            if release is not None:
                release()
        if self.thread is not None:
            (self.thread.takeover.set if on else self.thread.takeover.clear)()
        self.takeover_button.setText("Give back to the policy" if on else "Take over (teleoperator drives)")

    def _teleop_key(self, event, pressed: bool) -> bool:
        """While taken over, keys drive the rig's keyboard teleoperator (arrows, PageUp/Down, letters)."""
        if not self.takeover_button.isChecked() or event.isAutoRepeat():
            return False
        return forward_teleop_key(getattr(self._rig, "teleop", None), event, pressed)

    def keyPressEvent(self, event) -> None:  # noqa: N802 (Qt name)
        if event.key() == Qt.Key.Key_Escape:
            self.emergency_stop()
            event.accept()
            return
        if self._teleop_key(event, True):
            return
        super().keyPressEvent(event)

    def keyReleaseEvent(self, event) -> None:  # noqa: N802 (Qt name)
        if self._teleop_key(event, False):
            return
        super().keyReleaseEvent(event)

    def set_overlay_enabled(self, name: str, on: bool) -> None:
        for v in self.views.values():
            v.set_overlay_enabled(name, on)

    # ------------------------------------------------------------------ thread signals
    def _on_status_posted(self, text: str) -> None:
        self.status_label.setText(text)
        self.ctx.status_posted.emit(text)

    def _on_rig_ready(self, rig) -> None:
        self._rig = rig
        low, high = rig.robot.joint_limits
        self._low, self._high = np.asarray(low, float), np.asarray(high, float)
        self._names = list(rig.robot.joint_names)
        self.bars.names = self._names
        self.bars.set_limits(self._low, self._high)
        has_teleop = getattr(rig, "teleop", None) is not None
        self.takeover_button.setEnabled(has_teleop)
        self.takeover_button.setToolTip("" if has_teleop else "this rig has no teleoperator to take over with")
        names = list(rig.cameras)
        if sorted(names) != sorted(self.views):
            self.views = dict(self.views_grid.set_cameras(names))
            for cam, view in self.views.items():
                install_overlays(view, lambda c=cam: self._overlay.get(c),
                                 {n: cb.isChecked() for n, cb in self.overlay_checks.items()})
                view.setToolTip(OVERLAY_TIPS)
        self._path_start = path_start_projector(rig, self._calibrations)

    def _on_ticked(self, rt) -> None:
        try:
            info = rt.info
            rate = self._rate.add(info.t)
            start = self._path_start(info.observation) if self._path_start is not None else None
            for cam, view in self.views.items():
                pkt = info.frames.get(cam)
                self._overlay[cam] = overlay_from_live(rt, cam, low=self._low, high=self._high, names=self._names,
                                                       rate_hz=rate, target_hz=self.fps_spin.value(),
                                                       start_px=start)
                if pkt is not None:
                    view.set_frame(pkt.image)
            pol = rt.policy
            self.bars.set_values(None if pol is None else pol.action, info.action)
            counts = {k: v for k, v in rt.safety_counts.items() if v}
            self.safety_label.setText("safety: " + (", ".join(f"{k} {v}" for k, v in counts.items())
                                                    if counts else "no interventions"))
            self.ticks_shown += 1
        finally:
            if self.thread is not None:
                self.thread.tick_consumed()

    def _on_episode_saved(self, info) -> None:
        self.episodes_done += 1
        self.successes += int(bool(info.success))
        counts = self.per_task.setdefault(info.task or "", [0, 0])
        counts[0] += int(bool(info.success))
        counts[1] += 1
        self._update_success_label()
        self.ctx.store_changed.emit()

    def _update_success_label(self) -> None:
        text = f"successes {self.successes}/{self.episodes_done}"
        per_task = self.per_task
        if len(per_task) > 1:  # a multi-task rig (Meta-World): one line per task
            text += "".join(f"\n{k}/{n}  {task}" for task, (k, n) in per_task.items())
        self.success_label.setText(text)

    def _on_batch_finished(self, result) -> None:
        text = (f"done: {sum(bool(s) for s in result.successes)}/{len(result.successes)} successes, "
                f"{result.held_ticks} held ticks" + (" — E-STOPPED" if result.estopped else ""))
        self.status_label.setText(text)
        self.ctx.status_posted.emit(f"rollout {text}")

    def _on_failed(self, text: str) -> None:
        self.status_label.setText(f"failed: {text}")
        # nothing stale stays on screen as if it were live
        self._overlay = {}
        self.views_grid.clear_frames("failed: see the message on the left")
        self.bars.set_values(None, None)
        self.safety_label.setText("")
        self.ctx.error_posted.emit(text)

    def _on_thread_finished(self) -> None:
        self._rig = None
        self._path_start = None
        self.takeover_button.setEnabled(True)
        self.start_button.setEnabled(True)
        self.stop_button.setEnabled(False)
        self.takeover_button.setChecked(False)
        self.ctx.rigs.release_lease(OWNER)

    # ------------------------------------------------------------------ review
    def _on_inner_tab_changed(self, index: int) -> None:
        if index == 1:
            try:
                self.review.refresh()
            except Exception as err:  # noqa: BLE001
                self.ctx.error_posted.emit(f"rollout review: {err}")

    def _on_evaluation_requested(self, dataset: str, max_episodes: int) -> None:
        if self.eval_thread is not None and self.eval_thread.isRunning():
            return
        spec = self.policy_spec()
        if self.policy_object is None and not spec.url and not spec.checkpoint:
            self.review.on_eval_failed("no policy")
            self.ctx.error_posted.emit("open-loop evaluation: pick a checkpoint in the Live tab first")
            return
        th = EvaluationThread(store=self.ctx.store, policy=spec, dataset=dataset, home=self.ctx.home,
                              max_episodes=max_episodes, policy_object=self.policy_object, parent=self)
        th.progressed.connect(self.review.on_eval_progress)
        th.evaluated.connect(self.review.show_evaluation)
        th.failed.connect(self.review.on_eval_failed)
        th.failed.connect(self.ctx.error_posted.emit)
        self.eval_thread = th
        th.start()

    # ------------------------------------------------------------------ shutdown
    def shutdown(self) -> None:
        if self.thread is not None and self.thread.isRunning():
            self.thread.emergency_stop()
            self.thread.wait(10000)
        self.ctx.rigs.release_lease(OWNER)
        if self.eval_thread is not None and self.eval_thread.isRunning():
            self.eval_thread.stop_event.set()
            self.eval_thread.wait(30000)
        self.review.shutdown()
