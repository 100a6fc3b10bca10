"""The simulated SO-101-shaped arm on a tabletop (MuJoCo), with seeded resets and task success detectors.

Physics stepping: there is no physics thread. In ``realtime`` mode (the default) the simulation is
advanced *by elapsed wall time* (``time.monotonic()``) whenever anyone looks at it or drives it:
``get_observation``, ``send_action`` and each sim camera's render thread call :meth:`SimRobot.sync`,
which steps the physics up to "now" in fixed ``timestep`` increments (a stall longer than
``max_catch_up_s`` pauses the sim instead of fast-forwarding). This keeps physics independent of the
render rate and costs no thread. With ``realtime = False`` only :meth:`step_physics` advances time,
which is what scripted-expert tests and data generation use (no rendering, no waiting).

All MuJoCo state is guarded by one lock; renderers copy the scene under it and rasterize outside it.
"""

from __future__ import annotations

import math
import os
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from recorder.devices.base import JOINT_NAMES, Robot
from recorder.devices.configs import SimRobotConfig
from recorder.devices.kinematics import SO101_SIM
from recorder.errors import ConfigError, DeviceError

ASSETS = Path(__file__).resolve().parents[3] / "assets" / "sim"
SCENE_XML = ASSETS / "tabletop.xml"

HOME_POSE = np.array([0.0, 0.0, 10.0, 80.0, 0.0, 100.0], dtype=np.float32)
FINGER_MIN, FINGER_MAX = 0.006, 0.032  # finger slide range (m) <-> gripper 0..100
CUBE_HALF = 0.015
TARGET_HALF = 0.035
TABLE_Z = 0.0


def _mujoco():
    if "mujoco" not in sys.modules:
        # `import mujoco` loads the GL library MUJOCO_GL names: choose (and check) it first
        from recorder.devices.sim.camera import gl_backend

        gl_backend()
    os.environ.setdefault("MUJOCO_GL", "egl")
    try:
        import mujoco
    except ImportError as err:
        raise ConfigError("the sim rig needs MuJoCo: pip install 'vla-studio[sim]' (mujoco)") from err
    return mujoco


@dataclass
class SimTask:
    """A sim task: its name, the instruction given to the policy, and a success detector."""

    name: str
    instruction: str
    robot: SimRobot

    def success(self) -> bool:
        r = self.robot
        with r._lock:
            cube = r.cube_position()
            if self.name == "pick":
                lifted = cube[2] - CUBE_HALF - TABLE_Z > 0.05
                return bool(lifted and r.is_grasped())
            if self.name == "push":
                t = r.target_position()
                return bool(
                    abs(cube[0] - t[0]) <= TARGET_HALF
                    and abs(cube[1] - t[1]) <= TARGET_HALF
                    and cube[2] < CUBE_HALF + 0.01
                )
        return False


TASKS = {
    "pick": "pick up the red cube",
    "push": "push the red cube onto the green square",
}


class SimRobot(Robot):
    """Simulated arm. See the module docstring for how physics time advances."""

    def __init__(self, cfg: SimRobotConfig | None = None) -> None:
        cfg = cfg or SimRobotConfig()
        if cfg.task not in TASKS:
            raise ConfigError(f"sim robot: unknown task '{cfg.task}': use one of {', '.join(TASKS)}")
        self.cfg = cfg
        self.name = cfg.id or "sim"
        self.joint_names = list(JOINT_NAMES)
        self.kinematics = SO101_SIM
        mj = _mujoco()
        self._mj = mj
        try:
            self.model = mj.MjModel.from_xml_path(str(SCENE_XML))
        except Exception as err:  # noqa: BLE001
            raise DeviceError(f"sim scene {SCENE_XML} failed to load ({err}): reinstall vla-studio") from err
        self.model.opt.timestep = cfg.timestep
        self.data = mj.MjData(self.model)
        self._lock = threading.RLock()
        self._connected = False
        self._t_last = 0.0
        self.task = SimTask(cfg.task, TASKS[cfg.task], self)
        self.last_seed: int | None = None
        self.camera_sizes: dict[str, tuple[int, int]] = {}  # set by the sim cameras of the rig
        self.camera_aliases: dict[str, str] = {}  # rig camera name -> scene camera name
        m = self.model
        self._qadr = [int(m.joint(n).qposadr[0]) for n in JOINT_NAMES]
        self._dadr = [int(m.joint(n).dofadr[0]) for n in JOINT_NAMES]
        self._cube_q = int(m.joint("cube").qposadr[0])
        self._cube_body = m.body("cube").id
        self._target_mocap = int(m.body("target").mocapid[0])
        self._tool_site = m.site("tool").id
        self._finger_geoms = {m.geom("finger_left").id, m.geom("finger_right").id}
        self._cube_geom = m.geom("cube").id
        self._mirror_q = int(m.joint("gripper_mirror").qposadr[0])
        lo = np.degrees(m.jnt_range[[m.joint(n).id for n in JOINT_NAMES[:5]], 0])
        hi = np.degrees(m.jnt_range[[m.joint(n).id for n in JOINT_NAMES[:5]], 1])
        self._limits = (np.append(lo, 0.0).astype(np.float32), np.append(hi, 100.0).astype(np.float32))
        self.reset(cfg.seed)

    # ------------------------------------------------------------------ Robot API
    @property
    def joint_limits(self) -> tuple[np.ndarray, np.ndarray]:
        return self._limits[0].copy(), self._limits[1].copy()

    @property
    def is_connected(self) -> bool:
        return self._connected

    def connect(self) -> None:
        self._t_last = time.monotonic()
        self._connected = True

    def disconnect(self) -> None:
        self._connected = False

    def describe(self) -> str:
        return f"sim robot '{self.name}' (task {self.task.name})"

    def get_observation(self) -> dict[str, np.ndarray]:
        self._require_connected()
        self.sync()
        with self._lock:
            return {"observation.state": self._joint_state()}

    def send_action(self, action: np.ndarray) -> np.ndarray:
        self._require_connected()
        a = self.clip_action(action)
        self.sync()
        with self._lock:
            self._set_ctrl(a)
        return a

    # ------------------------------------------------------------------ sim API
    def reset(self, seed: int | None = None) -> None:
        """Arm to its home pose, cube and target square at seeded random poses."""
        mj = self._mj
        if seed is None:
            seed = int(np.random.SeedSequence().entropy % (2**31))
        self.last_seed = int(seed)
        rng = np.random.default_rng(seed)
        with self._lock:
            mj.mj_resetData(self.model, self.data)
            self._set_joints(HOME_POSE)
            self._set_ctrl(HOME_POSE)
            cube_xy, yaw, target_xy = _sample_layout(rng, self.task.name)
            q = self._cube_q
            self.data.qpos[q : q + 3] = [cube_xy[0], cube_xy[1], CUBE_HALF + TABLE_Z]
            self.data.qpos[q + 3 : q + 7] = [math.cos(yaw / 2), 0.0, 0.0, math.sin(yaw / 2)]
            self.data.mocap_pos[self._target_mocap] = [target_xy[0], target_xy[1], TABLE_Z]
            mj.mj_forward(self.model, self.data)
            self._t_last = time.monotonic()

    def step_physics(self, dt: float) -> None:
        """Advance the simulation by ``dt`` seconds (whole physics steps)."""
        n = max(0, int(round(dt / self.model.opt.timestep)))
        with self._lock:
            self._mj.mj_step(self.model, self.data, nstep=n) if n else None

    def sync(self) -> None:
        """Realtime mode: step the physics up to time.monotonic(). No-op otherwise."""
        if not self.cfg.realtime or not self._connected:
            return
        with self._lock:
            now = time.monotonic()
            elapsed = now - self._t_last
            if elapsed > self.cfg.max_catch_up_s:
                self._t_last = now - self.cfg.max_catch_up_s
                elapsed = self.cfg.max_catch_up_s
            ts = self.model.opt.timestep
            n = int(elapsed / ts)
            if n > 0:
                self._mj.mj_step(self.model, self.data, nstep=n)
                self._t_last += n * ts

    def ee_position(self) -> np.ndarray:
        with self._lock:
            return self.data.site_xpos[self._tool_site].copy()

    def forward_kinematics(self, q) -> np.ndarray:
        """Tool point (world, metres) for joint positions in degrees (the first four joints matter)."""
        return self.kinematics.forward(q)

    def cube_position(self) -> np.ndarray:
        with self._lock:
            return self.data.xpos[self._cube_body].copy()

    def cube_yaw(self) -> float:
        """Cube yaw in degrees."""
        with self._lock:
            w, x, y, z = self.data.xquat[self._cube_body]
        return math.degrees(math.atan2(2 * (w * z + x * y), 1 - 2 * (y * y + z * z)))

    def target_position(self) -> np.ndarray:
        with self._lock:
            return self.data.mocap_pos[self._target_mocap].copy()

    def is_grasped(self) -> bool:
        """Both fingers touch the cube."""
        touching = set()
        with self._lock:
            d = self.data
            for i in range(d.ncon):
                c = d.contact[i]
                g1, g2 = int(c.geom1), int(c.geom2)
                if g1 == self._cube_geom and g2 in self._finger_geoms:
                    touching.add(g2)
                elif g2 == self._cube_geom and g1 in self._finger_geoms:
                    touching.add(g1)
        return len(touching) == 2

    def project(self, points, camera: str, width: int | None = None, height: int | None = None) -> np.ndarray:
        """Pinhole projection of world points (N,3) into pixel coordinates (N,2) of a sim camera.

        Continuous coordinates: pixel (i, j) covers [i, i+1) x [j, j+1), so its centre is (i+0.5, j+0.5).
        Points behind the camera come back as NaN. ``camera`` is a scene camera ("front", "wrist") or the
        name a rig gave a sim camera; the size defaults to that camera's configured size (else 320x240).
        """
        w, h = width, height
        if w is None or h is None:
            w, h = self.camera_sizes.get(camera, (320, 240))
        m = self.model
        try:
            cid = m.camera(self.camera_aliases.get(camera, camera)).id
        except KeyError:
            raise ConfigError(f"sim has no camera '{camera}': use one of front, wrist") from None
        with self._lock:
            pos = self.data.cam_xpos[cid].copy()
            mat = self.data.cam_xmat[cid].reshape(3, 3).copy()
        fovy = math.radians(float(m.cam_fovy[cid]))
        f = 0.5 * h / math.tan(fovy / 2)
        p = np.atleast_2d(np.asarray(points, dtype=np.float64)) - pos
        pc = p @ mat  # camera frame: x right, y up, -z forward
        depth = -pc[:, 2]
        with np.errstate(divide="ignore", invalid="ignore"):
            u = w / 2 + f * pc[:, 0] / depth
            v = h / 2 - f * pc[:, 1] / depth
        out = np.stack([u, v], axis=1)
        out[depth <= 1e-6] = np.nan
        return out

    # ------------------------------------------------------------------ internals
    def _joint_state(self) -> np.ndarray:
        q = self.data.qpos[self._qadr]
        out = np.empty(6, dtype=np.float32)
        out[:5] = np.degrees(q[:5])
        out[5] = (q[5] - FINGER_MIN) / (FINGER_MAX - FINGER_MIN) * 100.0
        return out

    def _set_ctrl(self, a) -> None:
        a = np.asarray(a, dtype=np.float64)
        self.data.ctrl[:5] = np.radians(a[:5])
        self.data.ctrl[5] = FINGER_MIN + np.clip(a[5], 0, 100) / 100.0 * (FINGER_MAX - FINGER_MIN)

    def _set_joints(self, a) -> None:
        a = np.asarray(a, dtype=np.float64)
        self.data.qpos[self._qadr[:5]] = np.radians(a[:5])
        finger = FINGER_MIN + a[5] / 100.0 * (FINGER_MAX - FINGER_MIN)
        self.data.qpos[self._qadr[5]] = finger
        self.data.qpos[self._mirror_q] = finger
        self.data.qvel[:] = 0.0


def _sample_layout(rng: np.random.Generator, task: str):
    """Cube (x, y), cube yaw (radians) and target-square (x, y), reachable and not overlapping."""
    for _ in range(1000):
        cube = np.array([rng.uniform(0.16, 0.22), rng.uniform(-0.07, 0.07)])
        yaw = rng.uniform(-math.pi / 6, math.pi / 6)
        if task == "push":
            ang = rng.uniform(-math.pi, math.pi)
            dist = rng.uniform(0.07, 0.10)
        else:
            ang = rng.uniform(-math.pi, math.pi)
            dist = rng.uniform(0.09, 0.14)
        target = cube + dist * np.array([math.cos(ang), math.sin(ang)])
        if not (0.14 <= target[0] <= 0.25 and abs(target[1]) <= 0.11):
            continue
        if task == "push":
            # the pusher must be able to get behind the cube
            u = (target - cube) / np.linalg.norm(target - cube)
            pre = cube - u * 0.055
            if not (0.12 <= np.hypot(*pre) <= 0.26):
                continue
        return cube, yaw, target
    raise DeviceError("sim: could not sample a start layout")  # pragma: no cover
