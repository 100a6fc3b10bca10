"""Feetech and Dynamixel drivers against a fake servo bus on a pty pair."""

from __future__ import annotations

import json

import numpy as np
import pytest

from recorder.devices import make_robot, make_teleop
from recorder.devices.arms import (
    ArmCalibration,
    JointCalibration,
    calibrate_arm,
    calibration_path,
    save_calibration,
)
from recorder.devices.base import JOINT_NAMES
from recorder.devices.configs import (
    KochFollowerConfig,
    SO101FollowerConfig,
    SO101LeaderConfig,
)
from recorder.devices.motors import DynamixelBus, FeetechBus, dxl_crc, dxl_packet, feetech_packet
from recorder.errors import ConfigError, DeviceError, DeviceTimeoutError

from .fake_servo import FakeServoBus


@pytest.fixture(params=["feetech", "dynamixel"])
def fake(request):
    bus = FakeServoBus(request.param)
    yield bus
    bus.close()


def _bus(fake, timeout=0.05):
    cls = FeetechBus if fake.protocol == "feetech" else DynamixelBus
    return cls(fake.port, baudrate=1_000_000, timeout_s=timeout)


def test_packet_encoders_match_the_protocol_manuals():
    assert feetech_packet(1, 0x01) == bytes.fromhex("ffff010201fb")
    assert dxl_packet(1, 0x01) == bytes.fromhex("fffffd00010300011 94e".replace(" ", ""))
    assert dxl_crc(b"123456789") == 0xFEE8


def test_read_write_sync_and_torque(fake):
    fake.set_position(3, 1234)
    fake.set_position(5, -20 if fake.protocol == "dynamixel" else 77)
    with _bus(fake) as bus:
        assert bus.ping(1) and not bus.ping(9)
        addr, size = (56, 2) if fake.protocol == "feetech" else (132, 4)
        assert bus.read(3, addr, size) == 1234
        got = bus.sync_read(addr, size, [1, 2, 3, 4, 5, 6])
        assert got[3] == 1234 and got[1] == 0
        torque = 40 if fake.protocol == "feetech" else 64
        bus.write(2, torque, 1, 1)
        assert fake.torque(2) == 1
        goal = (42, 2) if fake.protocol == "feetech" else (116, 4)
        bus.sync_write(goal[0], goal[1], {1: 100, 2: 2000, 6: 4000})
        bus.read(1, addr, size)  # a round trip: the sync write has been handled before this returns
        assert (fake.goal(1), fake.goal(2), fake.goal(6)) == (100, 2000, 4000)


def test_silent_servo_times_out_naming_port_and_id(fake):
    fake.silent.add(4)
    with _bus(fake, timeout=0.25) as bus:
        addr, size = (56, 2) if fake.protocol == "feetech" else (132, 4)
        with pytest.raises(DeviceTimeoutError) as err:
            bus.sync_read(addr, size, [1, 2, 3, 4])
        assert "servo 4" in str(err.value) and fake.port in str(err.value)


def test_bad_checksum_is_a_device_error(fake):
    fake.corrupt.add(2)
    with _bus(fake) as bus:
        addr, size = (56, 2) if fake.protocol == "feetech" else (132, 4)
        with pytest.raises(DeviceError, match=r"servo 2 on .*(checksum|CRC)"):
            bus.read(2, addr, size)


def test_port_that_does_not_exist():
    with pytest.raises(DeviceError, match="/dev/ttyNOPE"):
        FeetechBus("/dev/ttyNOPE").open()


def _calibration(arm_id, arm_type, resolution=4096):
    joints = {
        n: JointCalibration(id=i + 1, homing_offset=100, range_min=1024, range_max=3072)
        for i, n in enumerate(JOINT_NAMES)
    }
    joints["gripper"] = JointCalibration(id=6, homing_offset=0, range_min=2000, range_max=3000)
    return ArmCalibration(arm_id=arm_id, arm_type=arm_type, resolution=resolution, joints=joints)


@pytest.mark.parametrize(
    "cfg_cls, protocol", [(SO101FollowerConfig, "feetech"), (KochFollowerConfig, "dynamixel")]
)
def test_follower_arm_reads_degrees_and_writes_goals(tmp_path, cfg_cls, protocol):
    fake = FakeServoBus(protocol)
    try:
        cfg = cfg_cls(port=fake.port, id="arm1", calibration_dir=str(tmp_path))
        robot = make_robot(cfg)
        with pytest.raises(ConfigError, match="calibrate"):
            robot.connect()
        save_calibration(_calibration("arm1", cfg.type), calibration_path("arm1", str(tmp_path)))
        for sid in range(1, 7):
            fake.set_position(sid, 2048 + 100)  # the middle pose (homing offset 100)
        fake.set_position(2, 2048 + 100 + 512)  # shoulder_lift at +45 degrees
        fake.set_position(6, 2500)  # gripper half open
        with robot:
            assert all(fake.torque(s) == 1 for s in range(1, 7))
            mode_addr, position_mode = (33, 0) if protocol == "feetech" else (11, 3)
            assert all(fake.mem[s][mode_addr] == position_mode for s in range(1, 7))
            state = robot.get_observation()["observation.state"]
            np.testing.assert_allclose(state, [0, 45, 0, 0, 0, 50], atol=0.1)
            robot.send_action(np.array([90, -45, 10, 0, 0, 100], dtype=np.float32))
            robot.get_observation()
            assert fake.goal(1) == 2048 + 1024 + 100
            assert fake.goal(2) == 2048 - 512 + 100
            assert fake.goal(6) == 3000
            state = robot.get_observation()["observation.state"]
            np.testing.assert_allclose(state, [90, -45, 10, 0, 0, 100], atol=0.1)
        assert all(fake.torque(s) == 0 for s in range(1, 7))
    finally:
        fake.close()


def test_follower_with_a_dead_servo_names_it(tmp_path):
    fake = FakeServoBus("feetech")
    fake.silent.add(5)
    try:
        save_calibration(_calibration("a", "so101_follower"), calibration_path("a", str(tmp_path)))
        robot = make_robot(
            SO101FollowerConfig(port=fake.port, id="a", calibration_dir=str(tmp_path), timeout_s=0.02)
        )
        with pytest.raises(DeviceTimeoutError, match=r"servo 5 \(wrist_roll\)") as err:
            robot.connect()
        assert fake.port in str(err.value)
    finally:
        fake.close()


def test_calibration_then_leader_drives_follower(tmp_path):
    leader_bus, follower_bus = FakeServoBus("feetech"), FakeServoBus("feetech")
    try:
        lcfg = SO101LeaderConfig(port=leader_bus.port, id="leader1", calibration_dir=str(tmp_path))
        # middle pose reads 2000 everywhere; then each joint sweeps +-800 and the gripper 0..+600
        for s in range(1, 7):
            leader_bus.set_position(s, 2000)

        def sweep():
            for s in range(1, 7):
                leader_bus.set_position(s, 2000 - 800 if s < 6 else 2000)
            yield
            for s in range(1, 7):
                leader_bus.set_position(s, 2000 + 800 if s < 6 else 2600)
            yield

        steps = sweep()
        cal = calibrate_arm(
            "so101_leader", lcfg, record_s=5.0, should_stop=lambda: next(steps, "done") == "done"
        )
        saved = json.loads((tmp_path / "leader1.json").read_text())
        assert saved["joints"]["shoulder_pan"]["homing_offset"] == 2000 - 2048
        assert cal.joints["shoulder_pan"].range_min == 2048 - 800
        assert cal.joints["gripper"].range_max - cal.joints["gripper"].range_min == 600

        save_calibration(_calibration("f1", "so101_follower"), calibration_path("f1", str(tmp_path)))
        robot = make_robot(
            SO101FollowerConfig(port=follower_bus.port, id="f1", calibration_dir=str(tmp_path))
        )
        teleop = make_teleop(lcfg, robot)
        for s in range(1, 7):
            leader_bus.set_position(s, 2000 + 256)  # +22.5 degrees on every joint
        leader_bus.set_position(6, 2300)  # gripper at 50 %
        with robot, teleop:
            assert leader_bus.torque(1) == 0  # a leader is moved by hand
            action = teleop.get_action(robot.get_observation())
            np.testing.assert_allclose(action, [22.5] * 5 + [50.0], atol=0.1)
            robot.send_action(action)
            np.testing.assert_allclose(robot.get_observation()["observation.state"], action, atol=0.1)
    finally:
        leader_bus.close()
        follower_bus.close()
