import numpy as np
import pytest

pytestmark = pytest.mark.gui


def _render(names, data, w=320, h=240):
    from PyQt6.QtCore import QRectF
    from PyQt6.QtGui import QColor, QImage, QPainter

    from widgets.overlays import make_painter

    img = QImage(w, h, QImage.Format.Format_RGB32)
    img.fill(QColor(0, 0, 0))
    p = QPainter(img)
    for n in names:
        make_painter(n, lambda: data)(p, QRectF(0, 0, w, h), 1.0)
    p.end()
    ptr = img.constBits()
    ptr.setsize(img.sizeInBytes())
    return np.frombuffer(ptr, np.uint8).reshape(h, img.bytesPerLine() // 4, 4)[:, :w, :3].copy()


def test_path_overlay_draws_along_the_projected_points(qapp):
    from widgets.overlays import OverlayData

    path = np.array([[100, 100], [150, 120], [200, 140]], np.float32)
    px = _render(["path"], OverlayData(path_px=path))
    assert px[100, 100].max() > 150  # first point drawn
    assert px[120, 150].max() > 150  # on the line
    assert px[20, 300].max() == 0  # far away: untouched
    off = _render([], OverlayData(path_px=path))
    assert off.max() == 0


def test_nan_path_points_are_skipped_and_an_empty_path_draws_nothing(qapp):
    from widgets.overlays import OverlayData

    px = _render(["path"], OverlayData(path_px=np.full((4, 2), np.nan)))
    assert px.max() == 0


def test_every_overlay_draws_something_and_each_toggles(qapp):
    from widgets.overlays import OVERLAYS, OverlayData

    data = OverlayData(path_px=np.array([[50, 50], [60, 60]]), gripper=80, predicted=np.zeros(6),
                       executed=np.ones(6) * 10, latency_s=0.045, rate_hz=29.5, target_hz=30,
                       confidence=np.linspace(1, 0.4, 4), safety_counts={"max_delta": 3}, safety_now=("max_delta",))
    base = _render([], data)
    for name in OVERLAYS:
        px = _render([name], data)
        assert (px != base).any(), name


def test_action_bars_show_predicted_vs_executed(qapp):
    from PyQt6.QtCore import QRectF
    from PyQt6.QtGui import QColor, QImage, QPainter

    from widgets.action_bars import paint_action_bars

    img = QImage(200, 20, QImage.Format.Format_RGB32)
    img.fill(QColor(0, 0, 0))
    p = QPainter(img)
    paint_action_bars(p, QRectF(0, 0, 200, 20), [90.0], [0.0], -180.0, 180.0)
    p.end()
    # predicted at 75% of the range: blue up to x~150, not beyond
    assert QColor(img.pixel(140, 10)).blue() > 200
    assert QColor(img.pixel(170, 10)).blue() < 150
    # executed tick at the middle (orange)
    c = QColor(img.pixel(100, 10))
    assert c.red() > 200 and c.blue() < 100
