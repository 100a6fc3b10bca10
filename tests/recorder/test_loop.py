import threading
import time

import numpy as np
import pytest

from recorder.cycle import CycleTimer
from recorder.errors import DeviceError
from recorder.loop import ActionStep, LoopConfig, TeleopSource, run_episode
from tests.recorder.record_doubles import FailingCamera, MemoryWriter, ThreadCamera, fake_rig


def _connected(rig):
    rig.connect()
    return rig


def test_cycle_timer_sleeps_to_deadlines_and_counts_late_ticks():
    now = [0.0]
    slept = []

    def sleep(dt):
        slept.append(dt)
        now[0] += dt

    timer = CycleTimer(0.1, clock=lambda: now[0], sleep=sleep)
    timer.start()
    now[0] += 0.03  # a 30 ms tick: sleeps the remaining 70 ms, not a fixed 100 ms
    assert timer.wait() == pytest.approx(0.1)
    assert slept[-1] == pytest.approx(0.07)
    now[0] += 0.25  # a tick that overran two deadlines: late, no burst of catch-up ticks
    start = timer.wait()
    assert timer.late_ticks == 1
    assert start == pytest.approx(0.35)
    now[0] += 0.01
    timer.wait()  # next deadline is on the original grid (0.4), not 0.35 + 0.1 = 0.45
    assert now[0] == pytest.approx(0.4)
    assert timer.jitter_percentile_ms(99) > 0


def test_loop_three_seconds_every_tick_written_and_stale_counted():
    rig = _connected(fake_rig(cameras=("front", "wrist"), camera_cls=ThreadCamera, fps=30.0))
    writer = MemoryWriter()
    ticks = []
    try:
        res = run_episode(
            rig, TeleopSource(rig.teleop), writer, LoopConfig(fps=30, max_duration_s=3.0), threading.Event(),
            ticks.append,
        )
    finally:
        rig.disconnect()
    assert res.reason == "time_limit"
    assert res.ticks == res.written == len(writer.ticks) == 90
    assert len(ticks) == 90
    t = np.array([x["t"] for x in writer.ticks])
    assert np.all(np.diff(t) > 0)
    # 90 ticks at 30 Hz span ~2.97 s; a loop at 15 or 60 Hz would span 5.9 or 1.5 s. The margin allows a
    # loaded CI core (tests run in parallel workers) to make a few ticks late without hiding a wrong rate.
    assert t[-1] - t[0] == pytest.approx(89 / 30, abs=0.6)
    for cam in ("front", "wrist"):
        ts = np.array([x["timestamps"][cam] for x in writer.ticks])
        assert np.all(np.diff(ts) >= 0)  # capture times never go back
        # every repeated frame (same capture) is counted as stale, none is silent
        repeats = int(np.sum(np.diff(ts) == 0))
        assert res.stale[cam] == repeats
        assert sum(e - s + 1 for k, s, e in writer.segments if k == f"stale.{cam}") == repeats
    assert res.jitter_p99_ms >= 0
    assert set(res.timings_mean_ms) >= {"observe", "action", "send", "write"}


def test_slow_camera_frames_are_counted_stale_and_marked():
    rig = _connected(fake_rig(camera_cls=ThreadCamera, fps=10.0))
    writer = MemoryWriter()
    try:
        res = run_episode(rig, TeleopSource(rig.teleop), writer, LoopConfig(fps=30, max_duration_s=1.0), threading.Event(), None)
    finally:
        rig.disconnect()
    assert res.written == 30
    assert 12 <= res.stale["front"] <= 24  # about 2 of 3 ticks see the held frame
    assert any(k == "stale.front" for k, _, _ in writer.segments)


def test_writer_drops_are_reported():
    rig = _connected(fake_rig())
    writer = MemoryWriter(drop_every=5)
    infos = []
    res = run_episode(rig, TeleopSource(rig.teleop), writer, LoopConfig(fps=100, max_duration_s=0.2), threading.Event(), infos.append)
    assert res.dropped["front"] == 4
    assert infos[-1].dropped["front"] == 4


def test_reset_phase_drives_the_arm_but_writes_nothing():
    rig = _connected(fake_rig())
    writer = MemoryWriter()
    res = run_episode(rig, TeleopSource(rig.teleop), writer, LoopConfig(fps=100, max_duration_s=0.1, record=False), threading.Event(), None)
    assert res.ticks == 10 and res.written == 0
    assert writer.ticks == []
    assert len(rig.robot.sent) == 10
    assert rig.robot.q[0] == pytest.approx(5.0)


def test_extras_and_sent_action_are_written():
    rig = _connected(fake_rig())
    rig.robot.joint_limits = (np.full(6, -1.0, np.float32), np.full(6, 1.0, np.float32))
    writer = MemoryWriter()

    def policy(obs, frames, tick):
        return ActionStep(np.full(6, 5.0, np.float32), extras={"policy.chunk": np.ones((4, 6), np.float32)}, source="policy")

    run_episode(rig, policy, writer, LoopConfig(fps=100, max_duration_s=0.05), threading.Event(), None)
    v = writer.ticks[0]["values"]
    assert v["policy.chunk"].shape == (4, 6)
    np.testing.assert_array_equal(v["action"], np.ones(6))  # what the arm got after clipping
    assert "observation.state" in v


def test_estop_halts_sending_within_the_tick():
    rig = _connected(fake_rig())
    estop = threading.Event()
    writer = MemoryWriter()

    def source(obs, frames, tick):
        if tick == 5:
            estop.set()  # pressed while this tick was computing its action
        return ActionStep(obs["observation.state"] + 1)

    res = run_episode(rig, source, writer, LoopConfig(fps=100, estop=estop), threading.Event(), None)
    assert res.reason == "estop"
    assert len(rig.robot.sent) == 5  # tick 5's action never went out
    assert ("estop", 5, 5) in writer.segments


def test_estop_from_another_thread_stops_the_loop_quickly():
    rig = _connected(fake_rig())
    estop = threading.Event()
    threading.Timer(0.2, estop.set).start()
    t0 = time.monotonic()
    res = run_episode(rig, TeleopSource(rig.teleop), None, LoopConfig(fps=30, estop=estop), threading.Event(), None)
    assert res.reason == "estop"
    assert time.monotonic() - t0 < 0.2 + 2 / 30 + 0.1
    n = len(rig.robot.sent)
    time.sleep(0.1)
    assert len(rig.robot.sent) == n


def test_camera_lost_mid_episode_ends_loop_with_fault_and_keeps_ticks():
    rig = _connected(fake_rig(camera_cls=FailingCamera, fail_after=12))
    writer = MemoryWriter()
    res = run_episode(rig, TeleopSource(rig.teleop), writer, LoopConfig(fps=100), threading.Event(), None)
    assert res.reason == "fault"
    assert isinstance(res.error, DeviceError)
    assert "front" in str(res.error)
    assert res.written == len(writer.ticks) == 12


def test_arm_lost_and_disk_full_are_faults_not_crashes():
    rig = _connected(fake_rig())
    rig.robot.fail_after_sends = 7
    res = run_episode(rig, TeleopSource(rig.teleop), MemoryWriter(), LoopConfig(fps=100), threading.Event(), None)
    assert res.reason == "fault" and isinstance(res.error, DeviceError) and res.written == 7

    rig2 = _connected(fake_rig())
    writer = MemoryWriter(enospc_after=4)
    res = run_episode(rig2, TeleopSource(rig2.teleop), writer, LoopConfig(fps=100), threading.Event(), None)
    assert res.reason == "fault" and isinstance(res.error, OSError) and res.written == 4
