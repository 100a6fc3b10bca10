"""Test doubles for the record loop and session (never imported by production code)."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

import numpy as np

from recorder.errors import DeviceError, DeviceNotConnectedError

JOINTS6 = ["shoulder_pan", "shoulder_lift", "elbow_flex", "wrist_flex", "wrist_roll", "gripper"]


@dataclass
class Packet:
    image: np.ndarray
    timestamp: float
    index: int
    depth: np.ndarray | None = None


class ThreadCamera:
    """A camera with its own capture thread producing numbered frames at ``fps``."""

    def __init__(self, name="front", width=64, height=48, fps=30.0) -> None:
        self.name, self.width, self.height, self.fps = name, width, height, fps
        self.channels, self.has_depth = 3, False
        self._lock = threading.Lock()
        self._latest: Packet | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()

    @property
    def is_connected(self) -> bool:
        return self._thread is not None

    @property
    def features(self):
        return {"shape": (self.height, self.width, 3), "dtype": "uint8", "fps": self.fps}

    def connect(self) -> None:
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def disconnect(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self._thread = None

    def _run(self) -> None:
        i = 0
        period = 1.0 / self.fps
        nxt = time.monotonic()
        while not self._stop.is_set():
            img = np.full((self.height, self.width, 3), i % 256, dtype=np.uint8)
            pkt = Packet(img, time.monotonic(), i)
            with self._lock:
                self._latest = pkt
            self._ready.set()
            i += 1
            nxt += period
            self._stop.wait(max(0.0, nxt - time.monotonic()))

    def read_latest(self, timeout: float = 1.0) -> Packet:
        if self._thread is None:
            raise DeviceNotConnectedError(f"camera '{self.name}' is not connected: connect the rig first")
        if not self._ready.wait(timeout):
            raise DeviceError(f"camera '{self.name}' gave no frame in {timeout} s")
        with self._lock:
            return self._latest


class OnDemandCamera(ThreadCamera):
    """Produces a new frame on every read (never stale)."""

    def connect(self) -> None:
        self._i = 0
        self._thread = True  # type: ignore[assignment]

    def disconnect(self) -> None:
        self._thread = None

    def read_latest(self, timeout: float = 1.0) -> Packet:
        if self._thread is None:
            raise DeviceNotConnectedError(f"camera '{self.name}' is not connected")
        img = np.full((self.height, self.width, 3), self._i % 256, dtype=np.uint8)
        pkt = Packet(img, time.monotonic(), self._i)
        self._i += 1
        return pkt


class FailingCamera(OnDemandCamera):
    """Raises DeviceError (as an unplugged camera does) after ``fail_after`` frames."""

    def __init__(self, *a, fail_after: int = 10, **kw) -> None:
        super().__init__(*a, **kw)
        self.fail_after = fail_after

    def read_latest(self, timeout: float = 1.0) -> Packet:
        if self._thread is not None and self._i >= self.fail_after:
            raise DeviceError(f"camera '{self.name}' disconnected: check its USB cable")
        return super().read_latest(timeout)


class FakeRobot:
    def __init__(self, n_joints: int = 6, name: str = "fake") -> None:
        self.name = name
        self.joint_names = JOINTS6 if n_joints == 6 else [f"joint_{i}" for i in range(n_joints)]
        self.joint_limits = (np.full(n_joints, -180.0, np.float32), np.full(n_joints, 180.0, np.float32))
        self.q = np.zeros(n_joints, np.float32)
        self.sent: list[np.ndarray] = []
        self.is_connected = False
        self.fail_after_sends: int | None = None

    @property
    def observation_features(self):
        return {"observation.state": {"shape": (len(self.q),), "dtype": "float32", "names": self.joint_names}}

    @property
    def action_features(self):
        return {"action": {"shape": (len(self.q),), "dtype": "float32", "names": self.joint_names}}

    def connect(self) -> None:
        self.is_connected = True

    def disconnect(self) -> None:
        self.is_connected = False

    def get_observation(self):
        return {"observation.state": self.q.copy()}

    def send_action(self, action):
        if self.fail_after_sends is not None and len(self.sent) >= self.fail_after_sends:
            raise DeviceError(f"arm '{self.name}' stopped answering: check power and the serial cable")
        a = np.clip(np.asarray(action, np.float32), *self.joint_limits)
        self.sent.append(a)
        self.q = a.copy()
        return a


class RampTeleop:
    """Moves every joint by +0.5 per call."""

    is_connected = True

    def __init__(self) -> None:
        self.calls = 0

    def connect(self) -> None:
        pass

    def disconnect(self) -> None:
        pass

    def get_action(self, observation):
        self.calls += 1
        return observation["observation.state"] + 0.5


@dataclass
class FakeRig:
    robot: FakeRobot
    cameras: dict
    teleop: object = None

    def connect(self) -> None:
        self.robot.connect()
        for c in self.cameras.values():
            c.connect()

    def disconnect(self) -> None:
        for c in self.cameras.values():
            c.disconnect()
        self.robot.disconnect()

    def snapshot(self) -> dict:
        return {"robot": self.robot.name, "cameras": {n: [c.width, c.height] for n, c in self.cameras.items()}}


@dataclass
class Stats:
    ticks: int = 0
    frames_written: dict = field(default_factory=dict)
    frames_dropped: dict = field(default_factory=dict)
    queue_depth: dict = field(default_factory=dict)


class MemoryWriter:
    """Keeps every tick in memory; can drop frames or fail with ENOSPC after N ticks."""

    def __init__(self, drop_every: int = 0, enospc_after: int | None = None) -> None:
        self.ticks: list[dict] = []
        self.segments: list[tuple[str, int, int]] = []
        self.stats = Stats()
        self.drop_every = drop_every
        self.enospc_after = enospc_after
        self.finished = None
        self.discarded = False

    def add_tick(self, t, frames, timestamps, values, stale=None):
        import errno

        if self.enospc_after is not None and len(self.ticks) >= self.enospc_after:
            raise OSError(errno.ENOSPC, "No space left on device")
        self.ticks.append({"t": t, "frames": frames, "timestamps": timestamps, "values": values, "stale": stale})
        self.stats.ticks += 1
        for n in frames:
            if self.drop_every and len(self.ticks) % self.drop_every == 0:
                self.stats.frames_dropped[n] = self.stats.frames_dropped.get(n, 0) + 1
            else:
                self.stats.frames_written[n] = self.stats.frames_written.get(n, 0) + 1

    def mark_segment(self, kind, start_tick, end_tick):
        self.segments.append((kind, start_tick, end_tick))

    def finish(self, success=None, notes=""):
        self.finished = {"success": success, "notes": notes}
        return self.finished

    def discard(self):
        self.discarded = True


def fake_rig(cameras=("front",), camera_cls=OnDemandCamera, n_joints=6, width=64, height=48, **cam_kw):
    cams = {n: camera_cls(name=n, width=width, height=height, **cam_kw) for n in cameras}
    return FakeRig(robot=FakeRobot(n_joints), cameras=cams, teleop=RampTeleop())


@dataclass
class _Info:
    id: int
    dataset: str
    task: str
    num_frames: int
    duration_s: float
    status: str
    success: object
    notes: str
    dropped: dict
    source: str = "teleop"


@dataclass
class _Dataset:
    name: str
    features: dict | None


class MemoryStore:
    """Just enough of recorder.store.Store for the session state machine."""

    def __init__(self) -> None:
        self._datasets: dict[str, _Dataset] = {}
        self.episodes_: dict[int, _Info] = {}
        self.writers: list[MemoryWriter] = []
        self.begun: list[dict] = []
        self.enospc_after: int | None = None

    def datasets(self):
        return list(self._datasets.values())

    def get_or_create_dataset(self, name, features=None):
        return self._datasets.setdefault(name, _Dataset(name, features))

    def begin_episode(self, **kw):
        store = self
        store.begun.append(kw)

        class W(MemoryWriter):
            def finish(self, success=None, notes=""):
                info = _Info(len(store.episodes_) + 1, kw["dataset"], kw["task"], len(self.ticks), len(self.ticks) / kw["fps"],
                             "complete", success, notes, dict(self.stats.frames_dropped), kw["source"])
                store.episodes_[info.id] = info
                self.finished = info
                return info

        w = W(enospc_after=self.enospc_after)
        self.writers.append(w)
        return w

    def update_episode(self, episode_id, **kw):
        info = self.episodes_[episode_id]
        for k, v in kw.items():
            setattr(info, k, v)
        return info

    def episode(self, episode_id):
        return self.episodes_[episode_id]

    def episodes(self, status=("complete", "recovered"), **_):
        return [e for e in self.episodes_.values() if e.status in status]


def pattern_rig(cameras=("front", "wrist"), width=320, height=240, fps=30.0, n_joints=6):
    """Real test-pattern cameras (a product feature) with the fake arm and a ramp teleop."""
    from recorder.devices.configs import TestPatternCameraConfig
    from recorder.devices.test_pattern import TestPatternCamera

    cams = {n: TestPatternCamera(TestPatternCameraConfig(width=width, height=height, fps=fps), name=n) for n in cameras}
    return FakeRig(robot=FakeRobot(n_joints), cameras=cams, teleop=RampTeleop())
