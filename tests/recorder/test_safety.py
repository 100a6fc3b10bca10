import numpy as np
import pytest

from recorder.errors import ConfigError
from recorder.safety import SafetyConfig, SafetyLayer
from tests.rollout_doubles import FakeRobot

LOW = np.array([-90, -90, -90, -90, -150, 0], np.float32)
HIGH = np.array([90, 90, 90, 90, 150, 100], np.float32)


def obs(q):
    return {"observation.state": np.asarray(q, np.float32)}


def test_joint_limits_and_gripper_are_clipped_and_counted():
    layer = SafetyLayer(SafetyConfig(joint_low=LOW, joint_high=HIGH, max_delta=None))
    safe, report = layer(np.array([120, 0, -200, 0, 0, 130], np.float32), obs(np.zeros(6)))
    assert safe.tolist() == [90, 0, -90, 0, 0, 100]
    assert set(report.rules) == {"joint_limits", "gripper"}
    safe, report = layer(np.array([10, 0, 0, 0, 0, 50], np.float32), obs(np.zeros(6)))
    assert not report.intervened and safe.tolist() == [10, 0, 0, 0, 0, 50]
    assert layer.counts["joint_limits"] == 1 and layer.counts["gripper"] == 1 and layer.ticks == 2


def test_max_joint_change_per_tick_limits_step_but_not_gripper():
    layer = SafetyLayer(SafetyConfig(joint_low=LOW, joint_high=HIGH, max_delta=5.0))
    state = np.array([0, 10, 0, 0, 0, 0], np.float32)
    safe, report = layer(np.array([30, 10, -2, 0, 0, 100], np.float32), obs(state))
    assert safe.tolist() == [5, 10, -2, 0, 0, 100]
    assert report.rules == ("max_delta",)
    assert layer.counts["max_delta"] == 1


def test_workspace_pulls_goal_back_inside_the_box():
    robot = FakeRobot()
    layer = SafetyLayer.for_robot(robot, max_delta=None, workspace_low=[-0.5, -0.5, 0.0],
                                  workspace_high=[0.5, 0.5, 0.5])
    # FK x = q0/100: a goal of q0=80 puts the end effector at x=0.8, outside; start is at x=0
    safe, report = layer(np.array([80, 0, 0, 0, 0, 40], np.float32), obs(np.zeros(6)))
    assert "workspace" in report.rules
    assert 45 <= safe[0] <= 50  # pulled back to the box edge (x <= 0.5) along the path
    assert safe[5] == 40  # gripper untouched
    assert layer.counts["workspace"] == 1


def test_nan_goal_holds_measured_position():
    layer = SafetyLayer(SafetyConfig(joint_low=LOW, joint_high=HIGH))
    safe, report = layer(np.array([np.nan, 1, 1, 1, 1, 1], np.float32), obs(np.full(6, 3.0)))
    assert safe[0] == 3.0 and "invalid" in report.rules


def test_bad_limits_are_a_known_error():
    with pytest.raises(ConfigError):
        SafetyLayer(SafetyConfig(joint_low=HIGH, joint_high=LOW))
