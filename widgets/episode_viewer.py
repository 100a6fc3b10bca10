"""Episode viewer: every camera of an episode on one timeline, with transport controls and joint plots.

The widget gets plain data (:class:`EpisodeViewData`, numpy frames); a controller in ``studio/`` decodes
frames off the GUI thread. The viewer asks for frames with ``frame_requested(tick)`` and shows what
comes back through :meth:`EpisodeViewerWidget.show_frames`. During playback it asks for the tick the
wall clock says (fps x speed), so a slow decoder skips frames instead of falling behind.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
from PyQt6.QtCore import QRectF, QSize, Qt, QTimer, pyqtSignal
from PyQt6.QtGui import QColor, QImage, QPainter
from PyQt6.QtWidgets import (
    QComboBox,
    QGridLayout,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QSizePolicy,
    QSplitter,
    QVBoxLayout,
    QWidget,
)

from widgets.joint_plot import JointPlotWidget
from widgets.later import Later
from widgets.timeline import TimelineSegment, TimelineWidget

SPEEDS = (0.25, 0.5, 1.0, 2.0, 4.0)


def to_qimage(img: np.ndarray) -> QImage:
    """A QImage that owns a copy of an HxWx3 uint8 RGB array."""
    img = np.ascontiguousarray(img)
    h, w = img.shape[:2]
    return QImage(img.data, w, h, 3 * w, QImage.Format.Format_RGB888).copy()


@dataclass
class EpisodeViewData:
    """Everything the viewer shows apart from the frames themselves."""

    num_frames: int
    fps: float
    cameras: list[str]
    series: dict[str, np.ndarray] = field(default_factory=dict)  # "observation.state"/"action" -> (N, D)
    names: list[str] | None = None
    drops: list[int] = field(default_factory=list)  # ticks where any camera dropped its frame
    segments: list[TimelineSegment] = field(default_factory=list)
    title: str = ""


class FrameView(QWidget):
    """Paints the latest frame scaled to fit (aspect kept); the stored frame is never drawn into."""

    def __init__(self, name: str, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.name = name
        self._image: QImage | None = None
        self.tick: int | None = None
        self.setMinimumSize(160, 120)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)

    def set_frame(self, img: np.ndarray, tick: int) -> None:
        self._image = to_qimage(img)
        self.tick = tick
        self.update()

    def clear(self) -> None:
        self._image = None
        self.tick = None
        self.update()

    def image(self) -> QImage | None:
        return self._image

    def sizeHint(self) -> QSize:  # noqa: N802
        return QSize(320, 240)

    def image_rect(self) -> QRectF:
        if self._image is None:
            return QRectF(self.rect())
        iw, ih = self._image.width(), self._image.height()
        scale = min(self.width() / iw, self.height() / ih)
        w, h = iw * scale, ih * scale
        return QRectF((self.width() - w) / 2, (self.height() - h) / 2, w, h)

    def paintEvent(self, _event) -> None:  # noqa: N802
        p = QPainter(self)
        p.fillRect(self.rect(), QColor(20, 20, 20))
        if self._image is not None:
            p.drawImage(self.image_rect(), self._image)
        p.setPen(QColor(255, 255, 255))
        label = self.name if self.tick is None else f"{self.name}  #{self.tick}"
        p.drawText(6, 14, label)
        p.end()


class EpisodeViewerWidget(QWidget):
    """Cameras in a grid, a timeline with markers, transport (play/pause, step, speed) and joint plots.

    Signals:
        frame_requested(int): show this tick (the controller answers with ``show_frames``).
        position_changed(int): the cursor moved (by the user or by playback).
    """

    frame_requested = pyqtSignal(int)
    position_changed = pyqtSignal(int)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.data: EpisodeViewData | None = None
        self.views: dict[str, FrameView] = {}
        self._pos = 0
        self._shown = -1
        self._requested = -1
        self._play_origin: tuple[float, int] | None = None  # (monotonic time, tick) when play started
        self._timer = QTimer(self)
        self._timer.setInterval(15)
        self._timer.timeout.connect(self._on_timer)
        # the joint plots take the episode's series one event-loop pass after the frames and the timeline
        self._plot_timer = Later(self, self._on_plot_timer)  # widgets.later: a pass of its own

        self.camera_area = QWidget()
        self.camera_grid = QGridLayout(self.camera_area)
        self.camera_grid.setContentsMargins(0, 0, 0, 0)
        self.title = QLabel("No episode selected")
        self.play_button = QPushButton("Play")
        self.play_button.setCheckable(True)
        self.play_button.toggled.connect(self._on_play_toggled)
        self.back_button = QPushButton("◀ step")
        self.back_button.clicked.connect(lambda: self.step(-1))
        self.fwd_button = QPushButton("step ▶")
        self.fwd_button.clicked.connect(lambda: self.step(1))
        self.speed_box = QComboBox()
        for s in SPEEDS:
            self.speed_box.addItem(f"{s:g}x", s)
        self.speed_box.setCurrentIndex(SPEEDS.index(1.0))
        self.speed_box.currentIndexChanged.connect(self._on_speed_changed)
        self.position_label = QLabel("0 / 0")
        self.timeline = TimelineWidget()
        self.timeline.seeked.connect(self._on_user_seek)
        self.plots = JointPlotWidget()
        self.plots.seeked.connect(self._on_user_seek)

        transport = QHBoxLayout()
        for w in (self.back_button, self.play_button, self.fwd_button, QLabel("speed"), self.speed_box):
            transport.addWidget(w)
        transport.addWidget(self.position_label)
        transport.addStretch(1)

        top = QWidget()
        top_layout = QVBoxLayout(top)
        top_layout.setContentsMargins(0, 0, 0, 0)
        top_layout.addWidget(self.title)
        top_layout.addWidget(self.camera_area, 1)
        top_layout.addWidget(self.timeline)
        top_layout.addLayout(transport)
        splitter = QSplitter(Qt.Orientation.Vertical)
        splitter.addWidget(top)
        splitter.addWidget(self.plots)
        splitter.setStretchFactor(0, 3)
        splitter.setStretchFactor(1, 2)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(splitter)
        self.splitter = splitter  # the frames above the plots (its owner may remember its sizes)
        self._set_enabled(False)

    # -- data in
    def show_placeholder(self, text: str) -> None:
        """Say what is on its way (an episode opening in the controller's thread) until :meth:`set_episode`."""
        self.pause()
        self.title.setText(text)
        self._set_enabled(False)
        for view in self.views.values():
            view.clear()

    def set_episode(self, data: EpisodeViewData | None) -> None:
        self.pause()
        for view in self.views.values():
            self.camera_grid.removeWidget(view)
            view.deleteLater()
        self.views = {}
        self.data = data
        self._pos, self._shown, self._requested = 0, -1, -1
        if data is None:
            self.title.setText("No episode selected")
            self.timeline.set_length(0)
            self.timeline.set_markers()
            self._plot_timer.start()
            self._set_enabled(False)
            self._update_label()
            return
        cols = 2 if len(data.cameras) > 1 else 1
        for i, cam in enumerate(data.cameras):
            view = FrameView(cam)
            self.views[cam] = view
            self.camera_grid.addWidget(view, i // cols, i % cols)
        self.title.setText(data.title)
        self.timeline.set_length(data.num_frames)
        self.timeline.set_markers(data.drops, data.segments)
        self.timeline.set_value(0)
        self._plot_timer.start()
        self._set_enabled(data.num_frames > 0)
        self._update_label()
        if data.num_frames:
            self.seek(0)

    def _on_plot_timer(self) -> None:
        if self.data is None:
            self.plots.set_data({})
        else:
            self.plots.set_data(self.data.series, self.data.names)
        self.plots.set_cursor(self._pos)

    def show_frames(self, tick: int, frames: dict[str, np.ndarray]) -> None:
        """Show decoded frames of ``tick`` (stale answers for other ticks are still shown: newest wins)."""
        if self.data is None:
            return
        for cam, img in frames.items():
            view = self.views.get(cam)
            if view is not None:
                view.set_frame(img, tick)
        self._shown = tick

    # -- state
    @property
    def position(self) -> int:
        return self._pos

    @property
    def shown_tick(self) -> int:
        return self._shown

    @property
    def is_playing(self) -> bool:
        return self._timer.isActive()

    @property
    def speed(self) -> float:
        return float(self.speed_box.currentData())

    # -- transport
    def seek(self, tick: int) -> None:
        if self.data is None or not self.data.num_frames:
            return
        tick = max(0, min(int(tick), self.data.num_frames - 1))
        self._pos = tick
        self.timeline.set_value(tick)
        self.plots.set_cursor(tick)
        self._update_label()
        self.position_changed.emit(tick)
        if tick != self._requested or tick != self._shown:
            self._requested = tick
            self.frame_requested.emit(tick)

    def step(self, delta: int) -> None:
        self.pause()
        self.seek(self._pos + int(delta))

    def play(self) -> None:
        if self.data is None or not self.data.num_frames:
            return
        if self._pos >= self.data.num_frames - 1:
            self.seek(0)
        self._play_origin = (time.monotonic(), self._pos)
        self._timer.start()
        if not self.play_button.isChecked():
            self.play_button.blockSignals(True)
            self.play_button.setChecked(True)
            self.play_button.blockSignals(False)
        self.play_button.setText("Pause")

    def pause(self) -> None:
        self._timer.stop()
        self._play_origin = None
        if self.play_button.isChecked():
            self.play_button.blockSignals(True)
            self.play_button.setChecked(False)
            self.play_button.blockSignals(False)
        self.play_button.setText("Play")

    def set_speed(self, speed: float) -> None:
        self.speed_box.setCurrentIndex(SPEEDS.index(speed) if speed in SPEEDS else SPEEDS.index(1.0))

    # -- slots
    def _on_play_toggled(self, checked: bool) -> None:
        self.play() if checked else self.pause()

    def _on_speed_changed(self, _index: int) -> None:
        if self.is_playing:
            self._play_origin = (time.monotonic(), self._pos)

    def _on_user_seek(self, tick: int) -> None:
        if self.is_playing:
            self._play_origin = (time.monotonic(), tick)
        self.seek(tick)

    def _on_timer(self) -> None:
        if self.data is None or self._play_origin is None:
            self.pause()
            return
        t0, start = self._play_origin
        target = start + int((time.monotonic() - t0) * self.data.fps * self.speed)
        if target >= self.data.num_frames - 1:
            self.seek(self.data.num_frames - 1)
            self.pause()
            return
        if target != self._pos:
            self.seek(target)

    def _set_enabled(self, on: bool) -> None:
        for w in (self.play_button, self.back_button, self.fwd_button, self.speed_box, self.timeline):
            w.setEnabled(on)

    def _update_label(self) -> None:
        n = self.data.num_frames if self.data else 0
        fps = self.data.fps if self.data else 0
        t = self._pos / fps if fps else 0.0
        self.position_label.setText(f"{self._pos} / {max(0, n - 1)}   {t:6.2f} s")

    def keyPressEvent(self, event) -> None:  # noqa: N802
        key = event.key()
        if key == Qt.Key.Key_Space:
            self.pause() if self.is_playing else self.play()
        elif key == Qt.Key.Key_Left:
            self.step(-1)
        elif key == Qt.Key.Key_Right:
            self.step(1)
        else:
            super().keyPressEvent(event)
