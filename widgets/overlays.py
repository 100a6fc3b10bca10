"""Rollout overlays for ``CameraView``: painters drawn on the view, never into the stored frame.

Each painter has the CameraView overlay signature ``fn(painter, image_rect, scale)`` where
``image_rect`` is where the image lies in the widget and ``scale`` is widget pixels per image pixel.
They all read one ``OverlayData`` (plain data, replaced each tick by the controller), so a live
rollout and the playback of a stored rollout draw the same way.

Overlays (names used with ``CameraView.set_overlay_enabled``):
``path`` the predicted chunk as the future end-effector path, ``gripper`` the gripper command,
``bars`` predicted vs executed action per joint, ``timing`` policy latency and achieved control rate,
``confidence`` per-row confidence of the chunk, ``safety`` safety-layer interventions.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
from PyQt6.QtCore import QPointF, QRectF, Qt
from PyQt6.QtGui import QBrush, QColor, QFont, QPainter, QPainterPath, QPen

from widgets.action_bars import paint_action_bars

#: what the overlays show, in plain words (the tooltip of a camera view that draws them)
OVERLAY_TIPS = (
    "future path (cyan): where the gripper goes over the predicted chunk, from where it is now; the bright dot "
    "is the next goal\n"
    "gripper: the commanded opening\n"
    "action bars: blue what the policy asked per joint, orange what was sent\n"
    "latency / rate: how long the last inference took, the control rate reached / asked, and 'held' ticks "
    "(no fresh action in time: the arm held its last goal)\n"
    "confidence: per row of the chunk, how sure the policy was (green high, red low)\n"
    "safety: how often each safety rule changed the action ('max_delta': a step shortened to the max joint "
    "step; 'clipped': what was sent differs from what was asked)")
OVERLAYS = ("gripper", "bars", "timing", "confidence", "safety", "path")  # path last: drawn on top
PATH_COLOR = QColor(0, 255, 200)


@dataclass
class OverlayData:
    """What the overlays show for one camera at one tick (all fields optional)."""

    path_px: np.ndarray | None = None  # (N, 2) image pixels of the future end-effector path (row 0 = next)
    path_start_px: np.ndarray | None = None  # (2,) where the end effector is now: the path is drawn from here
    gripper: float | None = None  # commanded gripper 0 (closed) .. 100 (open)
    predicted: np.ndarray | None = None  # (D,) the policy's action this tick (before safety)
    executed: np.ndarray | None = None  # (D,) what was sent
    low: np.ndarray | float = -180.0  # (D,) bar scale
    high: np.ndarray | float = 180.0
    joint_names: list[str] = field(default_factory=list)
    latency_s: float | None = None  # latest inference latency
    rate_hz: float | None = None  # achieved control rate
    target_hz: float | None = None  # asked control rate
    held_ticks: int = 0
    undecodable: int = 0  # policy outputs that were no valid chunk (FAST) and were held still instead
    confidence: np.ndarray | None = None  # (K,) per-row confidence, 0..1
    safety_counts: dict[str, int] = field(default_factory=dict)
    safety_now: tuple[str, ...] = ()  # rules that changed this tick's action
    mode: str = "policy"  # "policy" | "teleop" | "estop" | "playback"


def _to_widget(rect: QRectF, scale: float, uv) -> QPointF:
    return QPointF(rect.left() + float(uv[0]) * scale, rect.top() + float(uv[1]) * scale)


def _panel(painter: QPainter, rect: QRectF, lines: list[tuple[str, QColor]], corner: str, scale: float) -> None:
    font = QFont(painter.font())
    font.setPixelSize(12)  # text stays readable and small whatever the image scale
    painter.setFont(font)
    fm = painter.fontMetrics()
    w = max(fm.horizontalAdvance(t) for t, _ in lines) + 10
    h = len(lines) * (fm.height() + 1) + 6
    x = rect.left() + 4 if "left" in corner else rect.right() - w - 4
    y = rect.top() + 4 if "top" in corner else rect.bottom() - h - 4
    painter.fillRect(QRectF(x, y, w, h), QColor(0, 0, 0, 160))
    for i, (text, color) in enumerate(lines):
        painter.setPen(color)
        painter.drawText(QPointF(x + 5, y + 3 + fm.ascent() + i * (fm.height() + 1)), text)


def paint_path(painter: QPainter, rect: QRectF, scale: float, data: OverlayData) -> None:
    """The future path as a line from where the gripper is now (a ring) through every predicted row (dots
    fading with the horizon), so even a chunk of one row, or rows that barely move, read as a path."""
    pts = None if data.path_px is None else np.asarray(data.path_px, dtype=np.float64).reshape(-1, 2)
    if pts is None or len(pts) == 0:
        return
    ok = np.isfinite(pts).all(1)
    pts = pts[ok]
    if len(pts) == 0:
        return
    start = None if data.path_start_px is None else np.asarray(data.path_start_px, dtype=np.float64).reshape(-1)
    if start is not None and (len(start) != 2 or not np.isfinite(start).all()):
        start = None
    painter.save()
    painter.setRenderHint(QPainter.RenderHint.Antialiasing, True)
    painter.setClipRect(rect)
    n = len(pts)
    width = float(np.clip(2.0 * scale, 2.0, 4.0))
    line = pts if start is None else np.vstack([start[None], pts])
    path = QPainterPath(_to_widget(rect, scale, line[0]))
    for p in line[1:]:
        path.lineTo(_to_widget(rect, scale, p))
    painter.setPen(QPen(PATH_COLOR, width, Qt.PenStyle.SolidLine, Qt.PenCapStyle.RoundCap,
                        Qt.PenJoinStyle.RoundJoin))
    painter.setBrush(Qt.BrushStyle.NoBrush)
    painter.drawPath(path)
    if start is not None:  # where the gripper is now
        ring = 5.0 * float(np.clip(scale, 0.6, 1.5))
        painter.setPen(QPen(QColor(255, 255, 255), 1.5))
        painter.drawEllipse(_to_widget(rect, scale, start), ring, ring)
    for i, p in enumerate(pts):  # dots fade with the horizon
        c = QColor(PATH_COLOR)
        c.setAlpha(int(255 - 170 * i / max(n - 1, 1)))
        painter.setPen(Qt.PenStyle.NoPen)
        painter.setBrush(QBrush(c))
        r = (5.0 if i == 0 else 3.0) * float(np.clip(scale, 0.6, 1.5))
        painter.drawEllipse(_to_widget(rect, scale, p), r, r)
    painter.restore()


def paint_gripper(painter: QPainter, rect: QRectF, scale: float, data: OverlayData) -> None:
    if data.gripper is None or not np.isfinite(data.gripper):
        return
    g = float(np.clip(data.gripper, 0, 100))
    painter.save()
    w, h = min(110.0, rect.width() * 0.45), 16.0
    box = QRectF(rect.left() + 4, rect.bottom() - h - 4, w, h)
    painter.fillRect(box, QColor(0, 0, 0, 160))
    inner = box.adjusted(2, 2, -2, -2)
    painter.fillRect(QRectF(inner.left(), inner.top(), inner.width() * g / 100, inner.height()),
                     QColor(255, 220, 0) if g > 50 else QColor(255, 80, 80))
    painter.setPen(QColor(255, 255, 255))
    font = QFont(painter.font())
    font.setPixelSize(max(8, int(inner.height() * 0.8)))
    painter.setFont(font)
    painter.drawText(inner, int(Qt.AlignmentFlag.AlignCenter), f"gripper {g:.0f}% {'open' if g > 50 else 'closed'}")
    painter.restore()


def paint_bars(painter: QPainter, rect: QRectF, scale: float, data: OverlayData) -> None:
    if data.predicted is None and data.executed is None:
        return
    n = len(data.predicted if data.predicted is not None else data.executed)
    w = min(rect.width() * 0.4, 170.0)
    h = min(rect.height() * 0.45, n * 14.0)
    box = QRectF(rect.right() - w - 4, rect.bottom() - h - 4, w, h)
    paint_action_bars(painter, box, data.predicted, data.executed, data.low, data.high, data.joint_names or None)


def paint_timing(painter: QPainter, rect: QRectF, scale: float, data: OverlayData) -> None:
    parts = []
    if data.latency_s is not None:
        parts.append(f"policy {data.latency_s * 1000:.0f} ms")
    if data.rate_hz is not None:
        tgt = f"/{data.target_hz:.0f}" if data.target_hz else ""
        parts.append(f"{data.rate_hz:.1f}{tgt} Hz")
    if data.held_ticks:
        parts.append(f"held {data.held_ticks}")
    if data.undecodable:
        parts.append(f"undecodable {data.undecodable}")
    if not parts and data.mode == "policy":
        return
    color = QColor(255, 255, 255)
    if data.mode == "estop":
        parts.insert(0, "E-STOP")
        color = QColor(255, 60, 60)
    elif data.mode == "teleop":
        parts.insert(0, "TAKEOVER")
        color = QColor(255, 200, 0)
    elif data.mode == "playback":
        parts.insert(0, "playback")
    painter.save()
    # below the camera title CameraView draws in the top-left corner
    _panel(painter, rect.adjusted(0, 16, 0, 0), [("  ".join(parts), color)], "top-left", scale)
    painter.restore()


def paint_confidence(painter: QPainter, rect: QRectF, scale: float, data: OverlayData) -> None:
    c = None if data.confidence is None else np.asarray(data.confidence, dtype=np.float64).reshape(-1)
    if c is None or len(c) == 0 or not np.isfinite(c).any():
        return
    painter.save()
    font = QFont(painter.font())
    font.setPixelSize(11)  # readable whatever the image scale, like the other panels
    painter.setFont(font)
    fm = painter.fontMetrics()
    label = f"confidence {np.nanmean(c):.2f}"
    # the box holds its label and its bars whole, and stays inside the picture (never clipped by its edge)
    w = min(max(fm.horizontalAdvance(label) + 10, 6.0 * len(c) + 10), max(rect.width() - 8, 20.0))
    h = min(fm.height() + 24.0, max(rect.height() - 8, 20.0))
    box = QRectF(rect.right() - w - 4, rect.top() + 4, w, h)
    painter.fillRect(box, QColor(0, 0, 0, 160))
    bars = QRectF(box.left() + 5, box.top() + fm.height() + 4, box.width() - 10, box.height() - fm.height() - 7)
    bw = bars.width() / len(c)
    for i, v in enumerate(c):
        if not np.isfinite(v):
            continue
        v = float(np.clip(v, 0, 1))
        col = QColor.fromHsvF(0.33 * v, 0.9, 0.95)
        bh = max(1.0, bars.height() * v)
        painter.fillRect(QRectF(bars.left() + i * bw, bars.bottom() - bh, max(1.0, bw - 1), bh), col)
    painter.setPen(QColor(255, 255, 255))
    painter.drawText(QPointF(box.left() + 5, box.top() + 2 + fm.ascent()), label)
    painter.restore()


def paint_safety(painter: QPainter, rect: QRectF, scale: float, data: OverlayData) -> None:
    counts = {k: v for k, v in data.safety_counts.items() if v}
    if not counts and not data.safety_now:
        return
    now = bool(data.safety_now)
    text = "safety: " + ", ".join(f"{k} {v}" for k, v in counts.items())
    lines = [(text, QColor(255, 90, 90) if now else QColor(255, 200, 120))]
    if now:
        lines.append(("clipped now: " + ", ".join(data.safety_now), QColor(255, 90, 90)))
    painter.save()
    # below the timing panel
    _panel(painter, rect.adjusted(0, 16 + 22, 0, 0), lines, "top-left", scale)
    painter.restore()


PAINTERS: dict[str, Callable[[QPainter, QRectF, float, OverlayData], None]] = {
    "path": paint_path, "gripper": paint_gripper, "bars": paint_bars, "timing": paint_timing,
    "confidence": paint_confidence, "safety": paint_safety,
}


def make_painter(name: str, get_data: Callable[[], OverlayData | None]):
    """A CameraView overlay function drawing overlay ``name`` from whatever ``get_data()`` returns."""
    paint = PAINTERS[name]

    def fn(painter: QPainter, image_rect: QRectF, scale: float) -> None:
        data = get_data()
        if data is not None:
            paint(painter, image_rect, scale, data)

    fn.__name__ = f"overlay_{name}"
    return fn


def install_overlays(view, get_data: Callable[[], OverlayData | None], enabled: dict[str, bool] | None = None):
    """Add every rollout overlay to a CameraView (``add_overlay(name, fn)``); returns their names."""
    for name in OVERLAYS:
        view.add_overlay(name, make_painter(name, get_data))
        if enabled is not None and name in enabled:
            view.set_overlay_enabled(name, bool(enabled[name]))
    return list(OVERLAYS)
