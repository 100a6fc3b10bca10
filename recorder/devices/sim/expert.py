"""Scripted experts for the sim tasks: read the sim state, produce goal joints (degrees, gripper 0..100).

Each expert moves a commanded tool point toward the next waypoint at a capped speed and converts it to
joints with the arm's analytic inverse kinematics (gripper pointing down), so trajectories are smooth
and look like a person's demonstration. ``get_action`` is called once per control tick (``cfg.fps``).
"""

from __future__ import annotations

import abc
import math

import numpy as np

from recorder.devices.base import SimpleTeleoperator
from recorder.devices.configs import ScriptedTeleopConfig
from recorder.devices.sim.robot import CUBE_HALF, HOME_POSE, SimRobot

GRIPPER_OPEN, GRIPPER_CLOSED = 100.0, 0.0


def _wrap90(deg: float) -> float:
    return (deg + 45.0) % 90.0 - 45.0


def _wrap180(deg: float) -> float:
    return (deg + 90.0) % 180.0 - 90.0


class _ExpertBase(SimpleTeleoperator):
    speed = 0.20  # m/s of the commanded tool point
    scripted = True  # no person: the record session lets it act only while an episode is recorded

    def __init__(self, robot: SimRobot, cfg: ScriptedTeleopConfig | None = None) -> None:
        super().__init__()
        self.robot = robot
        self.cfg = cfg or ScriptedTeleopConfig()
        self.name = f"scripted-{robot.task.name}"
        self.joint_names = list(robot.joint_names)
        self._rng = np.random.default_rng(self.cfg.seed)
        self.reset()

    def reset(self) -> None:
        """Start over (call after robot.reset())."""
        self.state = "start"
        self._p = None
        self._q = HOME_POSE.astype(np.float64).copy()
        self._gripper = GRIPPER_OPEN
        self._roll = 0.0
        self._ticks_in_state = 0

    @property
    def dt(self) -> float:
        return 1.0 / self.cfg.fps

    def describe(self) -> str:
        return f"scripted expert '{self.name}'"

    def _goto(self, state: str) -> None:
        self.state = state
        self._ticks_in_state = 0

    def _move_towards(self, target, speed: float | None = None) -> float:
        """Advance the commanded point toward ``target``; return the remaining distance."""
        target = np.asarray(target, dtype=np.float64)
        step = (speed or self.speed) * self.dt
        d = target - self._p
        n = float(np.linalg.norm(d))
        self._p = target.copy() if n <= step else self._p + d * (step / n)
        return float(np.linalg.norm(target - self._p))

    pitch = 90.0  # gripper angle below horizontal

    def _joints(self) -> np.ndarray:
        q4 = self.robot.kinematics.inverse(self._p, pitch_deg=self.pitch)
        if q4 is not None:
            self._q[:4] = q4
        self._q[4] = self._roll
        self._q[5] = self._gripper
        a = self._q.astype(np.float32)
        if self.cfg.noise_deg > 0:
            a[:5] += self._rng.normal(0.0, self.cfg.noise_deg, 5).astype(np.float32)
        lo, hi = self.robot.joint_limits
        return np.clip(a, lo, hi)

    def get_action(self, observation: dict[str, np.ndarray]) -> np.ndarray:
        if self._p is None:
            state = observation.get("observation.state")
            q = np.asarray(state if state is not None else HOME_POSE, dtype=np.float64)
            self._p = self.robot.kinematics.forward(q)
            self._q = q.copy()
        self._ticks_in_state += 1
        self._plan()
        return self._joints()

    @abc.abstractmethod
    def _plan(self) -> None:
        """Advance the expert's state machine (each task's expert defines it)."""


class PickExpert(_ExpertBase):
    """Above the cube -> down -> close -> lift 10 cm -> hold."""

    def _plan(self) -> None:
        cube = self.robot.cube_position()
        tool = self.robot.ee_position()
        if self.state == "start":
            self._goto("above")
        if self.state == "above":
            # the fingers close along the hand's y axis, whose yaw is pan - roll + 90 when pointing down
            pan = math.degrees(math.atan2(cube[1], cube[0]))
            self._roll = _wrap90(pan - self.robot.cube_yaw())
            left = self._move_towards(cube + [0, 0, 0.07])
            if left < 1e-3 and np.linalg.norm(tool - self._p) < 0.01:
                self._goto("descend")
        elif self.state == "descend":
            goal = cube.copy()
            goal[2] = CUBE_HALF + 0.002
            left = self._move_towards(goal, speed=0.12)
            if left < 1e-3 and np.linalg.norm(tool - self._p) < 0.006:
                self._goto("close")
        elif self.state == "close":
            self._gripper = GRIPPER_CLOSED
            if self._ticks_in_state * self.dt > 0.5:
                self._goto("lift")
        elif self.state in ("lift", "hold"):
            if self._ticks_in_state > 10 and not self.robot.is_grasped() and cube[2] < CUBE_HALF + 0.01:
                self._gripper = GRIPPER_OPEN  # missed it: open and try again
                self._goto("above")
                return
            if self.state == "lift":
                goal = self._p.copy()
                goal[2] = CUBE_HALF + 0.11
                if self._move_towards(goal, speed=0.12) < 1e-3:
                    self._goto("hold")


class PushExpert(_ExpertBase):
    """Behind the cube (on the line from the target through the cube) -> down -> push, re-aligning."""

    contact = CUBE_HALF + 0.011  # cube half + pusher half-width (closed fingers: a 22 mm square)
    z_push = 0.017
    pitch = 80.0

    def _plan(self) -> None:
        cube = self.robot.cube_position()
        target = self.robot.target_position()
        tool = self.robot.ee_position()
        d = target[:2] - cube[:2]
        dist = float(np.linalg.norm(d))
        u = d / dist if dist > 1e-6 else np.array([1.0, 0.0])
        behind = cube[:2] - u * (self.contact + 0.02)
        if self.state == "start":
            self._gripper = GRIPPER_CLOSED
            self._goto("pre")
        if self.state == "pre":
            self._roll = _wrap180(self._q[0] - math.degrees(math.atan2(u[1], u[0])))
            goal = np.array([behind[0], behind[1], 0.07])
            if self._move_towards(goal) < 1e-3 and np.linalg.norm(tool - self._p) < 0.01:
                self._goto("down")
        elif self.state == "down":
            goal = np.array([behind[0], behind[1], self.z_push])
            if self._move_towards(goal, speed=0.12) < 1e-3 and np.linalg.norm(tool - self._p) < 0.008:
                self._goto("push")
        elif self.state == "push":
            if dist < 0.008:
                self._goto("retreat")
                return
            # stay on the line through the cube toward the target; lift and re-approach when the real tool
            # point has slipped beside the cube
            rel = tool[:2] - cube[:2]
            along = float(rel @ u)
            lateral = float(rel @ np.array([-u[1], u[0]]))
            if along > -(CUBE_HALF + 0.002) or abs(lateral) > 0.014:
                self._goto("lift_realign")
                return
            push_to = cube[:2] - u * (self.contact - 0.012)
            goal = np.array([push_to[0], push_to[1], self.z_push])
            self._move_towards(goal, speed=0.05)
        elif self.state == "lift_realign":
            goal = self._p.copy()
            goal[2] = 0.07
            if self._move_towards(goal, speed=0.15) < 1e-3:
                self._goto("pre")
        elif self.state == "retreat":
            goal = np.array([behind[0], behind[1], 0.06])
            self._move_towards(goal, speed=0.08)


def make_expert(robot: SimRobot, cfg: ScriptedTeleopConfig | None = None) -> _ExpertBase:
    """The scripted expert for the robot's task."""
    if robot.task.name == "pick":
        return PickExpert(robot, cfg)
    return PushExpert(robot, cfg)
