"""A frame timeline: a cursor over ticks 0..N-1 with dropped-frame ticks and labelled segments drawn on it."""

from __future__ import annotations

from dataclasses import dataclass

from PyQt6.QtCore import QRectF, QSize, Qt, pyqtSignal
from PyQt6.QtGui import QColor, QPainter, QPen
from PyQt6.QtWidgets import QSizePolicy, QWidget

SEGMENT_COLORS = {
    "takeover": QColor(255, 160, 0, 140),
    "recovered": QColor(80, 160, 255, 140),
    "estop": QColor(220, 40, 40, 160),
}
DEFAULT_SEGMENT_COLOR = QColor(160, 120, 220, 140)
DROP_COLOR = QColor(230, 30, 30)


@dataclass
class TimelineSegment:
    kind: str
    start: int
    end: int  # inclusive


class TimelineWidget(QWidget):
    """Click or drag to seek; Left/Right step one tick, Home/End jump.

    Signals:
        seeked(int): the user moved the cursor to this tick.
    """

    seeked = pyqtSignal(int)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._n = 0
        self._value = 0
        self._drops: list[int] = []
        self._segments: list[TimelineSegment] = []
        self.setMinimumHeight(36)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)
        self.setFocusPolicy(Qt.FocusPolicy.StrongFocus)
        self.setToolTip("Timeline: red ticks = dropped frames; coloured bands = segments (takeover, recovered, ...)")

    # -- data
    def set_length(self, n: int) -> None:
        self._n = max(0, int(n))
        self._value = min(self._value, max(0, self._n - 1))
        self.update()

    def set_markers(self, drops: list[int] | None = None, segments: list[TimelineSegment] | None = None) -> None:
        self._drops = sorted(int(d) for d in (drops or []))
        self._segments = list(segments or [])
        self.update()

    @property
    def length(self) -> int:
        return self._n

    @property
    def drops(self) -> list[int]:
        return list(self._drops)

    @property
    def segments(self) -> list[TimelineSegment]:
        return list(self._segments)

    def value(self) -> int:
        return self._value

    def set_value(self, v: int) -> None:
        """Move the cursor without emitting ``seeked`` (the controller drives it during playback)."""
        v = max(0, min(int(v), max(0, self._n - 1)))
        if v != self._value:
            self._value = v
            self.update()

    # -- geometry
    def _track(self) -> QRectF:
        return QRectF(6, 6, max(1, self.width() - 12), max(1, self.height() - 12))

    def x_for(self, tick: int) -> float:
        r = self._track()
        if self._n <= 1:
            return r.left()
        return r.left() + r.width() * tick / (self._n - 1)

    def tick_at(self, x: float) -> int:
        r = self._track()
        if self._n <= 1:
            return 0
        frac = (x - r.left()) / r.width()
        return max(0, min(self._n - 1, int(round(frac * (self._n - 1)))))

    def sizeHint(self) -> QSize:  # noqa: N802 (Qt name)
        return QSize(400, 40)

    # -- events
    def _seek(self, v: int) -> None:
        v = max(0, min(int(v), max(0, self._n - 1)))
        self._value = v
        self.update()
        self.seeked.emit(v)

    def mousePressEvent(self, event) -> None:  # noqa: N802
        if self._n and event.button() == Qt.MouseButton.LeftButton:
            self._seek(self.tick_at(event.position().x()))

    def mouseMoveEvent(self, event) -> None:  # noqa: N802
        if self._n and event.buttons() & Qt.MouseButton.LeftButton:
            t = self.tick_at(event.position().x())
            if t != self._value:
                self._seek(t)

    def keyPressEvent(self, event) -> None:  # noqa: N802
        key = event.key()
        if not self._n:
            return super().keyPressEvent(event)
        if key == Qt.Key.Key_Left:
            self._seek(self._value - 1)
        elif key == Qt.Key.Key_Right:
            self._seek(self._value + 1)
        elif key == Qt.Key.Key_Home:
            self._seek(0)
        elif key == Qt.Key.Key_End:
            self._seek(self._n - 1)
        else:
            super().keyPressEvent(event)

    def paintEvent(self, _event) -> None:  # noqa: N802
        p = QPainter(self)
        r = self._track()
        p.fillRect(r, QColor(45, 45, 50))
        if self._n:
            step = r.width() / max(1, self._n - 1)
            for seg in self._segments:
                x0, x1 = self.x_for(seg.start), self.x_for(seg.end)
                p.fillRect(QRectF(x0, r.top(), max(2.0, x1 - x0 + step), r.height()),
                           SEGMENT_COLORS.get(seg.kind, DEFAULT_SEGMENT_COLOR))
            p.setPen(QPen(DROP_COLOR, 1))
            for d in self._drops:
                x = self.x_for(d)
                p.drawLine(int(x), int(r.bottom() - r.height() * 0.45), int(x), int(r.bottom()))
            x = self.x_for(self._value)
            p.setPen(QPen(QColor(255, 255, 255), 2))
            p.drawLine(int(x), int(r.top()) - 4, int(x), int(r.bottom()) + 4)
        p.end()
