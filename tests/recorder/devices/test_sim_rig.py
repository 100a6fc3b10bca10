"""The built-in simulated rig: rig files, observations/actions, cameras, projection, kinematics."""

from __future__ import annotations

import json
import time

import numpy as np
import pytest

from recorder.devices import JOINT_NAMES
from recorder.devices.configs import SimRobotConfig
from recorder.devices.rig import RigConfig, load_rig, save_rig, sim_rig_config
from recorder.devices.sim import SimRobot
from recorder.errors import ConfigError, DeviceNotConnectedError


def test_sim_rig_connects_observes_acts_and_snapshots():
    rig = load_rig("sim")
    assert set(rig.cameras) == {"front", "wrist"}
    assert rig.teleop is not None and rig.teleop.name == "keyboard"
    with pytest.raises(DeviceNotConnectedError):
        rig.robot.get_observation()
    with rig:
        obs = rig.robot.get_observation()
        state = obs["observation.state"]
        assert state.dtype == np.float32 and state.shape == (6,)
        assert rig.robot.action_features["action"]["names"] == JOINT_NAMES
        sent = rig.robot.send_action(np.array([500, 0, 0, 0, 0, 200], dtype=np.float32))
        assert sent[0] == 110.0 and sent[5] == 100.0  # clipped to the SO-101 limits
        for name, cam in rig.cameras.items():
            pkt = cam.read_latest(timeout=5.0)
            assert pkt.image.shape == (240, 320, 3) and pkt.image.dtype == np.uint8, name
            assert pkt.image.std() > 10  # a real rendered scene, not a blank buffer
        # get_observation never waits for rendering
        t0 = time.perf_counter()
        for _ in range(30):
            rig.robot.get_observation()
        assert (time.perf_counter() - t0) / 30 < 0.02
        snap = rig.snapshot()
        json.dumps(snap)
        assert snap["robot_info"]["task"]["instruction"] == "pick up the red cube"
        assert snap["camera_info"]["front"]["shape"] == [240, 320, 3]
    assert not rig.robot.is_connected and not rig.cameras["front"].is_connected


def test_rig_file_roundtrip_with_task_and_scripted_teleop(tmp_path):
    path = tmp_path / "rig.toml"
    path.write_text(
        'name = "bench"\ntask = "push"\nteleop = "scripted"\n\n[robot]\ntype = "sim"\nseed = 3\n\n'
        '[cameras.front]\ntype = "sim"\ncamera = "front"\nwidth = 160\nheight = 120\n'
    )
    rig = load_rig(path)
    assert rig.robot.task.name == "push"
    assert rig.robot.task.instruction == "push the red cube onto the green square"
    assert type(rig.teleop).__name__ == "PushExpert"
    assert rig.cameras["front"].width == 160
    saved = save_rig(rig.cfg, tmp_path / "copy.toml")
    again = load_rig(saved)
    assert again.cfg == rig.cfg
    default = sim_rig_config()
    save_rig(default, tmp_path / "sim.toml")
    assert load_rig(tmp_path / "sim.toml").cfg == default


@pytest.mark.parametrize(
    "text, match",
    [
        ('[robot]\ntype = "ufo"\n', "unknown robot type 'ufo'"),
        ('[robot]\ntype = "sim"\nspeed = 2\n', "no option.*speed"),
        ('task = "fly"\n[robot]\ntype = "sim"\n', "task 'fly'"),
        ("name = \n", "not valid TOML"),
        ('name = "x"\n', "no \\[robot\\] table"),
    ],
)
def test_bad_rig_files_name_the_file(tmp_path, text, match):
    path = tmp_path / "rig.toml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=match) as err:
        load_rig(path)
    assert str(path) in str(err.value)


def test_missing_rig_file_and_sim_cameras_without_sim_robot(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_rig(tmp_path / "nope.toml")
    cfg = RigConfig.from_dict(
        {"robot": {"type": "so101_follower", "port": "/dev/null"}, "cameras": {"front": {"type": "sim"}}}
    )
    with pytest.raises(ConfigError, match="sim robot"):
        load_rig(cfg)


def test_seeded_reset_is_reproducible_and_varies():
    a = SimRobot(SimRobotConfig(seed=7, realtime=False))
    b = SimRobot(SimRobotConfig(seed=7, realtime=False))
    np.testing.assert_allclose(a.cube_position(), b.cube_position())
    np.testing.assert_allclose(a.target_position(), b.target_position())
    b.reset(8)
    assert np.linalg.norm(a.cube_position() - b.cube_position()) > 1e-3
    assert not a.task.success()


def test_forward_kinematics_matches_mujoco_and_position_control_tracks():
    r = SimRobot(SimRobotConfig(seed=0, realtime=False))
    r.connect()
    goal = np.array([20.0, 30.0, -10.0, 60.0, 15.0, 40.0], dtype=np.float32)
    r.send_action(goal)
    r.step_physics(1.5)
    state = r.get_observation()["observation.state"]
    np.testing.assert_allclose(state, goal, atol=2.0)
    np.testing.assert_allclose(r.forward_kinematics(state), r.ee_position(), atol=1e-6)
    q = r.kinematics.inverse([0.2, 0.05, 0.03], pitch_deg=90)
    np.testing.assert_allclose(r.forward_kinematics(q), [0.2, 0.05, 0.03], atol=1e-9)


def _cube_corners(robot):
    body = robot.model.body("cube").id
    pos = robot.data.xpos[body]
    mat = robot.data.xmat[body].reshape(3, 3)
    signs = np.array([[x, y, z] for x in (-1, 1) for y in (-1, 1) for z in (-1, 1)], dtype=float)
    return pos + (signs * 0.015) @ mat.T


def test_projection_lands_on_the_rendered_cube():
    rig = load_rig("sim")
    with rig:
        checked = 0
        for cam_name in ("front", "wrist"):
            cam = rig.cameras[cam_name]
            pkt = cam.read_latest(timeout=5.0)
            pkt = cam.wait_for_frame(pkt.index, timeout=5.0)
            img = pkt.image.astype(int)
            red = (
                (img[..., 0] > 40)
                & (img[..., 0] > 2 * img[..., 1] + 10)
                & (img[..., 0] > 2 * img[..., 2] + 10)
            )
            uv = rig.robot.project(_cube_corners(rig.robot), cam_name)
            lo, hi = uv.min(axis=0), uv.max(axis=0)
            if np.any(lo < 1) or np.any(hi > [319, 239]):
                continue  # the cube may be (partly) out of the wrist camera's view at home
            ys, xs = np.nonzero(red)
            assert abs(xs.min() - lo[0]) < 2.5 and abs(xs.max() + 1 - hi[0]) < 2.5, (cam_name, lo, hi)
            assert abs(ys.min() - lo[1]) < 2.5 and abs(ys.max() + 1 - hi[1]) < 2.5, (cam_name, lo, hi)
            checked += 1
        assert checked >= 1


def test_rig_reset_rerandomizes_the_scene_and_restarts_the_teleop():
    rig = load_rig(sim_rig_config(teleop="keyboard"))
    with rig:
        rig.reset(seed=1)
        cube1 = rig.robot.cube_position()
        kb = rig.teleop
        kb.press("r")
        rig.robot.send_action(kb.get_action(rig.robot.get_observation()))
        kb.release("r")
        rig.reset(seed=2)
        assert np.linalg.norm(rig.robot.cube_position() - cube1) > 1e-3
        assert rig.robot.last_seed == 2
        # the keyboard goal starts again from the (reset) measured joints
        action = kb.get_action(rig.robot.get_observation())
        np.testing.assert_allclose(action, rig.robot.get_observation()["observation.state"], atol=1.0)


def test_sim_camera_falls_back_to_osmesa_when_egl_fails():
    import os
    import subprocess
    import sys
    from pathlib import Path

    code = (
        "from recorder.devices.rig import load_rig\n"
        "from recorder.devices.sim.camera import gl_backend\n"
        "rig = load_rig('sim')\n"
        "with rig:\n"
        "    img = rig.cameras['front'].read_latest(timeout=10).image\n"
        "print(gl_backend(), img.shape, round(float(img.std()), 1))\n"
    )
    env = dict(os.environ, MUJOCO_GL="egl", MUJOCO_EGL_DEVICE_ID="99")  # an EGL device that does not exist
    env.pop("PYOPENGL_PLATFORM", None)
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        cwd=str(Path(__file__).resolve().parents[3]),
    )
    if out.returncode != 0 and "OSMesa" in out.stderr and "libosmesa" in out.stderr:
        pytest.skip("OSMesa is not installed here")
    assert out.returncode == 0, out.stderr[-2000:]
    backend, *_rest = out.stdout.split()
    assert backend == "osmesa"
    assert "(240, 320, 3)" in out.stdout
    assert float(out.stdout.split()[-1]) > 10


def test_project_accepts_the_rig_camera_name_and_its_size():
    cfg = RigConfig.from_dict(
        {
            "robot": {"type": "sim", "seed": 0},
            "cameras": {"top": {"type": "sim", "camera": "front", "width": 160, "height": 120}},
        }
    )
    rig = load_rig(cfg)
    cube = rig.robot.cube_position()[None]
    uv_top = rig.robot.project(cube, "top")
    np.testing.assert_allclose(uv_top, rig.robot.project(cube, "front", 160, 120))
    assert 0 < uv_top[0, 0] < 160 and 0 < uv_top[0, 1] < 120
    with pytest.raises(ConfigError, match="no camera 'side'"):
        rig.robot.project(cube, "side")
