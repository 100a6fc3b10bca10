"""Sim cameras: each renders offscreen on its own thread at its own fps and keeps the latest frame.

The GL context is created, used and freed on that thread (contexts are thread-affine). The scene is
copied from the simulation under the sim lock (``mjv_updateScene``); rasterizing and reading pixels
happen outside it, so physics and the record loop never wait for a render.

Backend: ``MUJOCO_GL`` = ``egl`` or ``osmesa`` is honoured (the sim sets ``egl`` when it is unset; if it
is still unset here, EGL is probed once in a child process). If EGL fails in this process, PyOpenGL is
reloaded for OSMesa and rendering falls back to it (logged).
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import threading
import time
from dataclasses import dataclass

import numpy as np

from recorder.devices.base import ThreadedCamera
from recorder.devices.configs import SimCameraConfig
from recorder.errors import ConfigError, DeviceError

log = logging.getLogger(__name__)

_BACKEND: str | None = None
_CHECKED = "VLA_STUDIO_GL_CHECKED"  # the backend a parent process already probed
_GL_LOCK = threading.Lock()

_PROBE = (
    "import os; os.environ['MUJOCO_GL']='egl'; os.environ['PYOPENGL_PLATFORM']='egl'\n"
    "from mujoco.egl import GLContext\nc = GLContext(8, 8); c.make_current(); c.free()\n"
)


def gl_backend() -> str:
    """The offscreen GL backend to use: 'egl' or 'osmesa'."""
    global _BACKEND
    if _BACKEND is not None:
        return _BACKEND
    env = os.environ.get("MUJOCO_GL", "").lower()
    checked = "egl:" + os.environ.get("MUJOCO_EGL_DEVICE_ID", "")  # what a parent process found working
    # mujoco already imported with EGL: it cannot switch any more, keep EGL (a failure then names it)
    if env == "osmesa" or (env == "egl" and (os.environ.get(_CHECKED) == checked or "mujoco" in sys.modules)):
        _BACKEND = env
    else:
        # EGL (asked for, or unset) is tried in a child process first: once a failing EGL has been loaded in
        # this process, MuJoCo 3.3 can no longer switch to OSMesa ("gladLoadGL error")
        try:
            ok = (
                subprocess.run([sys.executable, "-c", _PROBE], capture_output=True, timeout=60).returncode
                == 0
            )
        except subprocess.TimeoutExpired:
            ok = True  # a busy machine, not a verdict on EGL: try it (a failure is still caught in-process)
        except OSError:
            ok = False
        _BACKEND = "egl" if ok else "osmesa"
        if not ok and env == "egl":
            log.warning("EGL offscreen rendering is not available here; rendering with OSMesa")
        os.environ["MUJOCO_GL"] = _BACKEND
        if ok:
            os.environ[_CHECKED] = checked  # child processes (benchmark workers) skip the probe
        else:
            _switch_to_osmesa()  # `import mujoco` may have set PyOpenGL up for EGL already
    os.environ.setdefault("PYOPENGL_PLATFORM", _BACKEND)
    return _BACKEND


def _make_context(backend: str, width: int, height: int):
    if backend == "egl":
        from mujoco.egl import GLContext
    else:
        from mujoco.osmesa import GLContext
    ctx = GLContext(width, height)
    ctx.make_current()
    return ctx


# renderer strings of GL implementations that rasterise on the CPU (Mesa's llvmpipe/softpipe/swrast, OSMesa,
# SwiftShader): a render there costs 10-100x a GPU's, which a benchmark must not take for a GPU figure
SOFTWARE_GL = ("llvmpipe", "softpipe", "swrast", "software rasterizer", "osmesa", "swiftshader")


def is_software_renderer(renderer: str) -> bool:
    """True if a GL_RENDERER string names a CPU rasteriser."""
    r = renderer.lower()
    return any(s in r for s in SOFTWARE_GL)


@dataclass(frozen=True)
class GLInfo:
    """Who renders: the GL backend and the context's vendor / renderer / version strings."""

    backend: str
    vendor: str
    renderer: str
    version: str

    @property
    def software(self) -> bool:
        return is_software_renderer(self.renderer) or self.backend == "osmesa"

    def describe(self) -> str:
        kind = "software (CPU)" if self.software else "hardware"
        return f"{self.backend}: {self.renderer} ({self.vendor}, OpenGL {self.version}), {kind} rendering"


def current_gl_info() -> GLInfo:
    """The GL strings of the context current on this thread (call after a renderer made one)."""
    from OpenGL import GL

    def text(name) -> str:
        v = GL.glGetString(name)
        return v.decode(errors="replace") if isinstance(v, bytes) else str(v or "")

    return GLInfo(backend=os.environ.get("MUJOCO_GL", "") or (_BACKEND or ""), vendor=text(GL.GL_VENDOR),
                  renderer=text(GL.GL_RENDERER), version=text(GL.GL_VERSION))


def _switch_to_osmesa() -> None:
    """Forget a PyOpenGL that was set up for EGL, so OSMesa can be loaded in this process."""
    global _BACKEND
    for mod in [m for m in sys.modules if m == "OpenGL" or m.startswith(("OpenGL.", "mujoco.egl"))]:
        del sys.modules[mod]
    os.environ["PYOPENGL_PLATFORM"] = "osmesa"
    os.environ["MUJOCO_GL"] = "osmesa"
    _BACKEND = "osmesa"


def _gl_context(width: int, height: int):
    with _GL_LOCK:  # cameras open concurrently; the backend choice and any fallback happen once
        return _gl_context_locked(width, height)


def _gl_context_locked(width: int, height: int):
    backend = gl_backend()
    try:
        return _make_context(backend, width, height)
    except Exception as err:  # noqa: BLE001
        first = err
    if backend == "egl":
        log.warning("EGL offscreen rendering failed (%s); falling back to OSMesa", first)
        try:
            _switch_to_osmesa()
            return _make_context("osmesa", width, height)
        except Exception as err:  # noqa: BLE001
            raise DeviceError(
                f"sim camera: offscreen OpenGL failed with EGL ({first}) and OSMesa ({err}): "
                "install libegl1 or libosmesa6"
            ) from err
    raise DeviceError(
        f"sim camera: offscreen OpenGL ({backend}) failed: {first}; install libosmesa6 or set MUJOCO_GL=egl"
    ) from first


class OffscreenRenderer:
    """A minimal MuJoCo offscreen renderer bound to the calling thread."""

    def __init__(self, model, width: int, height: int, shadows: bool = False) -> None:
        import mujoco

        self._mj = mujoco
        self.width, self.height = width, height
        g = model.vis.global_
        if g.offwidth < width:
            g.offwidth = width
        if g.offheight < height:
            g.offheight = height
        self._gl = _gl_context(g.offwidth, g.offheight)
        self.scene = mujoco.MjvScene(model, maxgeom=2000)
        self.con = mujoco.MjrContext(model, mujoco.mjtFontScale.mjFONTSCALE_150)
        mujoco.mjr_setBuffer(mujoco.mjtFramebuffer.mjFB_OFFSCREEN, self.con)
        flags = mujoco.mjtRndFlag
        self.scene.flags[flags.mjRND_SHADOW] = int(shadows)
        self.scene.flags[flags.mjRND_REFLECTION] = 0
        self.opt = mujoco.MjvOption()
        self.cam = mujoco.MjvCamera()
        self.cam.type = mujoco.mjtCamera.mjCAMERA_FIXED
        self.viewport = mujoco.MjrRect(0, 0, width, height)
        self._buf = np.empty((height, width, 3), dtype=np.uint8)

    def update_scene(self, model, data, camera_id: int) -> None:
        self.cam.fixedcamid = camera_id
        self._mj.mjv_updateScene(
            model, data, self.opt, None, self.cam, self._mj.mjtCatBit.mjCAT_ALL, self.scene
        )

    def render(self) -> np.ndarray:
        self._mj.mjr_render(self.viewport, self.scene, self.con)
        self._mj.mjr_readPixels(self._buf, None, self.viewport, self.con)
        return np.ascontiguousarray(self._buf[::-1])

    def gl_info(self) -> GLInfo:
        """The GL implementation this renderer draws with (its context made current on this thread)."""
        self._gl.make_current()
        return current_gl_info()

    def close(self) -> None:
        try:
            self.con.free()
        finally:
            self._gl.free()


class SimCamera(ThreadedCamera):
    def __init__(self, cfg: SimCameraConfig, robot, name: str | None = None) -> None:
        super().__init__(name or cfg.camera, cfg.width, cfg.height, cfg.fps)
        self.cfg = cfg
        self.robot = robot
        self.connect_timeout_s = max(cfg.connect_timeout_s, 10.0)
        try:
            self._cam_id = robot.model.camera(cfg.camera).id
        except KeyError:
            raise ConfigError(
                f"sim camera '{self.name}': the scene has no camera '{cfg.camera}': use front or wrist"
            ) from None
        self._renderer: OffscreenRenderer | None = None
        self._next_t = 0.0
        # robot.project() accepts the rig's camera name as well as the scene camera's
        robot.camera_aliases[self.name] = cfg.camera
        robot.camera_sizes[self.name] = robot.camera_sizes[cfg.camera] = (self.width, self.height)

    def describe(self) -> str:
        return f"sim camera '{self.name}' ({self.cfg.camera}, {self.width}x{self.height}@{self.fps:g})"

    def _open(self) -> None:
        self._renderer = OffscreenRenderer(
            self.robot.model, self.width, self.height, shadows=self.cfg.shadows
        )
        self._next_t = time.monotonic()

    def _grab(self):
        self._pace()
        r = self.robot
        r.sync()
        with r._lock:
            self._renderer.update_scene(r.model, r.data, self._cam_id)
            t_capture = time.monotonic()  # the sim state the frame shows
        return self._renderer.render(), None, t_capture

    def _close(self) -> None:
        if self._renderer is not None:
            self._renderer.close()
            self._renderer = None
