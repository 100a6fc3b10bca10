"""A camera image with named overlays drawn on top (never into the frame).

Contract (the Rollout tab draws on it):
- ``set_frame(image)``: HxWx3 uint8 RGB; shown as a QImage made from a C-contiguous array whose
  reference is kept while displayed.
- ``add_overlay(name, fn)``: ``fn(painter, rect, scale)`` is called in ``paintEvent`` after the frame,
  where ``rect`` (QRectF) is where the image is drawn in widget coordinates and ``scale`` converts
  image pixels to widget pixels (``widget_x = rect.x() + image_x * scale``).
- ``set_overlay_enabled(name, on)``, ``overlay_names()``, ``remove_overlay(name)``.
The aspect ratio is kept (letterboxed in the widget's background).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from PyQt6.QtCore import QRectF, QSize, Qt
from PyQt6.QtGui import QColor, QImage, QPainter
from PyQt6.QtWidgets import QSizePolicy, QWidget

OverlayFn = Callable[[QPainter, QRectF, float], None]


class CameraView(QWidget):
    """Shows the latest frame of one camera, scaled with its aspect ratio kept, with overlays.

    Signals: none (a pure view).
    """

    def __init__(self, title: str = "", parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.title = title
        self._array: np.ndarray | None = None  # keeps the buffer behind _image alive
        self._image: QImage | None = None
        self._overlays: dict[str, OverlayFn] = {}
        self._enabled: dict[str, bool] = {}
        self._placeholder = "no frame"
        self.frames_shown = 0
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)
        self.setMinimumSize(160, 120)
        self.setAttribute(Qt.WidgetAttribute.WA_OpaquePaintEvent, True)

    def sizeHint(self) -> QSize:  # noqa: N802 (Qt name)
        return QSize(320, 240)

    # -- frames --------------------------------------------------------------------------
    def set_frame(self, image: np.ndarray) -> None:
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise ValueError(f"CameraView expects HxWx3 uint8 RGB, got {image.shape} {image.dtype}")
        arr = np.ascontiguousarray(image)
        h, w = arr.shape[:2]
        resized = self._array is None or self._array.shape[:2] != (h, w)
        self._array = arr
        self._image = QImage(arr.data, w, h, arr.strides[0], QImage.Format.Format_RGB888)
        self.frames_shown += 1
        if resized:
            self.updateGeometry()  # a CameraGridWidget re-sizes its views to the new aspect ratio
        self.update()

    def clear(self, text: str = "no frame") -> None:
        self._array = None
        self._image = None
        self._placeholder = text
        self.update()

    def image_size(self) -> tuple[int, int] | None:
        """(width, height) of the current frame."""
        return None if self._array is None else (self._array.shape[1], self._array.shape[0])

    def image_rect(self) -> tuple[QRectF, float]:
        """Where the frame is drawn (widget coordinates) and the image-to-widget scale."""
        if self._array is None:
            return QRectF(self.rect()), 1.0
        h, w = self._array.shape[:2]
        scale = min(self.width() / w, self.height() / h)
        dw, dh = w * scale, h * scale
        return QRectF((self.width() - dw) / 2.0, (self.height() - dh) / 2.0, dw, dh), scale

    # -- overlays ------------------------------------------------------------------------
    def add_overlay(self, name: str, fn: OverlayFn, enabled: bool = True) -> None:
        self._overlays[name] = fn
        self._enabled[name] = enabled
        self.update()

    def remove_overlay(self, name: str) -> None:
        self._overlays.pop(name, None)
        self._enabled.pop(name, None)
        self.update()

    def set_overlay_enabled(self, name: str, on: bool) -> None:
        if name not in self._overlays:
            raise KeyError(f"no overlay named {name!r}; have {sorted(self._overlays)}")
        self._enabled[name] = bool(on)
        self.update()

    def overlay_enabled(self, name: str) -> bool:
        return self._enabled.get(name, False)

    def overlay_names(self) -> list[str]:
        return list(self._overlays)

    # -- painting ------------------------------------------------------------------------
    def paintEvent(self, event) -> None:  # noqa: N802 (Qt name)
        p = QPainter(self)
        try:
            p.fillRect(self.rect(), QColor(20, 20, 20))
            rect, scale = self.image_rect()
            if self._image is None:
                p.setPen(QColor(160, 160, 160))
                p.drawText(self.rect(), Qt.AlignmentFlag.AlignCenter, f"{self.title}\n{self._placeholder}".strip())
                return
            p.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform, scale < 1.0)
            p.drawImage(rect, self._image)
            for name, fn in self._overlays.items():
                if not self._enabled.get(name):
                    continue
                p.save()
                try:
                    fn(p, QRectF(rect), scale)
                finally:
                    p.restore()
            if self.title:
                p.setPen(QColor(255, 255, 255))
                p.drawText(rect.adjusted(6, 4, -6, -4), Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignTop,
                           self.title)
        finally:
            p.end()
