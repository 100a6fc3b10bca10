"""Device interfaces: cameras, robots and teleoperators (no Qt, no vendor SDK at import time).

Every device is a context manager (``with make_camera(cfg) as cam: ...``) and describes what it
produces through ``*_features`` dicts, so the record loop and the store never special-case a device.

Units (docs/INTERFACES.md): revolute joints in degrees, the gripper in 0..100 (0 closed, 100 open),
images HxWx3 uint8 RGB C-contiguous, depth HxW uint16 millimetres, times from ``time.monotonic()``.
"""

from __future__ import annotations

import threading
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass

import numpy as np

from recorder.errors import DeviceError, DeviceNotConnectedError, DeviceTimeoutError

JOINT_NAMES = ["shoulder_pan", "shoulder_lift", "elbow_flex", "wrist_flex", "wrist_roll", "gripper"]


@dataclass
class FramePacket:
    """One camera frame: RGB image, capture time (``time.monotonic()``), frame counter since connect."""

    image: np.ndarray
    timestamp: float
    index: int
    depth: np.ndarray | None = None


class _Device(ABC):
    """connect / disconnect / is_connected plus context-manager support."""

    name: str = ""

    @property
    @abstractmethod
    def is_connected(self) -> bool: ...

    @abstractmethod
    def connect(self) -> None: ...

    @abstractmethod
    def disconnect(self) -> None: ...

    def __enter__(self):
        self.connect()
        return self

    def __exit__(self, *exc) -> None:
        self.disconnect()

    def _require_connected(self) -> None:
        if not self.is_connected:
            raise DeviceNotConnectedError(f"{self.describe()} is not connected: call connect() first")

    def describe(self) -> str:
        return f"{type(self).__name__} '{self.name}'"


class Camera(_Device):
    """A camera that delivers the latest frame. ``read_latest`` never blocks longer than ``timeout``."""

    width: int
    height: int
    fps: float
    channels: int = 3
    has_depth: bool = False

    @abstractmethod
    def read_latest(self, timeout: float = 1.0) -> FramePacket: ...

    @property
    def features(self) -> dict:
        feats = {"shape": (self.height, self.width, self.channels), "dtype": "uint8", "fps": float(self.fps)}
        if self.has_depth:
            feats["depth"] = {"shape": (self.height, self.width), "dtype": "uint16", "unit": "mm"}
        return feats


class ThreadedCamera(Camera):
    """A camera whose own capture thread keeps the latest frame and its timestamp behind a lock.

    Subclasses implement ``_open()``, ``_grab() -> (image, depth | None[, capture_time])`` (blocking until
    the next frame is available, paced by the device; the capture time defaults to when ``_grab`` returned)
    and ``_close()``. ``_open``/``_grab``/``_close`` all run on the
    capture thread, so device handles that are thread-affine (OpenGL contexts) work.
    """

    connect_timeout_s: float = 5.0

    def __init__(self, name: str, width: int, height: int, fps: float) -> None:
        self.name = name
        self.width = int(width)
        self.height = int(height)
        self.fps = float(fps)
        self._lock = threading.Lock()
        self._cond = threading.Condition(self._lock)
        self._latest: FramePacket | None = None
        self._count = 0
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._pace_wake = threading.Event()  # ends a pacing wait early (disconnect, a new rate cap)
        self._opened = threading.Event()
        self._error: BaseException | None = None

    # -- subclass hooks (capture thread) --
    @abstractmethod
    def _open(self) -> None: ...

    @abstractmethod
    def _grab(self) -> tuple[np.ndarray, np.ndarray | None]: ...

    def _close(self) -> None:
        pass

    @property
    def rate_cap(self) -> float | None:
        """A lower frame rate the camera's own pacing keeps to while set (None: ``fps``); the record session
        sets it while the rig is idle and a local training run needs the CPU. Synthetic cameras honour it."""
        return getattr(self, "_rate_cap", None)

    @rate_cap.setter
    def rate_cap(self, fps: float | None) -> None:
        self._rate_cap = fps
        self._pace_wake.set()  # a lifted cap takes effect at once

    def _period(self) -> float:
        cap = self.rate_cap
        return 1.0 / (min(self.fps, cap) if cap else self.fps)

    def _pace(self) -> None:
        """Sleep until the next frame is due at ``fps`` (or ``rate_cap``; synthetic cameras pace themselves).
        One wake-up per frame: the wait ends early only for disconnect() or a new rate cap (an idle rig must
        not wake up often: every wake-up preempts a training process's threads). A camera that fell behind
        skips ahead instead of bursting."""
        if getattr(self, "_next_t", None) is None:
            self._next_t = time.monotonic()
        prev = getattr(self, "_prev_t", None)
        while True:
            due = self._next_t if prev is None else min(self._next_t, prev + self._period())
            left = due - time.monotonic()
            if left <= 0 or self._stop.is_set():
                break
            self._pace_wake.wait(left)
            self._pace_wake.clear()
        now = time.monotonic()
        period = self._period()
        self._prev_t = now
        self._next_t = max(due + period, now - period)

    # -- public --
    @property
    def is_connected(self) -> bool:
        return self._thread is not None and self._thread.is_alive() and self._opened.is_set()

    def connect(self) -> None:
        self.start_connect()
        self.finish_connect()

    def start_connect(self) -> None:
        """Start the capture thread without waiting (a rig starts all cameras, then waits for each)."""
        if self._thread is not None and self._thread.is_alive():
            return
        self._stop.clear()
        self._opened.clear()
        self._error = None
        self._latest = None
        self._count = 0
        self._thread = threading.Thread(target=self._run, name=f"camera-{self.name}", daemon=True)
        self._thread.start()
        self._connect_deadline = time.monotonic() + self.connect_timeout_s

    def finish_connect(self) -> None:
        """Wait for the first frame; raise a typed error naming the camera if none comes in time."""
        if self._thread is None:
            raise DeviceNotConnectedError(f"camera '{self.name}': start_connect() was not called")
        deadline = self._connect_deadline
        # wait for the device to open and deliver its first frame
        with self._cond:
            while self._latest is None and self._error is None and self._thread.is_alive():
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._cond.wait(min(left, 0.05))
        if self._error is not None:
            err = self._error
            self.disconnect()
            if isinstance(err, DeviceError):
                raise err
            raise DeviceError(f"camera '{self.name}': {err}") from err
        if self._latest is None:
            self.disconnect()
            raise DeviceTimeoutError(
                f"camera '{self.name}' ({self.describe()}) delivered no frame within "
                f"{self.connect_timeout_s:g} s: check that it is plugged in and not used by another program"
            )

    def disconnect(self) -> None:
        self._stop.set()
        self._pace_wake.set()
        t = self._thread
        if t is not None and t is not threading.current_thread():
            t.join(timeout=5.0)
        self._thread = None
        self._opened.clear()

    def read_latest(self, timeout: float = 1.0) -> FramePacket:
        with self._cond:
            if self._latest is None or self._thread is None:
                if self._thread is None:
                    raise DeviceNotConnectedError(
                        f"camera '{self.name}' is not connected: call connect() first"
                    )
                deadline = time.monotonic() + timeout
                while self._latest is None and self._error is None:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        raise DeviceTimeoutError(
                            f"camera '{self.name}' delivered no frame within {timeout:g} s"
                        )
                    self._cond.wait(left)
            if self._error is not None and not (self._thread and self._thread.is_alive()):
                raise DeviceError(f"camera '{self.name}' stopped: {self._error}")
            return self._latest

    def wait_for_frame(self, after_index: int, timeout: float = 1.0) -> FramePacket:
        """Block until a frame newer than ``after_index`` arrives (tests, benchmarks)."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while self._latest is None or self._latest.index <= after_index:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise DeviceTimeoutError(
                        f"camera '{self.name}' delivered no new frame within {timeout:g} s"
                    )
                self._cond.wait(left)
            return self._latest

    # -- capture thread --
    def _run(self) -> None:
        try:
            self._open()
            self._opened.set()
            while not self._stop.is_set():
                got = self._grab()
                image, depth = got[0], got[1]
                if image is None:
                    continue
                ts = got[2] if len(got) > 2 else time.monotonic()
                pkt = FramePacket(image=image, timestamp=ts, index=self._count, depth=depth)
                self._count += 1
                with self._cond:
                    self._latest = pkt
                    self._cond.notify_all()
        except BaseException as err:  # noqa: BLE001 - reported to the caller of connect/read_latest
            with self._cond:
                self._error = err
                self._cond.notify_all()
        finally:
            try:
                self._close()
            except Exception:  # noqa: BLE001
                pass


class Robot(_Device):
    """An arm: joint observation in, goal joint positions out (degrees; gripper 0..100)."""

    joint_names: list[str]

    @property
    @abstractmethod
    def joint_limits(self) -> tuple[np.ndarray, np.ndarray]: ...

    @abstractmethod
    def get_observation(self) -> dict[str, np.ndarray]: ...

    @abstractmethod
    def send_action(self, action: np.ndarray) -> np.ndarray: ...

    #: optional forward kinematics used by end-effector teleoperation (see recorder.devices.kinematics)
    kinematics = None

    @property
    def observation_features(self) -> dict:
        return {
            "observation.state": {
                "shape": (len(self.joint_names),),
                "dtype": "float32",
                "names": list(self.joint_names),
            }
        }

    @property
    def action_features(self) -> dict:
        return {
            "action": {"shape": (len(self.joint_names),), "dtype": "float32", "names": list(self.joint_names)}
        }

    def clip_action(self, action: np.ndarray) -> np.ndarray:
        a = np.asarray(action, dtype=np.float32).reshape(-1)
        if a.shape[0] != len(self.joint_names):
            raise DeviceError(
                f"{self.describe()}: action has {a.shape[0]} values, expected {len(self.joint_names)} "
                f"({', '.join(self.joint_names)})"
            )
        lo, hi = self.joint_limits
        return np.clip(a, lo, hi).astype(np.float32)


class Teleoperator(_Device):
    """Produces goal joint positions for a robot from a person (or a script)."""

    @abstractmethod
    def get_action(self, observation: dict[str, np.ndarray]) -> np.ndarray: ...

    @property
    def action_features(self) -> dict:
        names = getattr(self, "joint_names", JOINT_NAMES)
        return {"action": {"shape": (len(names),), "dtype": "float32", "names": list(names)}}


class SimpleTeleoperator(Teleoperator):
    """A teleoperator with no device handle of its own (keyboard, scripted): connect just flips a flag."""

    def __init__(self) -> None:
        self._connected = False

    @property
    def is_connected(self) -> bool:
        return self._connected

    def connect(self) -> None:
        self._connected = True

    def disconnect(self) -> None:
        self._connected = False
