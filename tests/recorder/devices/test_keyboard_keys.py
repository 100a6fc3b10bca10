"""Key names the Record tab actually sends reach the keyboard teleop's toggles.

A Qt key event's text for Shift+Space is " " (not "space"), and Qt takes Tab for focus navigation, so
the GUI needs " " and "m" to toggle the gripper and switch modes."""

from __future__ import annotations

import numpy as np

from recorder.devices import make_teleop
from recorder.devices.configs import KeyboardTeleopConfig, SimRobotConfig
from recorder.devices.sim import SimRobot


def _drive(robot, teleop, ticks):
    for _ in range(ticks):
        robot.send_action(teleop.get_action(robot.get_observation()))
        robot.step_physics(1 / 30)


def _setup():
    robot = SimRobot(SimRobotConfig(seed=0, realtime=False))
    robot.connect()
    kb = make_teleop(KeyboardTeleopConfig(mode="ee"), robot)
    kb.connect()
    _drive(robot, kb, 5)
    return robot, kb


def test_space_as_qt_text_toggles_the_gripper():
    robot, kb = _setup()
    assert robot.get_observation()["observation.state"][5] > 95
    kb.press(" ")
    kb.release(" ")
    _drive(robot, kb, 30)
    assert robot.get_observation()["observation.state"][5] < 10


def test_m_switches_to_joint_mode_and_back():
    robot, kb = _setup()
    before = robot.get_observation()["observation.state"].copy()
    kb.press("M")  # Shift held or caps lock: still the mode key
    kb.release("M")
    kb.press("1")  # shoulder_pan + in joint mode (no meaning in end-effector mode)
    _drive(robot, kb, 10)
    kb.release("1")
    _drive(robot, kb, 10)
    after = robot.get_observation()["observation.state"]
    assert kb.mode == "joint"
    assert after[0] - before[0] > 20
    np.testing.assert_allclose(after[1:5], before[1:5], atol=2.0)
    kb.press("m")
    kb.release("m")
    _drive(robot, kb, 1)
    assert kb.mode == "ee"


def test_pageup_spelled_without_underscore_raises_the_tool():
    robot, kb = _setup()
    z0 = robot.ee_position()[2]
    kb.press("PageUp")
    _drive(robot, kb, 15)
    kb.release("PageUp")
    _drive(robot, kb, 10)
    assert robot.ee_position()[2] - z0 > 0.03
