"""Camera views arranged to make every picture as large as the space allows.

``CameraGridWidget.set_cameras(names)`` builds one ``CameraView`` per camera; on each resize (and when a
camera's frame size changes) it tries every column count and keeps the one giving the largest pictures,
then sizes each view to its picture's aspect ratio, so the views carry no letterbox bands of their own;
what space is left over is the window's background, centred around the pictures.
"""

from __future__ import annotations

import math
from collections.abc import Callable

from PyQt6.QtCore import QEvent, QRect, QSize, Qt
from PyQt6.QtGui import QPainter, QPalette
from PyQt6.QtWidgets import QSizePolicy, QWidget

from widgets.camera_view import CameraView

GAP = 6  # pixels between pictures


def best_columns(n: int, width: float, height: float, aspect: float) -> tuple[int, float]:
    """(columns, picture width) for ``n`` pictures of ``aspect`` (w/h) in a width x height box."""
    best = (1, 0.0)
    for cols in range(1, max(1, n) + 1):
        rows = math.ceil(n / cols)
        cell_w = (width - GAP * (cols - 1)) / cols
        cell_h = (height - GAP * (rows - 1)) / rows
        w = min(cell_w, cell_h * aspect)
        if w > best[1] + 0.5:
            best = (cols, w)
    return best


class CameraGridWidget(QWidget):
    """Holds the camera views of a tab and lays them out (no QLayout: geometry computed here).

    Signals: none (a pure view).
    """

    def __init__(self, parent: QWidget | None = None, aspect: float = 4 / 3,
                 view_factory: Callable[[str], CameraView] = CameraView) -> None:
        super().__init__(parent)
        self.default_aspect = aspect
        self.view_factory = view_factory
        self.views: dict[str, CameraView] = {}
        self.columns = 1
        self.placeholder = ""  # said where the pictures will be while there are no cameras
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)
        self.setMinimumSize(160, 120)

    def sizeHint(self) -> QSize:  # noqa: N802 (Qt name)
        return QSize(640, 480)

    def set_placeholder(self, text: str) -> None:
        self.placeholder = text
        self.update()

    def paintEvent(self, event) -> None:  # noqa: N802 (Qt name)
        if self.views or not self.placeholder:
            return
        p = QPainter(self)
        try:
            p.setPen(self.palette().color(QPalette.ColorRole.PlaceholderText))
            p.drawText(self.rect().adjusted(20, 20, -20, -20),
                       int(Qt.AlignmentFlag.AlignCenter | Qt.TextFlag.TextWordWrap), self.placeholder)
        finally:
            p.end()

    def set_cameras(self, names: list[str]) -> dict[str, CameraView]:
        """Replace the views with one per camera name; returns them by name."""
        for v in self.views.values():
            v.setParent(None)
            v.deleteLater()
        self.views = {}
        for name in names:
            view = self.view_factory(name)
            view.setParent(self)
            view.show()
            self.views[name] = view
        self.relayout()
        self.update()
        return self.views

    def clear_frames(self, text: str) -> None:
        """Every view drops its picture and shows ``text`` (after a disconnect or a failure)."""
        for v in self.views.values():
            v.clear(text)

    def _aspect(self) -> float:
        sizes = [v.image_size() for v in self.views.values()]
        ratios = [w / h for w, h in (s for s in sizes if s) if h > 0]
        return sum(ratios) / len(ratios) if ratios else self.default_aspect

    def relayout(self) -> None:
        n = len(self.views)
        if not n:
            return
        aspect = self._aspect()
        cols, pic_w = best_columns(n, self.width(), self.height(), aspect)
        rows = math.ceil(n / cols)
        pic_w = max(1, int(pic_w))
        pic_h = max(1, int(pic_w / aspect))
        used_w = cols * pic_w + GAP * (cols - 1)
        used_h = rows * pic_h + GAP * (rows - 1)
        x0 = (self.width() - used_w) // 2
        y0 = (self.height() - used_h) // 2
        self.columns = cols
        for i, view in enumerate(self.views.values()):
            r, c = divmod(i, cols)
            view.setGeometry(QRect(x0 + c * (pic_w + GAP), y0 + r * (pic_h + GAP), pic_w, pic_h))

    def resizeEvent(self, event) -> None:  # noqa: N802 (Qt name)
        super().resizeEvent(event)
        self.relayout()

    def event(self, event) -> bool:
        if event.type() == QEvent.Type.LayoutRequest:  # a view's frame size changed (CameraView.updateGeometry)
            self.relayout()
        return super().event(event)
