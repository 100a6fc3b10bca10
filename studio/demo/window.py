"""The window of `vla-studio demo`: each stage of the pipeline shown live (sim cameras while the
scripted expert records, the loss curve while the tiny model fine-tunes, the rollout with overlays).
"""

from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PyQt6.QtCore import Qt, pyqtSignal
from PyQt6.QtGui import QFont, QKeySequence, QShortcut
from PyQt6.QtWidgets import (
    QHBoxLayout,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QMainWindow,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from recorder.errors import error_text
from studio.demo.pipeline import STAGES, DemoCallbacks, DemoPipeline
from studio.qt.threads import ThrottledThread
from studio.rollout.overlay import control_rate_meter, overlay_from_live
from widgets.camera_view import CameraView
from widgets.overlays import install_overlays

STAGE_TITLES = {"record": "1. Record scripted demonstrations", "finetune": "2. Fine-tune the tiny model (CPU)",
                "rollout": "3. Roll the tuned policy out"}


class DemoThread(ThrottledThread):
    """Runs the DemoPipeline; callbacks become signals (ticks throttled to two in flight).

    Signals:
        stage_changed(str, str): stage, status line.
        record_ticked(object): TickInfo of the recording.
        train_logged(object): one fine-tune JSON event (dict).
        rollout_ticked(object): RolloutTick.
        completed(object): DemoResult.
        failed(str): a one-line error.
    """

    stage_changed = pyqtSignal(str, str)
    record_ticked = pyqtSignal(object)
    train_logged = pyqtSignal(object)
    rollout_ticked = pyqtSignal(object)
    completed = pyqtSignal(object)
    failed = pyqtSignal(str)

    def __init__(self, cfg, parent=None) -> None:
        super().__init__(parent)
        self.pipeline = DemoPipeline(cfg, DemoCallbacks(
            on_stage=self.stage_changed.emit, on_record_tick=lambda i: self.emit_tick(self.record_ticked, i),
            on_train_event=self.train_logged.emit, on_rollout_tick=lambda rt: self.emit_tick(self.rollout_ticked, rt)))

    def run(self) -> None:
        try:
            self.completed.emit(self.pipeline.run())
        except BaseException as err:  # noqa: BLE001 - never take the app down
            self.failed.emit(error_text(err))


class DemoWindow(QMainWindow):
    """Shows the demo pipeline stage by stage."""

    def __init__(self, cfg, parent=None) -> None:
        super().__init__(parent)
        self.cfg = cfg
        self.setWindowTitle("vla-studio demo — record, fine-tune, roll out (no hardware)")
        self.resize(1200, 720)
        central = QWidget()
        self.setCentralWidget(central)
        lay = QHBoxLayout(central)
        left = QVBoxLayout()
        lay.addLayout(left, 1)
        self.stage_list = QListWidget()
        self.stage_items = {}
        for s in STAGES:
            it = QListWidgetItem(f"○ {STAGE_TITLES[s]}")
            self.stage_list.addItem(it)
            self.stage_items[s] = it
        self.stage_list.setMaximumHeight(90)
        left.addWidget(self.stage_list)
        self.status = QLabel("starting …")
        self.status.setWordWrap(True)
        left.addWidget(self.status)
        self.loss_plot = pg.PlotWidget(title="fine-tune loss")
        self.loss_plot.setBackground("w")
        self.loss_plot.setLabel("bottom", "step")
        self.loss_curve = self.loss_plot.plot([], [], pen=pg.mkPen((30, 120, 255), width=2))
        self._losses: list[tuple[float, float]] = []
        left.addWidget(self.loss_plot, 1)
        self.result_label = QLabel("")
        f = QFont(self.result_label.font())
        f.setBold(True)
        self.result_label.setFont(f)
        left.addWidget(self.result_label)
        self.estop_button = QPushButton("E-STOP  (Esc)")
        self.estop_button.setMinimumHeight(56)
        self.estop_button.setStyleSheet("QPushButton { background: #c00000; color: white; font-weight: bold; }")
        self.estop_button.clicked.connect(self.emergency_stop)
        left.addWidget(self.estop_button)
        QShortcut(QKeySequence(Qt.Key.Key_Escape), self).activated.connect(self.emergency_stop)

        right = QVBoxLayout()
        lay.addLayout(right, 2)
        self.views: dict[str, CameraView] = {}
        self._overlay: dict[str, object] = {}
        for cam in ("front", "wrist"):
            v = CameraView(cam)
            install_overlays(v, lambda c=cam: self._overlay.get(c))
            self.views[cam] = v
            right.addWidget(v, 1)
        self._rate = control_rate_meter()
        self._low = np.array([-180.0] * 5 + [0.0])
        self._high = np.array([180.0] * 5 + [100.0])
        self.current_stage = None
        self.result = None
        self.error: str | None = None
        self.rollout_ticks_shown = 0
        self.thread = DemoThread(cfg, self)
        self.thread.stage_changed.connect(self._on_stage_changed)
        self.thread.record_ticked.connect(self._on_record_ticked)
        self.thread.train_logged.connect(self._on_train_logged)
        self.thread.rollout_ticked.connect(self._on_rollout_ticked)
        self.thread.completed.connect(self._on_completed)
        self.thread.failed.connect(self._on_failed)

    def start(self) -> None:
        self.thread.start()

    def emergency_stop(self) -> None:
        self.thread.pipeline.estop.set()
        self.thread.pipeline.cancel()
        self.status.setText("E-STOP: the arm holds where it is; the demo stops")

    def _mark(self, stage: str, symbol: str) -> None:
        self.stage_items[stage].setText(f"{symbol} {STAGE_TITLES[stage]}")

    def _on_stage_changed(self, stage: str, text: str) -> None:
        if stage != self.current_stage:
            if self.current_stage is not None:
                self._mark(self.current_stage, "✓")
            self.current_stage = stage
            self._mark(stage, "▶")
            self._overlay.clear()
            self._rate.reset()
        self.status.setText(text)

    def _show_frames(self, frames) -> None:
        for cam, view in self.views.items():
            pkt = frames.get(cam)
            if pkt is not None:
                view.set_frame(pkt.image)

    def _on_record_ticked(self, info) -> None:
        try:
            self._show_frames(info.frames)
        finally:
            self.thread.tick_consumed()

    def _on_train_logged(self, ev) -> None:
        if ev.get("event") == "train" and ev.get("loss") is not None:
            self._losses.append((float(ev["step"]), float(ev["loss"])))
            xs, ys = zip(*self._losses, strict=True)
            self.loss_curve.setData(list(xs), list(ys))

    def _on_rollout_ticked(self, rt) -> None:
        try:
            rate = self._rate.add(rt.info.t)
            for cam in self.views:
                self._overlay[cam] = overlay_from_live(rt, cam, low=self._low, high=self._high,
                                                       names=["pan", "lift", "elbow", "wrist", "roll", "grip"],
                                                       rate_hz=rate, target_hz=self.cfg.fps)
            self._show_frames(rt.info.frames)
            self.rollout_ticks_shown += 1
        finally:
            self.thread.tick_consumed()

    def _on_completed(self, result) -> None:
        self.result = result
        if self.current_stage is not None:
            self._mark(self.current_stage, "✓")
        ro = result.rollout
        if ro is not None:
            self.result_label.setText(f"{sum(bool(s) for s in ro.successes)}/{len(ro.successes)} rollouts succeeded; "
                                      f"final fine-tune loss {result.final_loss}")

    def _on_failed(self, text: str) -> None:
        self.error = text
        if self.current_stage is not None:
            self._mark(self.current_stage, "✗")
        self.status.setText(f"failed: {text}")

    def closeEvent(self, event) -> None:  # noqa: N802 (Qt name)
        if self.thread.isRunning():
            self.thread.pipeline.estop.set()
            self.thread.pipeline.cancel()
            self.thread.wait(30000)
        super().closeEvent(event)
