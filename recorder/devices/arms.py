"""Real arms on servo buses: SO-100/SO-101 (Feetech STS3215) and Koch v1.1 (Dynamixel X, protocol 2.0).

Followers are :class:`Robot` s; leaders are :class:`Teleoperator` s whose action is their own calibrated
joint reading, so after calibrating both arms the leader->follower mapping is the identity on the shared
action space (degrees; gripper 0..100).

Calibration (per arm id, ``<store root>/calibration/<arm id>.json``), done in software:

* ``homing_offset``: raw ticks read with the arm in its middle pose, minus half a turn, so that
  ``homed = raw - homing_offset`` is ``resolution/2`` in the middle pose;
* ``range_min`` / ``range_max``: homed ticks at the ends of each joint's range of motion;
* ``drive_mode`` 1 inverts a joint's direction.

``degrees = (homed - resolution/2) * 360 / resolution`` (sign flipped by drive_mode); the gripper maps
``range_min..range_max`` to 0..100.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from recorder.devices.base import JOINT_NAMES, Robot, Teleoperator
from recorder.devices.configs import (
    KochFollowerConfig,
    KochLeaderConfig,
    LeaderArmConfig,
    ServoArmConfig,
)
from recorder.devices.motors import STS3215, XL_SERIES, DynamixelBus, FeetechBus, MotorTable, ServoBus
from recorder.errors import ConfigError, DeviceError, DeviceTimeoutError
from recorder.fsutil import write_json_atomic

MOTOR_IDS = {name: i + 1 for i, name in enumerate(JOINT_NAMES)}

# SO-101 ranges (degrees; lerobot "new calibration" zero in mid-range), shared by the sim
SO101_LIMITS = (
    np.array([-110, -100, -96.83, -95, -157.2, 0], dtype=np.float32),
    np.array([110, 100, 96.83, 95, 162.8, 100], dtype=np.float32),
)


@dataclass
class JointCalibration:
    id: int
    drive_mode: int = 0
    homing_offset: int = 0
    range_min: int = 0
    range_max: int = 4095


@dataclass
class ArmCalibration:
    arm_id: str
    arm_type: str
    resolution: int
    joints: dict[str, JointCalibration]

    def to_json(self) -> dict:
        return {
            "arm_id": self.arm_id,
            "arm_type": self.arm_type,
            "resolution": self.resolution,
            "joints": {k: asdict(v) for k, v in self.joints.items()},
        }

    @classmethod
    def from_json(cls, data: dict, where: str) -> ArmCalibration:
        try:
            joints = {k: JointCalibration(**v) for k, v in data["joints"].items()}
            cal = cls(
                arm_id=data["arm_id"],
                arm_type=data["arm_type"],
                resolution=int(data["resolution"]),
                joints=joints,
            )
        except (KeyError, TypeError, ValueError) as err:
            raise ConfigError(
                f"calibration file {where} is malformed ({err}): calibrate the arm again"
            ) from None
        missing = [n for n in JOINT_NAMES if n not in joints]
        if missing:
            raise ConfigError(
                f"calibration file {where} lacks joint(s) {', '.join(missing)}: calibrate again"
            )
        return cal

    # raw ticks <-> studio units
    def to_units(self, name: str, raw: int) -> float:
        j = self.joints[name]
        homed = raw - j.homing_offset
        if name == "gripper":
            span = max(1, j.range_max - j.range_min)
            v = (homed - j.range_min) / span * 100.0
            return 100.0 - v if j.drive_mode else v
        deg = (homed - self.resolution / 2) * 360.0 / self.resolution
        return -deg if j.drive_mode else deg

    def to_raw(self, name: str, value: float) -> int:
        j = self.joints[name]
        if name == "gripper":
            v = 100.0 - value if j.drive_mode else value
            homed = j.range_min + v / 100.0 * (j.range_max - j.range_min)
        else:
            deg = -value if j.drive_mode else value
            homed = deg * self.resolution / 360.0 + self.resolution / 2
            homed = min(max(homed, j.range_min), j.range_max)
        return int(round(homed + j.homing_offset))


def calibration_dir(cfg_dir: str | None, home: Path | None) -> Path:
    if cfg_dir:
        return Path(cfg_dir).expanduser()
    if home is None:
        from recorder.paths import resolve_home

        home = resolve_home(None)
    return Path(home) / "calibration"


def calibration_path(arm_id: str, cfg_dir: str | None = None, home: Path | None = None) -> Path:
    return calibration_dir(cfg_dir, home) / f"{arm_id}.json"


def save_calibration(cal: ArmCalibration, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    return write_json_atomic(path, cal.to_json(), indent=2)


def load_calibration(path: Path, arm_type: str) -> ArmCalibration:
    if not path.exists():
        raise ConfigError(
            f"no calibration for this arm ({path} is missing): run 'vla-studio devices calibrate "
            f"--type {arm_type} --port <port> --id {path.stem}'"
        )
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as err:
        raise ConfigError(
            f"calibration file {path} cannot be read ({err}): calibrate the arm again"
        ) from None
    return ArmCalibration.from_json(data, str(path))


def _bus_for(arm_type: str, port: str, baudrate: int, timeout_s: float) -> tuple[ServoBus, MotorTable]:
    if arm_type.startswith("koch"):
        return DynamixelBus(port, baudrate, timeout_s), XL_SERIES
    return FeetechBus(port, baudrate, timeout_s), STS3215


class _ArmBus:
    """Shared plumbing: a bus with the six motors, calibrated reads and writes."""

    def __init__(self, arm_type: str, cfg, home: Path | None) -> None:
        if not cfg.port:
            raise ConfigError(
                f"{arm_type} '{cfg.id}': no serial port set: add port = \"/dev/ttyACM0\" "
                "('vla-studio devices' lists ports)"
            )
        self.arm_type = arm_type
        self.cfg = cfg
        self.bus, self.table = _bus_for(arm_type, cfg.port, cfg.baudrate, cfg.timeout_s)
        self.ids = [MOTOR_IDS[n] for n in JOINT_NAMES]
        self.cal_path = calibration_path(cfg.id, cfg.calibration_dir, home)
        self.cal: ArmCalibration | None = None

    def open(self, need_calibration: bool = True) -> None:
        if need_calibration:
            self.cal = load_calibration(self.cal_path, self.arm_type)
        self.bus.open()
        try:
            for sid in self.ids:
                if not self.bus.ping(sid):
                    raise DeviceTimeoutError(
                        f"{self.arm_type} '{self.cfg.id}': servo {sid} ({JOINT_NAMES[sid - 1]}) on {self.cfg.port} "
                        "did not answer: check its power, cable and id"
                    )
        except BaseException:
            self.bus.close()
            raise

    def read_raw(self) -> dict[int, int]:
        addr, size = self.table.present
        raw = self.bus.sync_read(addr, size, self.ids)
        return {sid: self.table.decode_position(v) for sid, v in raw.items()}

    def read_units(self) -> np.ndarray:
        raw = self.read_raw()
        return np.array([self.cal.to_units(n, raw[MOTOR_IDS[n]]) for n in JOINT_NAMES], dtype=np.float32)

    def write_units(self, values: np.ndarray) -> None:
        addr, size = self.table.goal
        goals = {
            MOTOR_IDS[n]: self.table.encode_position(self.cal.to_raw(n, float(v)))
            for n, v in zip(JOINT_NAMES, values)
        }
        self.bus.sync_write(addr, size, goals)

    def position_mode(self) -> None:
        if self.table.operating_mode is not None:
            addr, size, value = self.table.operating_mode
            for sid in self.ids:
                self.bus.write(sid, addr, size, value)

    def torque(self, on: bool) -> None:
        # one acknowledged write per servo: torque must really be on (or off) before we go on
        addr, size = self.table.torque
        for sid in self.ids:
            self.bus.write(sid, addr, size, int(on))


class ServoArm(Robot):
    """SO-100 / SO-101 / Koch follower arm."""

    def __init__(self, cfg: ServoArmConfig, home: Path | None = None) -> None:
        self.cfg = cfg
        self.name = cfg.id
        self.joint_names = list(JOINT_NAMES)
        self._arm = _ArmBus(cfg.type, cfg, home)
        self._connected = False
        self._limits = SO101_LIMITS

    @property
    def joint_limits(self):
        return self._limits[0].copy(), self._limits[1].copy()

    @property
    def is_connected(self) -> bool:
        return self._connected

    def describe(self) -> str:
        return f"{self.cfg.type} '{self.cfg.id}' on {self.cfg.port}"

    def connect(self) -> None:
        if self._connected:
            return
        self._arm.open()
        try:
            self._arm.torque(False)  # the operating mode can only be written with torque off
            self._arm.position_mode()
            self._arm.torque(True)
        except BaseException:
            self._arm.bus.close()
            raise
        self._connected = True

    def disconnect(self) -> None:
        if not self._arm.bus.is_open:
            self._connected = False
            return
        try:
            self._arm.torque(False)
        finally:
            self._arm.bus.close()
            self._connected = False

    def get_observation(self) -> dict[str, np.ndarray]:
        self._require_connected()
        return {"observation.state": self._arm.read_units()}

    def send_action(self, action: np.ndarray) -> np.ndarray:
        self._require_connected()
        a = self.clip_action(action)
        if self.cfg.max_relative_target is not None:
            present = self._arm.read_units()
            m = float(self.cfg.max_relative_target)
            a = np.clip(a, present - m, present + m).astype(np.float32)
        self._arm.write_units(a)
        return a

    def set_torque(self, on: bool) -> None:
        self._require_connected()
        self._arm.torque(on)


class LeaderArmTeleop(Teleoperator):
    """A leader arm (torque off, moved by hand): its calibrated joints are the follower's goal."""

    def __init__(self, cfg: LeaderArmConfig, robot: Robot | None = None, home: Path | None = None) -> None:
        self.cfg = cfg
        self.name = cfg.id
        self.joint_names = list(JOINT_NAMES)
        self._arm = _ArmBus(cfg.type, cfg, home)
        self._connected = False
        if robot is not None and list(robot.joint_names) != JOINT_NAMES:
            raise ConfigError(f"leader '{cfg.id}' has joints {JOINT_NAMES}, robot has {robot.joint_names}")
        self.koch = isinstance(cfg, KochLeaderConfig)

    @property
    def is_connected(self) -> bool:
        return self._connected

    def describe(self) -> str:
        return f"{self.cfg.type} '{self.cfg.id}' on {self.cfg.port}"

    def connect(self) -> None:
        self._arm.open()
        try:
            self._arm.torque(False)
        except BaseException:
            self._arm.bus.close()
            raise
        self._connected = True

    def disconnect(self) -> None:
        self._arm.bus.close()
        self._connected = False

    def get_action(self, observation: dict[str, np.ndarray]) -> np.ndarray:
        self._require_connected()
        return self._arm.read_units()


def calibrate_arm(
    arm_type: str,
    cfg,
    home: Path | None = None,
    wait_for_middle: Callable[[], None] = lambda: None,
    record_s: float = 10.0,
    should_stop: Callable[[], bool] = lambda: False,
    invert: tuple[str, ...] = (),
) -> ArmCalibration:
    """Interactive calibration: put the arm in its middle pose (``wait_for_middle`` returns when it is),
    then move every joint through its whole range for ``record_s`` seconds (or until ``should_stop``).
    Saves ``<calibration dir>/<arm id>.json`` and returns the calibration."""
    arm = _ArmBus(arm_type, cfg, home)
    arm.open(need_calibration=False)
    try:
        arm.torque(False)
        wait_for_middle()
        half = arm.table.resolution // 2
        mid = arm.read_raw()
        offsets = {sid: mid[sid] - half for sid in arm.ids}
        lo = {sid: half for sid in arm.ids}
        hi = {sid: half for sid in arm.ids}
        t_end = time.monotonic() + record_s
        while time.monotonic() < t_end and not should_stop():
            raw = arm.read_raw()
            for sid in arm.ids:
                homed = raw[sid] - offsets[sid]
                lo[sid] = min(lo[sid], homed)
                hi[sid] = max(hi[sid], homed)
            time.sleep(0.01)
    finally:
        arm.bus.close()
    joints = {
        n: JointCalibration(
            id=MOTOR_IDS[n],
            drive_mode=int(n in invert),
            homing_offset=offsets[MOTOR_IDS[n]],
            range_min=lo[MOTOR_IDS[n]],
            range_max=hi[MOTOR_IDS[n]],
        )
        for n in JOINT_NAMES
    }
    if joints["gripper"].range_max - joints["gripper"].range_min < 20:
        raise DeviceError(
            f"{arm_type} '{cfg.id}': the gripper barely moved during calibration: open and close it "
            "fully while recording"
        )
    cal = ArmCalibration(arm_id=cfg.id, arm_type=arm_type, resolution=arm.table.resolution, joints=joints)
    save_calibration(cal, arm.cal_path)
    return cal


__all__ = [
    "ServoArm",
    "LeaderArmTeleop",
    "ArmCalibration",
    "JointCalibration",
    "calibrate_arm",
    "save_calibration",
    "load_calibration",
    "calibration_path",
    "KochFollowerConfig",
]
