"""Per-dimension bars of predicted vs executed action (a painter function and a widget using it)."""

from __future__ import annotations

import numpy as np
from PyQt6.QtCore import QRectF, QSize, Qt
from PyQt6.QtGui import QColor, QFont, QPainter, QPen
from PyQt6.QtWidgets import QSizePolicy, QWidget

PREDICTED = QColor(80, 160, 255)
EXECUTED = QColor(255, 150, 40)
BACKGROUND = QColor(0, 0, 0, 150)


def _frac(v: float, lo: float, hi: float) -> float:
    if not np.isfinite(v) or hi <= lo:
        return float("nan")
    return float(np.clip((v - lo) / (hi - lo), 0.0, 1.0))


def paint_action_bars(painter: QPainter, rect: QRectF, predicted, executed, low, high,
                      names: list[str] | None = None) -> None:
    """One row per action dimension inside ``rect``: a blue bar for the policy's prediction, an
    orange tick for what was executed (after safety), both scaled to [low, high] of that joint."""
    pred = None if predicted is None else np.asarray(predicted, dtype=np.float64).reshape(-1)
    exe = None if executed is None else np.asarray(executed, dtype=np.float64).reshape(-1)
    n = len(pred) if pred is not None else (len(exe) if exe is not None else 0)
    if n == 0:
        return
    lo = np.broadcast_to(np.asarray(low, dtype=np.float64), (n,))
    hi = np.broadcast_to(np.asarray(high, dtype=np.float64), (n,))
    painter.save()
    painter.setRenderHint(QPainter.RenderHint.Antialiasing, True)
    painter.fillRect(rect, BACKGROUND)
    row_h = rect.height() / n
    label_w = min(70.0, rect.width() * 0.35) if names else 0.0
    font = QFont(painter.font())
    font.setPixelSize(max(7, int(row_h * 0.6)))
    painter.setFont(font)
    for i in range(n):
        y = rect.top() + i * row_h
        bar = QRectF(rect.left() + label_w + 2, y + row_h * 0.15, rect.width() - label_w - 4, row_h * 0.7)
        if names:
            painter.setPen(QColor(230, 230, 230))
            painter.drawText(QRectF(rect.left() + 2, y, label_w - 2, row_h),
                             int(Qt.AlignmentFlag.AlignVCenter | Qt.AlignmentFlag.AlignLeft), names[i][:10])
        painter.fillRect(bar, QColor(60, 60, 60, 200))
        if pred is not None:
            f = _frac(pred[i], lo[i], hi[i])
            if np.isfinite(f):
                painter.fillRect(QRectF(bar.left(), bar.top(), bar.width() * f, bar.height()), PREDICTED)
        if exe is not None:
            f = _frac(exe[i], lo[i], hi[i])
            if np.isfinite(f):
                x = bar.left() + bar.width() * f
                painter.setPen(QPen(EXECUTED, max(2.0, row_h * 0.12)))
                painter.drawLine(int(x), int(bar.top() - 1), int(x), int(bar.bottom() + 1))
    painter.restore()


class ActionBarsWidget(QWidget):
    """Predicted (blue bars) vs executed (orange ticks) action per joint, scaled to the joint limits."""

    def __init__(self, names: list[str] | None = None, low=None, high=None, parent=None) -> None:
        super().__init__(parent)
        self.names = list(names or [])
        self.low = low if low is not None else -180.0
        self.high = high if high is not None else 180.0
        self.predicted = None
        self.executed = None
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Preferred)

    def sizeHint(self) -> QSize:  # noqa: N802 (Qt name)
        return QSize(240, 18 * max(1, len(self.names) or 6))

    def set_limits(self, low, high) -> None:
        self.low, self.high = low, high
        self.update()

    def set_values(self, predicted, executed) -> None:
        self.predicted = None if predicted is None else np.array(predicted, dtype=np.float64)
        self.executed = None if executed is None else np.array(executed, dtype=np.float64)
        self.update()

    def paintEvent(self, event) -> None:  # noqa: N802 (Qt name)
        p = QPainter(self)
        try:
            paint_action_bars(p, QRectF(self.rect()), self.predicted, self.executed, self.low, self.high,
                              self.names or None)
        finally:
            p.end()
