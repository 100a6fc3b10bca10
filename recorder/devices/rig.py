"""A rig: one robot, named cameras and an optional teleoperator, described by a ``rig.toml``.

``load_rig("sim")`` is the built-in simulated rig (sim SO-101-shaped arm, ``front`` and ``wrist``
cameras at 320x240, keyboard teleop). A rig file looks like::

    name = "my-sim"
    task = "push"                 # sim only: "pick" | "push"
    teleop = "scripted"           # shorthand for [teleop] type = "scripted"

    [robot]
    type = "sim"
    seed = 0

    [cameras.front]
    type = "sim"
    camera = "front"
    width = 320
    height = 240
    fps = 30

``save_rig`` writes the full form (every option spelled out), which the GUI can edit and
``load_rig`` reads back unchanged.
"""

from __future__ import annotations

import dataclasses
import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from recorder.devices import configs as C
from recorder.devices.base import Camera, Robot, Teleoperator, ThreadedCamera
from recorder.devices.factory import make_camera, make_robot, make_teleop
from recorder.errors import ConfigError
from recorder.fsutil import write_text_atomic

SIM_TASKS = ("pick", "push")


@dataclass(kw_only=True)
class RigConfig:
    name: str = "rig"
    robot: C.RobotConfig = field(default_factory=C.SimRobotConfig)
    cameras: dict[str, C.CameraConfig] = field(default_factory=dict)
    teleop: C.TeleopConfig | None = None
    task: str | None = None  # sim task; overrides robot.task when set

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name}
        if self.task is not None:
            out["task"] = self.task
        out["robot"] = C.config_to_dict(self.robot)
        out["cameras"] = {k: C.config_to_dict(v) for k, v in self.cameras.items()}
        if self.teleop is not None:
            out["teleop"] = C.config_to_dict(self.teleop)
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any], where: str = "rig file") -> RigConfig:
        data = dict(data)
        known = {"name", "task", "robot", "cameras", "teleop"}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(
                f"{where}: unknown key(s) {', '.join(unknown)}; a rig has {', '.join(sorted(known))}"
            )
        if "robot" not in data:
            raise ConfigError(f'{where}: no [robot] table: add one, e.g. [robot] type = "sim"')
        robot = C.config_from_dict("robot", _table(data["robot"], "robot", where), where)
        cams_raw = data.get("cameras", {})
        if not isinstance(cams_raw, dict):
            raise ConfigError(f"{where}: 'cameras' must be a table of [cameras.<name>] tables")
        cameras = {
            k: C.config_from_dict("camera", _table(v, f"cameras.{k}", where), f"{where} [cameras.{k}]")
            for k, v in cams_raw.items()
        }
        teleop = None
        t = data.get("teleop")
        if isinstance(t, str):
            t = {"type": t}
        if t is not None and t != {"type": "none"}:
            teleop = C.config_from_dict("teleop", _table(t, "teleop", where), where)
        task = data.get("task")
        if task is not None and task not in SIM_TASKS and isinstance(robot, C.SimRobotConfig):
            raise ConfigError(f"{where}: task '{task}' is not a sim task: use one of {', '.join(SIM_TASKS)}")
        return cls(name=str(data.get("name", "rig")), robot=robot, cameras=cameras, teleop=teleop, task=task)


def _table(v: Any, key: str, where: str) -> dict:
    if not isinstance(v, dict):
        raise ConfigError(f"{where}: '{key}' must be a table")
    return v


def sim_rig_config(
    task: str = "pick",
    teleop: str = "keyboard",
    width: int = 320,
    height: int = 240,
    fps: float = 30.0,
    seed: int | None = None,
) -> RigConfig:
    """The built-in simulated rig."""
    teleop_cfg = C.config_from_dict("teleop", {"type": teleop}) if teleop and teleop != "none" else None
    return RigConfig(
        name="sim",
        task=task,
        robot=C.SimRobotConfig(task=task, seed=seed),
        cameras={
            "front": C.SimCameraConfig(camera="front", width=width, height=height, fps=fps),
            "wrist": C.SimCameraConfig(camera="wrist", width=width, height=height, fps=fps),
        },
        teleop=teleop_cfg,
    )


def metaworld_rig_config(
    tasks: str = "mt10",
    teleop: str = "scripted",
    width: int = 224,
    height: int = 224,
    seed: int | None = None,
) -> RigConfig:
    """The built-in Meta-World rig: ``tasks`` (a list name or task names), camera corner2 at the model's size."""
    teleop_cfg = C.config_from_dict("teleop", {"type": teleop}) if teleop and teleop != "none" else None
    return RigConfig(
        name=f"metaworld-{tasks}" if "," not in tasks else "metaworld",
        robot=C.MetaWorldRobotConfig(tasks=tasks, seed=seed),
        cameras={"corner2": C.MetaWorldCameraConfig(camera="corner2", width=width, height=height)},
        teleop=teleop_cfg,
    )


class Rig:
    """The devices of a rig, built (not connected) from a :class:`RigConfig`."""

    def __init__(self, cfg: RigConfig, home: Path | None = None) -> None:
        self.cfg = cfg
        robot_cfg = cfg.robot
        if cfg.task is not None and isinstance(robot_cfg, C.SimRobotConfig):
            robot_cfg = dataclasses.replace(robot_cfg, task=cfg.task)
        self.robot: Robot = make_robot(robot_cfg, home=home)
        self.cameras: dict[str, Camera] = {
            name: make_camera(c, name=name, robot=self.robot) for name, c in cfg.cameras.items()
        }
        self.teleop: Teleoperator | None = (
            make_teleop(cfg.teleop, self.robot, home=home) if cfg.teleop is not None else None
        )

    @property
    def name(self) -> str:
        return self.cfg.name

    @property
    def is_connected(self) -> bool:
        return self.robot.is_connected and all(c.is_connected for c in self.cameras.values())

    def connect(self) -> None:
        done: list = []
        try:
            self.robot.connect()
            done.append(self.robot)
            # start every capture thread first (GL / USB setup overlaps), then wait for each first frame
            for cam in self.cameras.values():
                if isinstance(cam, ThreadedCamera):
                    cam.start_connect()
                    done.append(cam)
            for cam in self.cameras.values():
                if isinstance(cam, ThreadedCamera):
                    cam.finish_connect()
                else:
                    cam.connect()
                    done.append(cam)
            if self.teleop is not None:
                self.teleop.connect()
                done.append(self.teleop)
        except BaseException:
            for dev in reversed(done):
                try:
                    dev.disconnect()
                except Exception:  # noqa: BLE001 - the original error matters more
                    pass
            raise

    def disconnect(self) -> None:
        errors = []
        devs = ([self.teleop] if self.teleop is not None else []) + list(self.cameras.values()) + [self.robot]
        for dev in devs:
            try:
                dev.disconnect()
            except Exception as err:  # noqa: BLE001
                errors.append(err)
        if errors:
            raise errors[0]

    def reset(self, seed: int | None = None) -> None:
        """Start a new episode: the sim robot re-randomizes its scene (seeded); teleoperators that keep a
        goal (keyboard, scripted expert) start again from the measured joints."""
        reset = getattr(self.robot, "reset", None)
        if callable(reset):
            reset(seed)
        treset = getattr(self.teleop, "reset", None)
        if callable(treset):
            treset()

    def __enter__(self) -> Rig:
        self.connect()
        return self

    def __exit__(self, *exc) -> None:
        self.disconnect()

    def snapshot(self) -> dict[str, Any]:
        """JSON-able description stored with each episode: the rig file plus what the devices report."""
        snap = self.cfg.to_dict()
        lo, hi = self.robot.joint_limits
        snap["robot_info"] = {
            "joint_names": list(self.robot.joint_names),
            "joint_limits": {"low": [float(x) for x in lo], "high": [float(x) for x in hi]},
            "observation_features": _jsonable(self.robot.observation_features),
            "action_features": _jsonable(self.robot.action_features),
        }
        task = getattr(self.robot, "task", None)
        if task is not None:
            snap["robot_info"]["task"] = {"name": task.name, "instruction": task.instruction}
            snap["robot_info"]["seed"] = getattr(self.robot, "last_seed", None)
        snap["camera_info"] = {k: _jsonable(c.features) for k, c in self.cameras.items()}
        # names the robot's own LeRobot datasets use (Meta-World: "observation.image", action x/y/z/gripper)
        image_key = getattr(self.robot, "lerobot_image_key", None)
        if image_key and len(self.cameras) == 1:
            snap["robot_info"]["lerobot_camera_keys"] = {next(iter(self.cameras)): image_key}
        names = getattr(self.robot, "lerobot_feature_names", None)
        if names:
            snap["feature_names"] = {k: list(v) for k, v in names.items()}
        return snap


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_jsonable(v) for v in obj]
    if hasattr(obj, "item") and callable(obj.item):
        return obj.item()
    return obj


def read_rig_config(path: str | os.PathLike[str]) -> RigConfig:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"rig file {path} does not exist: pass an existing rig.toml or 'sim'") from None
    except UnicodeDecodeError as err:
        raise ConfigError(f"rig file {path} is not a text (UTF-8) file (byte {err.start} is 0x{err.object[err.start]:02x}): "
                          "pass the rig.toml itself, or write a new one in the Record tab's rig editor") from None
    except OSError as err:
        raise ConfigError(f"rig file {path} cannot be read: {err.strerror or err}") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"rig file {path} is not valid TOML ({err}): fix the line named") from None
    return RigConfig.from_dict(data, where=f"rig file {path}")


def load_rig(spec: str | os.PathLike[str] | RigConfig, home: Path | None = None) -> Rig:
    """Build a rig from ``"sim"``, ``"sim:push"``, ``"metaworld:mt10"`` (any task list), a path to rig.toml,
    or a :class:`RigConfig`."""
    if isinstance(spec, RigConfig):
        return Rig(spec, home=home)
    s = os.fspath(spec)
    if s == "sim" or s.startswith("sim:"):
        task = s.split(":", 1)[1] if ":" in s else "pick"
        if task not in SIM_TASKS:
            raise ConfigError(f"rig '{s}': unknown sim task '{task}': use one of {', '.join(SIM_TASKS)}")
        return Rig(sim_rig_config(task=task), home=home)
    if s == "metaworld" or s.startswith("metaworld:"):
        return Rig(metaworld_rig_config(s.split(":", 1)[1] if ":" in s else "mt10"), home=home)
    return Rig(read_rig_config(s), home=home)


def save_rig(cfg: RigConfig, path: str | os.PathLike[str]) -> Path:
    import tomli_w

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    return write_text_atomic(path, tomli_w.dumps(cfg.to_dict()))
