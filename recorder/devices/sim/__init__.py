"""The built-in simulated rig: an SO-101-shaped arm on a MuJoCo tabletop, sim cameras, scripted experts."""

from recorder.devices.sim.camera import SimCamera
from recorder.devices.sim.expert import PickExpert, PushExpert, make_expert
from recorder.devices.sim.robot import TASKS, SimRobot, SimTask

__all__ = ["SimRobot", "SimTask", "SimCamera", "TASKS", "make_expert", "PickExpert", "PushExpert"]
