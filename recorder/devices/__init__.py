"""Devices: cameras, robots, teleoperators and the built-in simulated rig (docs/INTERFACES.md).

No Qt here, and no vendor SDK at import time: ``make_camera`` / ``make_robot`` / ``make_teleop`` import
pyrealsense2, mujoco, pygame or pyspacemouse only when that device type is built.
"""

from recorder.devices.base import (
    JOINT_NAMES,
    Camera,
    FramePacket,
    Robot,
    SimpleTeleoperator,
    Teleoperator,
    ThreadedCamera,
)
from recorder.devices.configs import config_from_dict, config_to_dict, registered_types
from recorder.devices.factory import make_camera, make_robot, make_teleop

__all__ = [
    "JOINT_NAMES",
    "Camera",
    "FramePacket",
    "Robot",
    "Teleoperator",
    "ThreadedCamera",
    "SimpleTeleoperator",
    "make_camera",
    "make_robot",
    "make_teleop",
    "config_from_dict",
    "config_to_dict",
    "registered_types",
]
