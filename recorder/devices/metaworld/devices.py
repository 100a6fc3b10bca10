"""The Meta-World rig: a Sawyer robot whose episodes run one task of a task list, its cameras, its experts.

Time advances by env steps, not by the wall clock: each ``send_action`` is one Meta-World step (80 Hz in
LeRobot's protocol); a camera renders the state after each step on its own thread (GL contexts are
thread-affine) and ``read_latest`` waits for the frame of the newest step, so the loop always sees the
observation that the action is taken from, as the env would return it. Each reset picks the task from the
seed (seeds walk the list in turn) and re-randomises the objects from it; the episode's instruction is the
task's. ``done`` is set once the episode has used its 500 steps, so the record and rollout loops end it.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

import numpy as np

from recorder.devices.base import Camera, FramePacket, Robot, SimpleTeleoperator
from recorder.devices.configs import MetaWorldCameraConfig, MetaWorldRobotConfig, ScriptedTeleopConfig
from recorder.devices.metaworld.env import ACTION_NAMES, MetaWorldSim, SceneRenderer
from recorder.errors import ConfigError, DeviceError, DeviceNotConnectedError, DeviceTimeoutError

CAMERAS = ("corner2", "corner", "corner3", "corner4", "topview", "behindGripper", "gripperPOV")


@dataclass
class MetaWorldTask:
    """The current episode's task: name, instruction, success so far (any step succeeded)."""

    name: str
    instruction: str
    robot: MetaWorldRobot

    def success(self) -> bool:
        return bool(self.robot.sim.succeeded)


class MetaWorldRobot(Robot):
    """Meta-World's Sawyer arm. State: end-effector xyz + gripper; action: 4 values in [-1, 1]."""

    action_is_delta = True  # actions are end-effector velocities, not goal positions (see SafetyLayer.for_robot)
    instruction_per_episode = True  # each reset may pick another task: the loop takes the instruction from it
    success_hold_ticks = 1  # a scripted demo ends at the first successful step (LeRobot terminates there)
    lerobot_image_key = "observation.image"  # lerobot/metaworld_mt50's one camera feature (LeRobot export)
    lerobot_feature_names = {"observation.state": ACTION_NAMES, "action": ACTION_NAMES}  # not "<joint>.pos"

    def __init__(self, cfg: MetaWorldRobotConfig | None = None) -> None:
        cfg = cfg or MetaWorldRobotConfig()
        self.cfg = cfg
        self.name = cfg.id or "metaworld"
        self.joint_names = list(ACTION_NAMES)  # names state and action alike: x, y, z, gripper
        self.sim = MetaWorldSim(cfg.tasks, max_steps=cfg.max_steps)
        self._lock = threading.RLock()
        self.changed = threading.Condition(self._lock)
        self.version = 0  # bumped by every step and reset: cameras render each version once
        self._connected = False
        self.task: MetaWorldTask | None = None
        self.last_seed: int | None = None
        self.reset(cfg.seed)
        self._turn = 0  # resets without a seed walk the task list in turn, from its first task

    @property
    def tasks(self) -> list[str]:
        return list(self.sim.tasks)

    # ------------------------------------------------------------------ Robot API
    @property
    def joint_limits(self) -> tuple[np.ndarray, np.ndarray]:
        return np.full(4, -1.0, np.float32), np.full(4, 1.0, np.float32)

    @property
    def is_connected(self) -> bool:
        return self._connected

    def connect(self) -> None:
        self._connected = True

    def disconnect(self) -> None:
        self._connected = False
        with self.changed:
            self.changed.notify_all()

    def describe(self) -> str:
        task = self.task.name if self.task else "-"
        return f"Meta-World robot '{self.name}' (task {task}, {len(self.sim.tasks)} in the list)"

    def get_observation(self) -> dict[str, np.ndarray]:
        self._require_connected()
        with self._lock:
            return {"observation.state": self.sim.state}

    def send_action(self, action: np.ndarray) -> np.ndarray:
        self._require_connected()
        a = self.clip_action(action)
        with self.changed:
            self.sim.step(a)
            self.version += 1
            self.changed.notify_all()
        return a

    # ------------------------------------------------------------------ episodes
    def reset(self, seed: int | None = None, task: str | None = None) -> None:
        """A new episode: the task from the seed (or ``task``), objects re-randomised from the seed. Without a
        seed: the next task of the list in turn, at a random layout."""
        if seed is None:
            seed = int(np.random.SeedSequence().entropy % (2**31))
            if task is None:
                turn = getattr(self, "_turn", 0)
                task = self.sim.tasks[turn % len(self.sim.tasks)]
                self._turn = turn + 1
        with self.changed:
            self.sim.reset(int(seed), task)
            self.last_seed = int(seed)
            self.task = MetaWorldTask(self.sim.task, self.sim.instruction, self)
            self.version += 1
            self.changed.notify_all()

    @property
    def done(self) -> bool:
        """The episode has used its steps (500 in the benchmark)."""
        return self.sim.done

    @property
    def steps(self) -> int:
        return self.sim.steps

    def ee_position(self) -> np.ndarray:
        with self._lock:
            return self.sim.obs[:3].copy()

    def close(self) -> None:
        self.sim.close()


class MetaWorldCamera(Camera):
    """A Meta-World scene camera rendered after every step, at the model's input size (224x224 default)."""

    def __init__(self, cfg: MetaWorldCameraConfig, robot: MetaWorldRobot, name: str | None = None) -> None:
        if cfg.camera not in CAMERAS:
            raise ConfigError(f"Meta-World camera '{name or cfg.camera}': no camera '{cfg.camera}' in the scene: "
                              f"use one of {', '.join(CAMERAS)} (the benchmark uses corner2)")
        self.cfg = cfg
        self.name = name or cfg.camera
        self.width, self.height, self.fps = int(cfg.width), int(cfg.height), float(cfg.fps)
        self.robot = robot
        self._cond = threading.Condition()
        self._latest: FramePacket | None = None
        self._latest_version = -1
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._error: BaseException | None = None
        self._count = 0

    def describe(self) -> str:
        return f"Meta-World camera '{self.name}' ({self.cfg.camera}, {self.width}x{self.height})"

    @property
    def is_connected(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def connect(self) -> None:
        if self.is_connected:
            return
        self._stop.clear()
        self._error = None
        self._latest, self._latest_version = None, -1
        self._thread = threading.Thread(target=self._run, name=f"camera-{self.name}", daemon=True)
        self._thread.start()
        try:
            self.read_latest(timeout=max(self.cfg.connect_timeout_s, 10.0))
        except DeviceError:
            self.disconnect()
            raise

    def disconnect(self) -> None:
        self._stop.set()
        with self.robot.changed:
            self.robot.changed.notify_all()
        t = self._thread
        if t is not None and t is not threading.current_thread():
            t.join(timeout=5.0)
        self._thread = None

    def read_latest(self, timeout: float = 1.0) -> FramePacket:
        """The frame of the newest step (waits up to ``timeout`` for it to be rendered)."""
        if self._thread is None:
            raise DeviceNotConnectedError(f"camera '{self.name}' is not connected: call connect() first")
        deadline = time.monotonic() + timeout
        with self._cond:
            while self._error is None and (self._latest is None or self._latest_version != self.robot.version):
                left = deadline - time.monotonic()
                if left <= 0:
                    if self._latest is not None:
                        return self._latest  # a slow render: the previous step's frame (counted as stale)
                    raise DeviceTimeoutError(f"camera '{self.name}' rendered no frame within {timeout:g} s")
                self._cond.wait(min(left, 0.05))
            if self._error is not None:
                raise DeviceError(f"camera '{self.name}' stopped: {self._error}")
            return self._latest

    def _run(self) -> None:
        r = self.robot
        renderer = None
        try:
            renderer = SceneRenderer(self.width, self.height, shadows=self.cfg.shadows,
                                     shadow_size=self.cfg.shadow_size)
            while not self._stop.is_set():
                with r.changed:
                    while r.version == self._latest_version and not self._stop.is_set():
                        r.changed.wait(0.1)
                    if self._stop.is_set():
                        break
                    version = r.version
                    renderer.update(r.sim.model, r.sim.data, self.cfg.camera)
                    t = time.monotonic()
                image = renderer.draw()
                with self._cond:
                    self._latest = FramePacket(image=image, timestamp=t, index=self._count)
                    self._latest_version = version
                    self._count += 1
                    self._cond.notify_all()
        except BaseException as err:  # noqa: BLE001 - reported by read_latest
            with self._cond:
                self._error = err
                self._cond.notify_all()
        finally:
            if renderer is not None:
                try:
                    renderer.close()
                except Exception:  # noqa: BLE001
                    pass


class MetaWorldExpert(SimpleTeleoperator):
    """Meta-World's scripted policy for the current task, as a teleoperator (``--scripted`` recording)."""

    scripted = True  # no person: the record session lets it act only while an episode is recorded

    def __init__(self, robot: MetaWorldRobot, cfg: ScriptedTeleopConfig | None = None) -> None:
        super().__init__()
        self.robot = robot
        self.cfg = cfg or ScriptedTeleopConfig(fps=80.0)
        self.joint_names = list(ACTION_NAMES)
        self.name = "scripted-metaworld"
        self._rng = np.random.default_rng(self.cfg.seed)

    def describe(self) -> str:
        return f"Meta-World scripted expert ({self.robot.task.name if self.robot.task else '-'})"

    def reset(self) -> None:
        pass  # the scripted policies keep no state: each action comes from the observation alone

    @property
    def done(self) -> bool:
        return self.robot.done

    def get_action(self, observation: dict[str, np.ndarray]) -> np.ndarray:
        with self.robot._lock:
            a = self.robot.sim.expert_action()
        if self.cfg.noise_deg > 0:  # noise in action units here (the config's name is the sim arm's)
            a = np.clip(a + self._rng.normal(0.0, self.cfg.noise_deg, 4).astype(np.float32), -1.0, 1.0)
        return a
