"""Small test doubles for the rollout tests: a policy that returns a fixed chunk, a planar robot.

Production code never imports this module.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

import numpy as np

JOINTS = ["shoulder_pan", "shoulder_lift", "elbow_flex", "wrist_flex", "wrist_roll", "gripper"]


@dataclass
class FakeOutput:
    actions: np.ndarray
    confidence: np.ndarray | None
    latency_s: float


class FixedChunkPolicy:
    """Returns ``state + offsets`` (K, D): a chunk that walks away from the current state.

    ``delay_s`` simulates a slow model. Every call is recorded in ``calls``.
    """

    def __init__(self, chunk_size=4, action_dim=6, step=1.0, delay_s=0.0, camera_names=("front",),
                 checkpoint_id="double/1"):
        self.chunk_size = chunk_size
        self.action_dim = action_dim
        self.camera_names = list(camera_names)
        self.checkpoint_id = checkpoint_id
        self.checkpoint_label = None  # recorder.policy.Policy: no run/step, no folder, no head said
        self.checkpoint_dir = None
        self.action_head = None
        self.step = step
        self.delay_s = delay_s
        self.calls: list[tuple[np.ndarray, str]] = []
        self._lock = threading.Lock()

    def predict(self, images, state, instruction):
        t0 = time.monotonic()
        if self.delay_s:
            time.sleep(self.delay_s)
        state = np.zeros(self.action_dim, np.float32) if state is None else np.asarray(state, np.float32)
        with self._lock:
            self.calls.append((state.copy(), instruction))
        offsets = self.step * np.arange(1, self.chunk_size + 1, dtype=np.float32)[:, None]
        actions = state[None, :] + offsets * np.ones((1, self.action_dim), np.float32)
        conf = np.linspace(1.0, 0.5, self.chunk_size).astype(np.float32)
        return FakeOutput(actions=actions.astype(np.float32), confidence=conf, latency_s=time.monotonic() - t0)


class RampPolicy(FixedChunkPolicy):
    """Chunk row j for a call made at observation value s is s + j (used to check ensembling)."""


class FakeRobot:
    """A 6-joint arm that reaches its goal in one tick; records every command."""

    name = "fake"
    joint_names = JOINTS

    def __init__(self):
        self.q = np.zeros(6, np.float32)
        self.sent: list[tuple[float, np.ndarray]] = []
        self.joint_limits = (np.array([-100, -100, -100, -100, -150, 0], np.float32),
                             np.array([100, 100, 100, 100, 150, 100], np.float32))
        self.is_connected = True

    def get_observation(self):
        return {"observation.state": self.q.copy()}

    def send_action(self, action):
        action = np.asarray(action, np.float32)
        self.sent.append((time.monotonic(), action.copy()))
        self.q = action.copy()
        return action

    def forward_kinematics(self, q):
        # a toy FK: the end effector x = first joint / 100, y = second / 100, z = 0.1
        q = np.asarray(q, np.float64)
        return np.array([q[0] / 100.0, q[1] / 100.0, 0.1])


class FakeTeleop:
    def __init__(self, value=50.0):
        self.value = value

    def get_action(self, observation):
        return np.full(6, self.value, np.float32)


class OnDemandCamera:
    """A camera whose every read is a fresh, numbered frame."""

    def __init__(self, name="front", width=32, height=24):
        self.name, self.width, self.height = name, width, height
        self.i = 0

    def read_latest(self, timeout=1.0):
        from recorder.devices.base import FramePacket

        self.i += 1
        return FramePacket(image=np.full((self.height, self.width, 3), self.i % 256, np.uint8),
                           timestamp=time.monotonic(), index=self.i)


class FakeRig:
    def __init__(self, robot=None, cameras=("front",), teleop=None):
        self.robot = robot or FakeRobot()
        self.cameras = {c: OnDemandCamera(c) for c in cameras}
        self.teleop = teleop

    def snapshot(self):
        return {"name": "fake"}


class MemoryWriter:
    """An episode writer that keeps everything in memory."""

    def __init__(self):
        self.values: list[dict] = []
        self.segments: list[tuple] = []
        self.finished = None

    def add_tick(self, t=None, frames=None, timestamps=None, values=None, stale=None):
        self.values.append({k: np.array(v) for k, v in (values or {}).items()})

    def mark_segment(self, kind, start_tick, end_tick=None, **extra):
        self.segments.append((kind, start_tick, end_tick))

    @property
    def stats(self):
        return None

    def column(self, name):
        return np.stack([v[name] for v in self.values])
