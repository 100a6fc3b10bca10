"""Who draws the sim's frames: the GL strings, and a CPU rasteriser told apart from a GPU."""

import numpy as np
import pytest

from recorder.devices.sim.camera import GLInfo, is_software_renderer


@pytest.mark.parametrize("renderer, software", [
    ("llvmpipe (LLVM 15.0.6, 256 bits)", True),
    ("softpipe", True),
    ("Mesa X11 / swrast", True),
    ("Google SwiftShader", True),
    ("NVIDIA H200/PCIe/SSE2", False),
    ("Mesa Intel(R) UHD Graphics 620 (KBL GT2)", False),
    ("AMD Radeon RX 6800 (radeonsi, navi21, LLVM 15.0.6, DRM 3.49)", False),
])
def test_software_renderers_are_told_apart_from_gpus(renderer, software):
    assert is_software_renderer(renderer) is software
    info = GLInfo(backend="egl", vendor="v", renderer=renderer, version="4.5")
    assert info.software is software
    assert ("software (CPU)" in info.describe()) is software and renderer in info.describe()


def test_osmesa_is_always_software():
    assert GLInfo(backend="osmesa", vendor="Mesa", renderer="unknown", version="2.1").software


def test_metaworld_renderer_reports_the_gl_that_draws_its_frames():
    pytest.importorskip("metaworld")
    from OpenGL import GL

    from recorder.devices.metaworld.env import MetaWorldSim, SceneRenderer

    sim = MetaWorldSim(["reach-v3"])
    renderer = SceneRenderer(32, 32, shadows=False)
    try:
        sim.reset(0)
        frame = renderer.render(sim.model, sim.data, "corner2")
        info = renderer.gl_info()
        # the same context drew the frame: its strings are what GL itself says
        assert info.renderer == GL.glGetString(GL.GL_RENDERER).decode()
        assert info.vendor and info.version and info.backend in ("egl", "osmesa")
        assert info.software is (is_software_renderer(info.renderer) or info.backend == "osmesa")
        assert frame.shape == (32, 32, 3) and np.ptp(frame) > 0
    finally:
        renderer.close()
        sim.close()
