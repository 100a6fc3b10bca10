"""A synthetic camera: colour bars, a bar that moves one step per frame, and the frame counter drawn in.

A product feature (demo, benchmarks, tests), not a mock: it runs its own capture thread at ``fps`` and
delivers :class:`FramePacket` like any real camera.
"""

from __future__ import annotations

import time

import cv2
import numpy as np

from recorder.devices.base import ThreadedCamera
from recorder.devices.configs import TestPatternCameraConfig

_BARS = np.array(
    [[192, 192, 192], [192, 192, 0], [0, 192, 192], [0, 192, 0], [192, 0, 192], [192, 0, 0], [0, 0, 192]],
    dtype=np.uint8,
)


class TestPatternCamera(ThreadedCamera):
    __test__ = False

    def __init__(self, cfg: TestPatternCameraConfig, name: str = "test_pattern") -> None:
        super().__init__(name, cfg.width, cfg.height, cfg.fps)
        self.cfg = cfg
        self.connect_timeout_s = cfg.connect_timeout_s
        cols = (np.arange(self.width) * len(_BARS)) // self.width
        self._base = np.ascontiguousarray(np.broadcast_to(_BARS[cols][None], (self.height, self.width, 3)))
        self._next_t = 0.0
        self._n = 0

    def describe(self) -> str:
        return f"test-pattern camera '{self.name}' {self.width}x{self.height}@{self.fps:g}"

    def _open(self) -> None:
        self._next_t = time.monotonic()
        self._n = 0

    def _grab(self):
        self._pace()
        img = render_test_pattern(self._base, self._n)
        self._n += 1
        return img, None


def render_test_pattern(base: np.ndarray, n: int) -> np.ndarray:
    h, w = base.shape[:2]
    img = base.copy()
    x = (n * max(1, w // 60)) % w
    img[:, x : x + max(2, w // 80)] = 255
    scale = max(0.4, h / 240.0)
    text = f"{n:06d}"
    (tw, th), _ = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, 2)
    org = (max(2, (w - tw) // 2), h // 2 + th // 2)
    cv2.rectangle(img, (org[0] - 4, org[1] - th - 4), (org[0] + tw + 4, org[1] + 6), (0, 0, 0), -1)
    cv2.putText(img, text, org, cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), 2, cv2.LINE_AA)
    return img
