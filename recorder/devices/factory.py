"""One factory per device kind. Vendor SDKs (pyrealsense2, mujoco, pygame, pyspacemouse) are imported
inside the branch of the type that needs them, so a missing optional SDK is an error only when that
device is chosen."""

from __future__ import annotations

from pathlib import Path

from recorder.devices import configs as C
from recorder.devices.base import Camera, Robot, Teleoperator
from recorder.errors import ConfigError


def make_camera(cfg: C.CameraConfig, name: str | None = None, robot: Robot | None = None) -> Camera:
    """Build a camera. ``robot`` is the sim robot for ``type = "sim"`` cameras (the rig passes it)."""
    name = name or getattr(cfg, "camera", None) or cfg.type
    if isinstance(cfg, C.TestPatternCameraConfig):
        from recorder.devices.test_pattern import TestPatternCamera

        return TestPatternCamera(cfg, name=name)
    if isinstance(cfg, C.OpenCVCameraConfig):
        from recorder.devices.opencv_camera import OpenCVCamera

        return OpenCVCamera(cfg, name=name)
    if isinstance(cfg, C.RealSenseCameraConfig):
        from recorder.devices.realsense import RealSenseCamera

        return RealSenseCamera(cfg, name=name)
    if isinstance(cfg, C.SimCameraConfig):
        from recorder.devices.sim import SimCamera, SimRobot

        if not isinstance(robot, SimRobot):
            raise ConfigError(
                f"camera '{name}': type 'sim' needs the sim robot in the same rig (robot type = \"sim\")"
            )
        return SimCamera(cfg, robot, name=name)
    if isinstance(cfg, C.MetaWorldCameraConfig):
        from recorder.devices.metaworld.devices import MetaWorldCamera, MetaWorldRobot

        if not isinstance(robot, MetaWorldRobot):
            raise ConfigError(
                f"camera '{name}': type 'metaworld' needs the Meta-World robot in the same rig "
                '(robot type = "metaworld")'
            )
        return MetaWorldCamera(cfg, robot, name=name)
    raise ConfigError(f"no camera implementation for type '{cfg.type}'")


def make_robot(cfg: C.RobotConfig, home: Path | None = None) -> Robot:
    if isinstance(cfg, C.SimRobotConfig):
        from recorder.devices.sim import SimRobot

        return SimRobot(cfg)
    if isinstance(cfg, C.MetaWorldRobotConfig):
        from recorder.devices.metaworld.devices import MetaWorldRobot

        return MetaWorldRobot(cfg)
    if isinstance(cfg, C.SO101FollowerConfig | C.SO100FollowerConfig | C.KochFollowerConfig):
        from recorder.devices.arms import ServoArm

        return ServoArm(cfg, home=home)
    raise ConfigError(f"no robot implementation for type '{cfg.type}'")


def make_teleop(cfg: C.TeleopConfig, robot: Robot | None = None, home: Path | None = None) -> Teleoperator:
    if isinstance(cfg, C.KeyboardTeleopConfig):
        from recorder.devices.teleop import KeyboardTeleop

        return KeyboardTeleop(cfg, robot)
    if isinstance(cfg, C.GamepadTeleopConfig):
        from recorder.devices.teleop import GamepadTeleop

        return GamepadTeleop(cfg, robot)
    if isinstance(cfg, C.SpaceMouseTeleopConfig):
        from recorder.devices.teleop import SpaceMouseTeleop

        return SpaceMouseTeleop(cfg, robot)
    if isinstance(cfg, C.ScriptedTeleopConfig):
        from recorder.devices.metaworld.devices import MetaWorldExpert, MetaWorldRobot

        if isinstance(robot, MetaWorldRobot):
            return MetaWorldExpert(robot, cfg)
        from recorder.devices.sim import SimRobot, make_expert

        if not isinstance(robot, SimRobot):
            raise ConfigError(
                "teleop 'scripted' drives the sim robot or the Meta-World robot only: set robot type = "
                '"sim" or "metaworld" in the rig file'
            )
        return make_expert(robot, cfg)
    if isinstance(cfg, C.LeaderArmConfig):
        from recorder.devices.arms import LeaderArmTeleop

        return LeaderArmTeleop(cfg, robot, home=home)
    raise ConfigError(f"no teleoperator implementation for type '{cfg.type}'")
