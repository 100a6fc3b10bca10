"""A camera through OpenCV's VideoCapture: a device index, a /dev/video path, or a video file.

The capture thread reads as fast as the device delivers (a video file is played at ``fps`` and looped)
and keeps the latest frame. Frames are converted to RGB. A live camera that cannot deliver the asked
resolution is an error naming the modes it offers.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import cv2
import numpy as np

from recorder.devices.base import ThreadedCamera
from recorder.devices.configs import OpenCVCameraConfig
from recorder.errors import DeviceError


def _source(v: int | str) -> int | str:
    if isinstance(v, int):
        return v
    s = str(v)
    return int(s) if s.isdigit() else s


class OpenCVCamera(ThreadedCamera):
    def __init__(self, cfg: OpenCVCameraConfig, name: str = "opencv") -> None:
        super().__init__(name, cfg.width, cfg.height, cfg.fps)
        self.cfg = cfg
        self.connect_timeout_s = cfg.connect_timeout_s
        self.source = _source(cfg.index_or_path)
        self._cap = None
        self._is_file = (
            isinstance(self.source, str)
            and Path(self.source).is_file()
            and not str(self.source).startswith("/dev/")
        )
        self._next_t = 0.0

    def describe(self) -> str:
        return f"OpenCV camera '{self.name}' ({self.source})"

    def _open(self) -> None:
        src = self.source
        if isinstance(src, str) and not self._is_file and not os.path.exists(src):
            raise DeviceError(
                f"camera '{self.name}': {src} does not exist: run 'vla-studio devices' to list cameras"
            )
        backend = cv2.CAP_V4L2 if self.cfg.backend == "v4l2" else cv2.CAP_ANY
        cap = cv2.VideoCapture(src, backend)
        if not cap.isOpened():
            cap.release()
            raise DeviceError(
                f"camera '{self.name}': cannot open {src}: check the index/path ('vla-studio devices' lists "
                "cameras) and that no other program is using it"
            )
        self._cap = cap
        if not self._is_file:
            if self.cfg.fourcc:
                cap.set(cv2.CAP_PROP_FOURCC, cv2.VideoWriter_fourcc(*self.cfg.fourcc[:4]))
            cap.set(cv2.CAP_PROP_FRAME_WIDTH, self.width)
            cap.set(cv2.CAP_PROP_FRAME_HEIGHT, self.height)
            cap.set(cv2.CAP_PROP_FPS, self.fps)
            w = int(cap.get(cv2.CAP_PROP_FRAME_WIDTH))
            h = int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT))
            if (w, h) != (self.width, self.height):
                raise DeviceError(
                    f"camera '{self.name}' ({src}) gives {w}x{h}, not {self.width}x{self.height}: pick a mode "
                    "listed by 'vla-studio devices'"
                )
        self._next_t = time.monotonic()

    def _grab(self):
        if self._is_file:
            while True:
                left = self._next_t - time.monotonic()
                if left <= 0 or self._stop.is_set():
                    break
                time.sleep(min(left, 0.02))
            self._next_t = max(self._next_t + 1.0 / self.fps, time.monotonic() - 1.0 / self.fps)
        ok, frame = self._cap.read()
        if not ok and self._is_file:
            self._cap.set(cv2.CAP_PROP_POS_FRAMES, 0)
            ok, frame = self._cap.read()
        if not ok or frame is None:
            raise DeviceError(
                f"camera '{self.name}' ({self.source}) stopped delivering frames: check the cable and reconnect"
            )
        if frame.ndim == 2:
            frame = cv2.cvtColor(frame, cv2.COLOR_GRAY2RGB)
        else:
            frame = cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)
        if frame.shape[1] != self.width or frame.shape[0] != self.height:
            frame = cv2.resize(frame, (self.width, self.height), interpolation=cv2.INTER_AREA)
        return np.ascontiguousarray(frame), None

    def _close(self) -> None:
        if self._cap is not None:
            self._cap.release()
            self._cap = None


def list_opencv_cameras(max_index: int = 10) -> list[dict]:
    """Cameras OpenCV can open, with the common modes each accepts. Empty when there are none."""
    found = []
    import sys

    if sys.platform.startswith("linux"):
        # V4L2 nodes; metadata nodes fail to open and are skipped
        candidates: list[int | str] = sorted(
            (str(p) for p in Path("/dev").glob("video*")),
            key=lambda s: int(s[10:]) if s[10:].isdigit() else 0,
        )
    else:
        candidates = list(range(max_index))
    for src in candidates:
        cap = cv2.VideoCapture(src)
        try:
            if not cap.isOpened():
                continue
            modes = []
            for w, h in [(320, 240), (640, 480), (1280, 720), (1920, 1080)]:
                cap.set(cv2.CAP_PROP_FRAME_WIDTH, w)
                cap.set(cv2.CAP_PROP_FRAME_HEIGHT, h)
                if (int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT))) == (
                    w,
                    h,
                ):
                    modes.append({"width": w, "height": h, "fps": float(cap.get(cv2.CAP_PROP_FPS) or 0.0)})
            found.append({"source": src, "backend": cap.getBackendName(), "modes": modes})
        finally:
            cap.release()
    return found
