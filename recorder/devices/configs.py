"""Device configs: one ``@dataclass(kw_only=True)`` per device type, registered by a type string.

A rig file names each device by ``type = "..."``; :func:`config_from_dict` picks the registered class
and checks the keys, so a typo in rig.toml is a one-line :class:`ConfigError`. Nothing here imports a
vendor SDK: the factory (:mod:`recorder.devices.factory`) does that lazily, per type.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, ClassVar

from recorder.errors import ConfigError

_REGISTRY: dict[str, dict[str, type]] = {"camera": {}, "robot": {}, "teleop": {}}


def register(kind: str, type_name: str):
    """Class decorator: ``@register("camera", "opencv")``."""

    def deco(cls):
        cls.type = type_name
        _REGISTRY[kind][type_name] = cls
        return cls

    return deco


def registered_types(kind: str) -> list[str]:
    return sorted(_REGISTRY[kind])


def config_from_dict(kind: str, data: dict[str, Any], where: str = "rig file") -> Any:
    data = dict(data)
    type_name = data.pop("type", None)
    if type_name is None:
        raise ConfigError(f"{where}: {kind} entry has no 'type' (one of {', '.join(registered_types(kind))})")
    cls = _REGISTRY[kind].get(type_name)
    if cls is None:
        raise ConfigError(
            f"{where}: unknown {kind} type '{type_name}': use one of {', '.join(registered_types(kind))}"
        )
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise ConfigError(
            f"{where}: {kind} type '{type_name}' has no option(s) {', '.join(unknown)}; "
            f"known: {', '.join(sorted(names))}"
        )
    for f in dataclasses.fields(cls):
        if f.name in data:
            _check_type(f, data[f.name], f"{where}: {kind} type '{type_name}'")
    try:
        return cls(**data)
    except (TypeError, ValueError) as err:
        raise ConfigError(f"{where}: {kind} type '{type_name}': {err}") from err


_PLAIN_TYPES = {"int": (int,), "float": (int, float), "str": (str,), "bool": (bool,), "None": (type(None),)}
_TYPE_WORDS = {"int": "a whole number", "float": "a number", "str": "a quoted text", "bool": "true or false"}


def _check_type(f: dataclasses.Field, value: Any, where: str) -> None:
    """A value of the wrong TOML type (``width = "320"``) -> one line naming the option and the fix (options
    annotated with anything but int, float, str, bool and None are left to the class)."""
    names = [n.strip() for n in str(f.type).split("|")]
    if not all(n in _PLAIN_TYPES for n in names):
        return
    allowed = tuple(t for n in names for t in _PLAIN_TYPES[n])
    if isinstance(value, allowed) and not (isinstance(value, bool) and bool not in allowed):
        return
    want = " or ".join(_TYPE_WORDS[n] for n in names if n != "None")
    example = f.default if f.default is not dataclasses.MISSING and f.default is not None else None
    hint = f"; e.g. {f.name} = {_toml_literal(example)}" if example is not None else ""
    raise ConfigError(f"{where}: {f.name} must be {want}, not {_toml_literal(value)} "
                      f"({type(value).__name__}){hint}")


def _toml_literal(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return '"' + value[:40].replace('"', '\\"') + '"'
    return repr(value)[:40]


def config_to_dict(cfg: Any) -> dict[str, Any]:
    """Plain dict with ``type`` first; ``None`` values are left out (TOML has no null)."""
    out: dict[str, Any] = {"type": cfg.type}
    for f in dataclasses.fields(cfg):
        v = getattr(cfg, f.name)
        if v is None:
            continue
        if isinstance(v, tuple):
            v = list(v)
        out[f.name] = v
    return out


# ---------------------------------------------------------------- cameras
@dataclass(kw_only=True)
class CameraConfig:
    type: ClassVar[str] = ""
    width: int = 320
    height: int = 240
    fps: float = 30.0
    connect_timeout_s: float = 5.0

    def __post_init__(self) -> None:
        if self.width <= 0 or self.height <= 0 or self.fps <= 0:
            raise ValueError(
                f"width, height and fps must be positive (got {self.width}x{self.height} @ {self.fps})"
            )


@register("camera", "test_pattern")
@dataclass(kw_only=True)
class TestPatternCameraConfig(CameraConfig):
    """Synthetic colour bars with a moving bar and the frame counter drawn in."""

    __test__ = False  # not a pytest class
    pattern: str = "bars"


@register("camera", "opencv")
@dataclass(kw_only=True)
class OpenCVCameraConfig(CameraConfig):
    index_or_path: int | str = 0  # 0, "/dev/video2", or a video file (played at `fps`)
    fourcc: str | None = "MJPG"  # None leaves the driver's default
    backend: str = "any"  # "any" | "v4l2"


@register("camera", "realsense")
@dataclass(kw_only=True)
class RealSenseCameraConfig(CameraConfig):
    serial: str | None = None  # None: the first camera found
    playback: str | None = None  # a recorded .db3/.bag file instead of a live camera
    use_depth: bool = False  # depth aligned to colour, uint16 millimetres
    loop_playback: bool = True


@register("camera", "sim")
@dataclass(kw_only=True)
class SimCameraConfig(CameraConfig):
    camera: str = "front"  # a camera of the sim scene: "front" | "wrist"
    shadows: bool = False  # shadows cost ~3x render time at 320x240 on a CPU


@register("camera", "metaworld")
@dataclass(kw_only=True)
class MetaWorldCameraConfig(CameraConfig):
    """A camera of the Meta-World scene, rendered after every step (only with the metaworld robot)."""

    camera: str = "corner2"  # the benchmark's camera (LeRobot's protocol); corner, topview, gripperPOV, ...
    width: int = 224  # render at the model's input size
    height: int = 224
    fps: float = 80.0  # Meta-World's control rate
    shadows: bool = True  # as LeRobot renders; False renders ~4x faster on a CPU but the images differ
    # shadow map size in px (0: the scene's own 4096, as LeRobot). 1024 draws nearly LeRobot's images (0.1 grey
    # level off on average at 112 px) at ~4.6x the frame rate of 16 renderers sharing an H200 (docs/benchmarks.md)
    shadow_size: int = 0

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.shadow_size != 0 and not 64 <= self.shadow_size <= 16384:
            raise ValueError(f"shadow_size must be 0 (the scene's own) or 64..16384 px (got {self.shadow_size})")


# ---------------------------------------------------------------- robots
@dataclass(kw_only=True)
class RobotConfig:
    type: ClassVar[str] = ""
    id: str = ""


@register("robot", "sim")
@dataclass(kw_only=True)
class SimRobotConfig(RobotConfig):
    id: str = "sim"
    task: str = "pick"  # "pick" | "push"
    seed: int | None = None  # seed of the first reset (None: random)
    realtime: bool = True  # True: physics follows time.monotonic(); False: only step_physics(dt) advances it
    timestep: float = 0.002  # physics step, seconds
    max_catch_up_s: float = 0.1  # a stall longer than this pauses the sim instead of jumping


@register("robot", "metaworld")
@dataclass(kw_only=True)
class MetaWorldRobotConfig(RobotConfig):
    """Meta-World's Sawyer arm: each episode runs one task of ``tasks`` (seeds walk the list in turn)."""

    id: str = "metaworld"
    tasks: str = "mt10"  # task names and/or lists, comma-separated: "mt10", "mt50", "easy", "pick-place-v3,reach-v3"
    seed: int | None = None  # seed of the first reset (None: random); each episode reset takes its own seed
    max_steps: int = 500  # steps per episode (the benchmark's 500 at most)


@dataclass(kw_only=True)
class ServoArmConfig(RobotConfig):
    port: str = ""
    id: str = "default"  # calibration is stored per arm id
    baudrate: int = 1_000_000
    timeout_s: float = 0.05  # per packet
    max_relative_target: float | None = None  # clamp each goal step (degrees) for safety
    calibration_dir: str | None = None  # default: <store root>/calibration


@register("robot", "so101_follower")
@dataclass(kw_only=True)
class SO101FollowerConfig(ServoArmConfig):
    pass


@register("robot", "so100_follower")
@dataclass(kw_only=True)
class SO100FollowerConfig(ServoArmConfig):
    pass


@register("robot", "koch_follower")
@dataclass(kw_only=True)
class KochFollowerConfig(ServoArmConfig):
    baudrate: int = 1_000_000


# ---------------------------------------------------------------- teleoperators
@dataclass(kw_only=True)
class TeleopConfig:
    type: ClassVar[str] = ""


@register("teleop", "keyboard")
@dataclass(kw_only=True)
class KeyboardTeleopConfig(TeleopConfig):
    mode: str = "ee"  # "ee" (end-effector velocity via differential IK) | "joint"
    fps: float = 30.0  # get_action() calls per second (one integration step per call)
    linear_speed: float = 0.10  # m/s in ee mode
    angular_speed: float = 90.0  # deg/s for pitch/roll keys and for every joint in joint mode
    gripper_speed: float = 150.0  # gripper units (0..100) per second
    damping: float = 0.05  # damped-least-squares lambda


@register("teleop", "gamepad")
@dataclass(kw_only=True)
class GamepadTeleopConfig(TeleopConfig):
    index: int = 0
    fps: float = 30.0
    linear_speed: float = 0.10
    angular_speed: float = 90.0
    gripper_speed: float = 150.0
    deadzone: float = 0.15


@register("teleop", "spacemouse")
@dataclass(kw_only=True)
class SpaceMouseTeleopConfig(TeleopConfig):
    fps: float = 30.0
    linear_speed: float = 0.10
    angular_speed: float = 90.0
    gripper_speed: float = 150.0
    deadzone: float = 0.1


@register("teleop", "scripted")
@dataclass(kw_only=True)
class ScriptedTeleopConfig(TeleopConfig):
    """The scripted expert of the sim task or of the Meta-World task (only with those robots)."""

    fps: float = 30.0
    noise_deg: float = 0.0  # optional action noise for diverse demonstrations
    seed: int | None = None


@dataclass(kw_only=True)
class LeaderArmConfig(TeleopConfig):
    port: str = ""
    id: str = "leader"
    baudrate: int = 1_000_000
    timeout_s: float = 0.05
    calibration_dir: str | None = None


@register("teleop", "so101_leader")
@dataclass(kw_only=True)
class SO101LeaderConfig(LeaderArmConfig):
    pass


@register("teleop", "so100_leader")
@dataclass(kw_only=True)
class SO100LeaderConfig(LeaderArmConfig):
    pass


@register("teleop", "koch_leader")
@dataclass(kw_only=True)
class KochLeaderConfig(LeaderArmConfig):
    pass


__all__ = [n for n in dir() if n.endswith("Config")] + [
    "register",
    "registered_types",
    "config_from_dict",
    "config_to_dict",
    "field",
]
