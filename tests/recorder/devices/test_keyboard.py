"""Keyboard teleop moves the sim arm the commanded way (end-effector and joint modes)."""

from __future__ import annotations

import numpy as np

from recorder.devices import make_teleop
from recorder.devices.configs import KeyboardTeleopConfig, SimRobotConfig
from recorder.devices.sim import SimRobot


def _drive(robot, teleop, ticks):
    for _ in range(ticks):
        robot.send_action(teleop.get_action(robot.get_observation()))
        robot.step_physics(1 / 30)


def _setup(mode="ee"):
    robot = SimRobot(SimRobotConfig(seed=0, realtime=False))
    robot.connect()
    teleop = make_teleop(KeyboardTeleopConfig(mode=mode), robot)
    teleop.connect()
    _drive(robot, teleop, 5)  # settle at the home pose
    return robot, teleop


def test_ee_keys_move_the_tool_point_that_way():
    robot, kb = _setup()
    for key, axis, sign in [("r", 2, +1), ("w", 0, +1), ("a", 1, +1), ("d", 1, -1), ("f", 2, -1)]:
        before = robot.ee_position()
        kb.press(key)
        _drive(robot, kb, 15)  # 0.5 s at 0.1 m/s = 5 cm
        kb.release(key)
        _drive(robot, kb, 10)
        moved = robot.ee_position() - before
        assert sign * moved[axis] > 0.03, (key, moved)
        others = [i for i in range(3) if i != axis]
        assert np.all(np.abs(moved[others]) < 0.012), (key, moved)


def test_gripper_keys_close_and_open():
    robot, kb = _setup()
    assert robot.get_observation()["observation.state"][5] > 95
    kb.press("c")
    _drive(robot, kb, 30)
    kb.release("c")
    assert robot.get_observation()["observation.state"][5] < 10
    kb.press("space")
    kb.release("space")
    _drive(robot, kb, 30)
    assert robot.get_observation()["observation.state"][5] > 90


def test_joint_mode_moves_one_joint():
    robot, kb = _setup(mode="joint")
    before = robot.get_observation()["observation.state"].copy()
    kb.press("1")
    _drive(robot, kb, 10)
    kb.release("1")
    _drive(robot, kb, 10)
    after = robot.get_observation()["observation.state"]
    assert after[0] - before[0] > 20  # 90 deg/s for 1/3 s
    np.testing.assert_allclose(after[1:5], before[1:5], atol=2.0)


def test_pitch_and_roll_keys_turn_the_gripper_in_place():
    robot, kb = _setup()
    state = robot.get_observation()["observation.state"]
    pitch0, tool0 = robot.kinematics.pitch(state), robot.ee_position()
    kb.press("g")  # tilt the gripper up
    _drive(robot, kb, 8)
    kb.release("g")
    kb.press("q")  # roll
    _drive(robot, kb, 8)
    kb.release("q")
    _drive(robot, kb, 15)
    state1 = robot.get_observation()["observation.state"]
    assert pitch0 - robot.kinematics.pitch(state1) > 15
    assert state1[4] - state[4] > 15
    assert np.linalg.norm(robot.ee_position() - tool0) < 0.015
