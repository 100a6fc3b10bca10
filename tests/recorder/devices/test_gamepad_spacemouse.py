"""Gamepad (pygame) and SpaceMouse (pyspacemouse) teleop drive the sim arm the commanded way.

Neither SDK nor any hardware is here: fakes from fake_input.py stand in for the libraries."""

from __future__ import annotations

import sys

import numpy as np
import pytest

from recorder.devices import make_teleop
from recorder.devices.configs import GamepadTeleopConfig, SimRobotConfig, SpaceMouseTeleopConfig
from recorder.devices.sim import SimRobot
from recorder.errors import DeviceError

from .fake_input import FakeMouseState, FakePad, make_fake_pygame, make_fake_pyspacemouse


def _drive(robot, teleop, ticks):
    for _ in range(ticks):
        robot.send_action(teleop.get_action(robot.get_observation()))
        robot.step_physics(1 / 30)


@pytest.fixture(scope="module")
def robot():
    r = SimRobot(SimRobotConfig(seed=0, realtime=False))
    r.connect()
    yield r
    r.disconnect()


def _home(robot):
    robot.reset(seed=0)  # arm back at its home pose for each test


@pytest.fixture
def pad(monkeypatch):
    p = FakePad()
    monkeypatch.setitem(sys.modules, "pygame", make_fake_pygame([p]))
    return p


@pytest.fixture
def mouse(monkeypatch):
    s = FakeMouseState()
    monkeypatch.setitem(sys.modules, "pyspacemouse", make_fake_pyspacemouse(s))
    return s


def _connect(robot, cfg):
    _home(robot)
    teleop = make_teleop(cfg, robot)
    teleop.connect()
    _drive(robot, teleop, 5)  # settle at the home pose
    return teleop


def _assert_moved_along(robot, teleop, ticks, axis, sign, release):
    before = robot.ee_position()
    _drive(robot, teleop, ticks)  # 0.5 s at 0.1 m/s = 5 cm
    release()
    _drive(robot, teleop, 10)
    moved = robot.ee_position() - before
    assert sign * moved[axis] > 0.03, moved
    others = [i for i in range(3) if i != axis]
    assert np.all(np.abs(moved[others]) < 0.012), moved


# stick pushes in SDL's convention: y axes are -1 when pushed forward / up, x axes -1 to the left
@pytest.mark.parametrize(
    "axis_index, value, ee_axis, sign",
    [
        (1, -1.0, 0, +1),
        (1, +1.0, 0, -1),
        (0, -1.0, 1, +1),
        (0, +1.0, 1, -1),
        (4, -1.0, 2, +1),
        (4, +1.0, 2, -1),
    ],
    ids=[
        "left-stick-forward",
        "left-stick-back",
        "left-stick-left",
        "left-stick-right",
        "right-stick-up",
        "right-stick-down",
    ],
)
def test_gamepad_stick_moves_the_tool_that_way(robot, pad, axis_index, value, ee_axis, sign):
    gp = _connect(robot, GamepadTeleopConfig())

    pad.axes[axis_index] = value

    def release():
        pad.axes[axis_index] = 0.0

    _assert_moved_along(robot, gp, 15, ee_axis, sign, release)


def test_gamepad_dpad_moves_the_tool_up(robot, pad):
    gp = _connect(robot, GamepadTeleopConfig())
    pad.hats[0] = (0, 1)

    def release():
        pad.hats[0] = (0, 0)

    _assert_moved_along(robot, gp, 15, 2, +1, release)


def test_gamepad_stick_inside_the_deadzone_leaves_the_arm_still(robot, pad):
    gp = _connect(robot, GamepadTeleopConfig(deadzone=0.15))
    before = robot.ee_position()
    grip0 = robot.get_observation()["observation.state"][5]
    pad.axes[:2] = [0.12, -0.12]  # a worn stick that does not centre
    pad.axes[3:5] = [-0.1, 0.14]
    _drive(robot, gp, 30)
    assert np.linalg.norm(robot.ee_position() - before) < 0.002
    assert abs(robot.get_observation()["observation.state"][5] - grip0) < 1.0
    pad.axes[1] = -0.5  # outside the deadzone it does move
    _drive(robot, gp, 15)
    assert robot.ee_position()[0] - before[0] > 0.01


def test_gamepad_buttons_close_and_open_the_gripper(robot, pad):
    gp = _connect(robot, GamepadTeleopConfig())
    state = lambda: robot.get_observation()["observation.state"][5]  # noqa: E731
    assert state() > 95
    pad.buttons[0] = 1  # A: close
    _drive(robot, gp, 30)
    pad.buttons[0] = 0
    assert state() < 10
    pad.buttons[1] = 1  # B: open
    _drive(robot, gp, 30)
    pad.buttons[1] = 0
    assert state() > 90


def test_gamepad_trigger_closes_and_an_untouched_trigger_does_not_reopen(robot, pad):
    gp = _connect(robot, GamepadTeleopConfig())
    state = lambda: robot.get_observation()["observation.state"][5]  # noqa: E731
    assert pad.axes[2] == 0.0  # left trigger never moved: SDL reports 0, not its rest value -1
    _drive(robot, gp, 10)
    assert state() > 95
    pad.axes[5] = 1.0  # right trigger fully pressed: close
    _drive(robot, gp, 30)
    assert state() < 10
    pad.axes[5] = -1.0  # released
    _drive(robot, gp, 30)
    assert state() < 10  # the held object is not dropped
    pad.axes[2] = 1.0  # left trigger: open
    _drive(robot, gp, 30)
    assert state() > 90


def test_gamepad_shoulder_buttons_pitch_the_gripper(robot, pad):
    gp = _connect(robot, GamepadTeleopConfig())
    s0 = robot.get_observation()["observation.state"]
    pitch0 = robot.kinematics.pitch(s0)
    pad.buttons[4] = 1  # LB: pitch up
    _drive(robot, gp, 8)
    pad.buttons[4] = 0
    _drive(robot, gp, 10)
    assert pitch0 - robot.kinematics.pitch(robot.get_observation()["observation.state"]) > 15


def test_no_gamepad_plugged_in_says_so(monkeypatch):
    monkeypatch.setitem(sys.modules, "pygame", make_fake_pygame([]))
    gp = make_teleop(GamepadTeleopConfig())
    with pytest.raises(DeviceError, match=r"gamepad 0 not found .*plug one in"):
        gp.connect()
    assert not gp.is_connected


def test_second_gamepad_missing_names_its_index(monkeypatch):
    monkeypatch.setitem(sys.modules, "pygame", make_fake_pygame([FakePad()]))
    with pytest.raises(DeviceError, match=r"gamepad 1 not found .*1 game controller"):
        make_teleop(GamepadTeleopConfig(index=1)).connect()


def test_gamepad_unplugged_mid_session_is_a_device_error(robot, pad):
    gp = _connect(robot, GamepadTeleopConfig())
    pad.unplugged = True
    with pytest.raises(DeviceError, match="gamepad 0 was unplugged: plug it back in"):
        gp.get_action(robot.get_observation())
    gp.disconnect()  # does not raise on a vanished pad
    assert not gp.is_connected


# SpaceMouse (pyspacemouse convention: +y pushed forward, +x to the right, +z pulled up)
@pytest.mark.parametrize(
    "field, value, ee_axis, sign",
    [
        ("y", 1.0, 0, +1),
        ("y", -1.0, 0, -1),
        ("x", -1.0, 1, +1),
        ("x", 1.0, 1, -1),
        ("z", 1.0, 2, +1),
        ("z", -1.0, 2, -1),
    ],
    ids=["forward", "back", "left", "right", "pull-up", "push-down"],
)
def test_spacemouse_push_moves_the_tool_that_way(robot, mouse, field, value, ee_axis, sign):
    sm = _connect(robot, SpaceMouseTeleopConfig())
    setattr(mouse, field, value)
    _assert_moved_along(robot, sm, 15, ee_axis, sign, lambda: setattr(mouse, field, 0.0))


def test_spacemouse_inside_the_deadzone_leaves_the_arm_still(robot, mouse):
    sm = _connect(robot, SpaceMouseTeleopConfig(deadzone=0.1))
    before = robot.ee_position()
    s0 = robot.get_observation()["observation.state"].copy()
    mouse.x, mouse.y, mouse.z, mouse.roll, mouse.pitch = 0.08, -0.05, 0.09, 0.07, -0.06
    _drive(robot, sm, 30)
    assert np.linalg.norm(robot.ee_position() - before) < 0.002
    np.testing.assert_allclose(robot.get_observation()["observation.state"][3:], s0[3:], atol=1.0)


def test_spacemouse_buttons_close_and_open_the_gripper(robot, mouse):
    sm = _connect(robot, SpaceMouseTeleopConfig())
    state = lambda: robot.get_observation()["observation.state"][5]  # noqa: E731
    assert state() > 95
    mouse.buttons = [1, 0]  # left: close
    _drive(robot, sm, 30)
    assert state() < 10
    mouse.buttons = [0, 1]  # right: open
    _drive(robot, sm, 30)
    assert state() > 90


def test_spacemouse_2x_device_object_api_works(robot, monkeypatch):
    s = FakeMouseState(y=1.0)
    fake = make_fake_pyspacemouse(s, style="2.x")
    monkeypatch.setitem(sys.modules, "pyspacemouse", fake)
    assert not hasattr(fake, "read")  # pyspacemouse 2.x has no module-level read()
    sm = _connect(robot, SpaceMouseTeleopConfig())
    before = robot.ee_position()
    _drive(robot, sm, 10)
    assert robot.ee_position()[0] - before[0] > 0.02
    sm.disconnect()
    assert fake.closed and not sm.is_connected


@pytest.mark.parametrize("style", ["1.x", "2.x"])
def test_no_spacemouse_plugged_in_says_so(monkeypatch, style):
    monkeypatch.setitem(sys.modules, "pyspacemouse", make_fake_pyspacemouse(None, style=style))
    sm = make_teleop(SpaceMouseTeleopConfig())
    with pytest.raises(DeviceError, match=r"SpaceMouse not found.*plug it in.*hidraw"):
        sm.connect()
    assert not sm.is_connected
