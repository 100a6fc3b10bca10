import numpy as np
import pytest
from PyQt6.QtCore import QPointF, QRectF
from PyQt6.QtGui import QColor, QPainter

pytestmark = pytest.mark.gui


def _pixel(widget, x, y):
    img = widget.grab().toImage()
    c = img.pixelColor(int(x), int(y))
    return c.red(), c.green(), c.blue()


def test_frame_is_shown_with_aspect_kept_and_overlay_drawn_on_top(qtbot):
    from widgets.camera_view import CameraView

    view = CameraView()
    qtbot.addWidget(view)
    view.resize(400, 200)  # wider than 4:3: the 80x60 frame is letterboxed to 266x200 in the middle
    frame = np.zeros((60, 80, 3), np.uint8)
    frame[..., 2] = 200  # blue
    view.set_frame(frame)
    view.show()
    rect, scale = view.image_rect()
    assert scale == pytest.approx(200 / 60)
    assert rect.width() == pytest.approx(80 * scale) and rect.x() == pytest.approx((400 - 80 * scale) / 2)
    assert _pixel(view, 200, 100) == (0, 0, 200)
    assert _pixel(view, 5, 100) != (0, 0, 200)  # outside the image: background

    seen = []

    def box(p: QPainter, r: QRectF, s: float) -> None:
        seen.append((QRectF(r), s))
        # a red box over image pixels (10..30, 10..30)
        p.fillRect(QRectF(r.x() + 10 * s, r.y() + 10 * s, 20 * s, 20 * s), QColor(255, 0, 0))

    view.add_overlay("box", box)
    assert view.overlay_names() == ["box"]
    x, y = rect.x() + 20 * scale, rect.y() + 20 * scale
    assert _pixel(view, x, y) == (255, 0, 0)
    assert seen[-1][1] == pytest.approx(scale)
    # the frame itself is untouched by the overlay
    assert np.all(frame[..., 0] == 0)
    view.set_overlay_enabled("box", False)
    assert _pixel(view, x, y) == (0, 0, 200)
    view.set_overlay_enabled("box", True)
    assert _pixel(view, x, y) == (255, 0, 0)
    with pytest.raises(KeyError):
        view.set_overlay_enabled("nope", True)


def test_new_frame_replaces_old_and_noncontiguous_input_is_ok(qtbot):
    from widgets.camera_view import CameraView

    view = CameraView()
    qtbot.addWidget(view)
    view.resize(160, 120)
    big = np.zeros((120, 160, 3), np.uint8)
    big[..., 1] = 255
    view.set_frame(big[::2, ::2])  # a strided view
    del big
    view.show()
    assert _pixel(view, 80, 60) == (0, 255, 0)

    def dot(p, r, s):
        p.setBrush(QColor(255, 255, 255))
        p.drawEllipse(QPointF(r.x() + 40 * s, r.y() + 30 * s), 5, 5)

    view.add_overlay("dot", dot)
    assert _pixel(view, 80, 60) == (255, 255, 255)
    with pytest.raises(ValueError):
        view.set_frame(np.zeros((4, 4), np.uint8))
