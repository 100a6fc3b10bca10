"""Meta-World tasks under LeRobot's evaluation protocol (no Qt, no torch); the rig devices and
``bench/metaworld.py`` both drive episodes through :class:`MetaWorldSim`.

The protocol, as LeRobot's ``envs/metaworld.py`` sets it up:

- one env per task, built like ``metaworld.MT1(task, seed=42)`` + ``set_task(train_tasks[0])``, then object
  and goal positions re-randomised at every reset from the reset's seed (``_freeze_rand_vec = False``,
  ``seeded_rand_vec = True``, ``env.seed(seed)``);
- camera ``corner2`` moved to (0.75, 0.075, 0.7) and its image turned by 180 degrees (both axes flipped);
- state = the first 4 entries of the observation (end-effector xyz, gripper opening); action = 4 values in
  [-1, 1] (end-effector delta xyz, gripper); at most 500 steps; the episode succeeds if any step succeeds.

Meta-World 3.1 needs MuJoCo 3.3.0 (``pip install 'vla-studio[sim]'`` pins both).
"""

from __future__ import annotations

import sys
import warnings

import numpy as np

from recorder.devices.metaworld.tasks import instruction, resolve_tasks
from recorder.errors import ConfigError, DeviceError

MAX_STEPS = 500  # Meta-World's max_path_length for every task
FPS = 80.0  # LeRobot's control rate for Meta-World (frame_skip 5 x 2.5 ms)
CORNER2_POS = (0.75, 0.075, 0.7)
MT1_SEED = 42
# state: end-effector position (m) and gripper opening (0..1); action: their deltas. Names as lerobot/metaworld_mt50
ACTION_NAMES = ["x", "y", "z", "gripper"]


def import_metaworld():
    """``metaworld`` (and mujoco, with the GL backend chosen first), or a ConfigError saying what to install."""
    if "mujoco" not in sys.modules:
        from recorder.devices.sim.camera import gl_backend

        gl_backend()
    try:
        import metaworld
        import metaworld.policies  # noqa: F401
    except ImportError as err:
        raise ConfigError(
            f"the Meta-World rig needs the metaworld package ({err}): pip install 'vla-studio[sim]' "
            "(metaworld 3.1 with mujoco 3.3.0)"
        ) from err
    return metaworld


def flip_like_lerobot(image: np.ndarray, camera: str) -> np.ndarray:
    """LeRobot turns corner2 images by 180 degrees ("outputs images with both axes inverted")."""
    return np.ascontiguousarray(np.flip(image, (0, 1))) if camera == "corner2" else image


class MetaWorldSim:
    """The Meta-World env of the current task; envs are built on first use and kept per task."""

    def __init__(self, tasks, *, max_steps: int = MAX_STEPS) -> None:
        self.tasks = resolve_tasks(tasks)
        if not 1 <= int(max_steps) <= MAX_STEPS:
            raise ConfigError(f"Meta-World: max_steps {max_steps} must be 1..{MAX_STEPS} (the benchmark's limit)")
        self.max_steps = int(max_steps)
        self._mw = import_metaworld()
        self._envs: dict[str, tuple] = {}
        self.task: str | None = None
        self.env = None
        self.policy = None
        self.obs: np.ndarray | None = None
        self.steps = 0
        self.succeeded = False  # any step of this episode succeeded
        self.success_now = False  # the last step succeeded
        self.seed: int | None = None

    # ------------------------------------------------------------------ envs
    def _env(self, task: str):
        got = self._envs.get(task)
        if got is None:
            mw = self._mw
            mt1 = mw.MT1(task, seed=MT1_SEED)
            try:
                env = mt1.train_classes[task]()
                env.set_task(mt1.train_tasks[0])
                env.reset()
            except ValueError as err:  # e.g. MuJoCo 4 with metaworld 3.1: eq_data changed size
                import mujoco

                raise DeviceError(
                    f"Meta-World task {task} failed to build with MuJoCo {mujoco.__version__} ({err}): metaworld 3.1 "
                    "needs mujoco==3.3.0: pip install 'vla-studio[sim]'"
                ) from err
            env.model.cam_pos[env.model.camera("corner2").id] = CORNER2_POS
            env._freeze_rand_vec = False  # re-randomise objects at every reset ...
            env.seeded_rand_vec = True  # ... from the reset's seed
            policy = mw.policies.ENV_POLICY_MAP[task]()
            got = self._envs[task] = (env, policy)
        return got

    def task_for_seed(self, seed: int) -> str:
        """The task an episode with this seed runs: seeds walk the task list in turn."""
        return self.tasks[int(seed) % len(self.tasks)]

    def reset(self, seed: int, task: str | None = None) -> np.ndarray:
        task = task or self.task_for_seed(seed)
        if task not in self.tasks:
            raise ConfigError(f"Meta-World: task {task} is not in this rig's list ({', '.join(self.tasks)})")
        self.env, self.policy = self._env(task)
        self.task = task
        self.seed = int(seed)
        self.env.seed(int(seed))
        obs, _info = self.env.reset(seed=int(seed))
        self.obs = np.asarray(obs, dtype=np.float64)
        self.steps = 0
        self.succeeded = self.success_now = False
        return self.obs

    def step(self, action) -> bool:
        """One env step (ignored once the episode has used its steps); True if this step succeeded."""
        if self.env is None:
            raise DeviceError("Meta-World: step() before reset()")
        if self.steps >= self.max_steps:
            return False
        a = np.clip(np.asarray(action, dtype=np.float64).reshape(-1), -1.0, 1.0)
        if a.shape != (4,):
            raise DeviceError(f"Meta-World: an action has 4 values (x, y, z, gripper), got {a.shape[0]}")
        obs, _r, _term, _trunc, info = self.env.step(a)
        self.obs = np.asarray(obs, dtype=np.float64)
        self.steps += 1
        self.success_now = bool(info.get("success", 0.0))
        self.succeeded = self.succeeded or self.success_now
        return self.success_now

    # ------------------------------------------------------------------ views
    @property
    def instruction(self) -> str:
        return instruction(self.task) if self.task else ""

    @property
    def state(self) -> np.ndarray:
        return self.obs[:4].astype(np.float32)

    @property
    def done(self) -> bool:
        """The episode has used all its steps."""
        return self.steps >= self.max_steps

    @property
    def model(self):
        return self.env.model

    @property
    def data(self):
        return self.env.data

    def expert_action(self) -> np.ndarray:
        """Meta-World's scripted policy for the current task, on the current observation."""
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Constant")  # metaworld's own gain warning
            a = self.policy.get_action(self.obs)
        return np.clip(np.asarray(a, dtype=np.float32), -1.0, 1.0)

    def close(self) -> None:
        for env, _p in self._envs.values():
            try:
                env.close()
            except Exception:  # noqa: BLE001
                pass
        self._envs.clear()
        self.env = None


class SceneRenderer:
    """Offscreen renderer for Meta-World scenes on the calling thread: one GL context, one MuJoCo render context
    per scene model (each task has its own). Images come out as LeRobot's env gives them."""

    def __init__(self, width: int, height: int, shadows: bool = True, shadow_size: int = 0) -> None:
        import mujoco

        self._mj = mujoco
        self.width, self.height = int(width), int(height)
        self._gl = None
        self._ctx: dict[int, tuple] = {}
        self._buf = np.empty((self.height, self.width, 3), dtype=np.uint8)
        self._viewport = mujoco.MjrRect(0, 0, self.width, self.height)
        self._pending = None
        self.shadows = bool(shadows)
        self.shadow_size = int(shadow_size)  # shadow map px; 0: the scene's own (4096 in Meta-World, as LeRobot)

    def _ensure_gl(self):
        if self._gl is None:
            from recorder.devices.sim.camera import _gl_context

            self._gl = _gl_context(max(self.width, 64), max(self.height, 64))
        return self._gl

    def gl_info(self):
        """The GL implementation frames are drawn with (``recorder.devices.sim.camera.GLInfo``)."""
        from recorder.devices.sim.camera import current_gl_info

        self._ensure_gl().make_current()
        return current_gl_info()

    def _context(self, model):
        mj = self._mj
        self._ensure_gl()
        st = self._ctx.get(id(model))
        if st is None or st[0] is not model:
            g = model.vis.global_
            g.offwidth, g.offheight = max(g.offwidth, self.width), max(g.offheight, self.height)
            scene = mj.MjvScene(model, maxgeom=10000)
            if not self.shadows:
                scene.flags[mj.mjtRndFlag.mjRND_SHADOW] = 0
            own = model.vis.quality.shadowsize
            if self.shadow_size:  # the context allocates its shadow maps from the model's setting: set it for it
                model.vis.quality.shadowsize = self.shadow_size
            try:
                con = mj.MjrContext(model, mj.mjtFontScale.mjFONTSCALE_150)
            finally:
                model.vis.quality.shadowsize = own
            cam = mj.MjvCamera()
            cam.type = mj.mjtCamera.mjCAMERA_FIXED
            st = self._ctx[id(model)] = (model, scene, con, mj.MjvOption(), mj.MjvPerturb(), cam)
        return st

    def update(self, model, data, camera: str) -> None:
        """Copy the scene (call under the sim's lock); ``draw`` rasterises it."""
        mj = self._mj
        st = self._context(model)
        _m, scene, _con, opt, pert, cam = st
        cam.fixedcamid = model.camera(camera).id
        mj.mjv_updateScene(model, data, opt, pert, cam, mj.mjtCatBit.mjCAT_ALL, scene)
        self._pending = (st, camera)

    def draw(self) -> np.ndarray:
        mj = self._mj
        (_m, scene, con, _o, _p, _c), camera = self._pending
        mj.mjr_setBuffer(mj.mjtFramebuffer.mjFB_OFFSCREEN, con)
        mj.mjr_render(self._viewport, scene, con)
        mj.mjr_readPixels(self._buf, None, self._viewport, con)
        return flip_like_lerobot(np.ascontiguousarray(self._buf[::-1]), camera).copy()

    def render(self, model, data, camera: str) -> np.ndarray:
        self.update(model, data, camera)
        return self.draw()

    def close(self) -> None:
        try:
            for _m, _s, con, *_ in self._ctx.values():
                con.free()
        finally:
            self._ctx.clear()
            if self._gl is not None:
                self._gl.free()
                self._gl = None
