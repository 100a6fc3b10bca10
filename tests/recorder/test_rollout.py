import threading
import time

import numpy as np
import pytest

from recorder.errors import ConfigError
from recorder.loop import LoopConfig, run_episode
from recorder.rollout import (
    EXTRA_CHUNK,
    EXTRA_HELD,
    EXTRA_ROW,
    ChunkConfig,
    ChunkScheduler,
    PinholeCalibration,
    PolicySource,
)
from recorder.safety import SafetyLayer
from tests.rollout_doubles import FakeRig, FakeTeleop, FixedChunkPolicy, MemoryWriter


def test_execute_n_of_k_asks_every_n_ticks():
    s = ChunkScheduler(ChunkConfig(execute=2, asynchronous=False), chunk_size=4)
    assert s.needs_chunk(0)
    s.add(0, np.arange(4)[:, None] * np.ones((1, 2)))
    assert s.action(0)[0].tolist() == [0, 0] and not s.needs_chunk(1)
    assert s.action(1)[0].tolist() == [1, 1] and s.needs_chunk(2)
    # next chunk late: the current one keeps running up to its K-th row, then the tick holds
    assert s.action(3)[0].tolist() == [3, 3]
    assert s.action(4) == (None, -1)


def test_temporal_ensembling_matches_act_weights():
    m = 0.5
    s = ChunkScheduler(ChunkConfig(ensemble=True, ensemble_decay=m), chunk_size=3)
    s.add(0, np.array([[0.0], [10.0], [20.0]]), now=0)
    s.add(1, np.array([[100.0], [110.0], [120.0]]), now=1)
    s.add(2, np.array([[200.0], [210.0], [220.0]]), now=2)
    a, _ = s.action(2)
    preds = np.array([20.0, 110.0, 200.0])  # oldest first
    w = np.exp(-m * np.arange(3))
    assert a[0] == pytest.approx((w * preds).sum() / w.sum())
    # tick 3: chunk 0 no longer covers it
    a3, _ = s.action(3)
    w2 = np.exp(-m * np.arange(2))
    assert a3[0] == pytest.approx((w2 * np.array([120.0, 210.0])).sum() / w2.sum())


def test_a_chunk_that_arrives_after_all_its_rows_ran_out_still_runs_its_last_row():
    s = ChunkScheduler(ChunkConfig(), chunk_size=3)
    s.add(0, np.array([[0.0], [1.0], [2.0]]), now=10)
    assert s.action(10)[0].tolist() == [2.0]


def test_execute_out_of_range_is_a_config_error():
    with pytest.raises(ConfigError, match="--execute"):
        ChunkScheduler(ChunkConfig(execute=9), chunk_size=4)


def _run(rig, source, ticks, fps=100.0, safety=None, writer=None, stop=None, on_tick=None):
    stop = stop or source.stop
    writer = writer or MemoryWriter()
    res = run_episode(rig, source, writer, LoopConfig(fps=fps, max_duration_s=ticks / fps), stop, on_tick, safety)
    source.close()
    return res, writer


def test_policy_drives_the_arm_chunk_by_chunk_with_predictions_stored():
    rig = FakeRig()
    policy = FixedChunkPolicy(chunk_size=4, step=1.0)
    source = PolicySource(policy, "pick", ChunkConfig(execute=2, asynchronous=False), fps=100)
    res, w = _run(rig, source, ticks=6)
    assert res.ticks == 6
    # every 2 ticks a new chunk from the then-current state: +1, +2 then +1, +2 ...
    actions = w.column("action")[:, 0]
    assert actions.tolist() == [1, 2, 3, 4, 5, 6]
    assert len(policy.calls) == 3
    chunks = w.column(EXTRA_CHUNK).reshape(6, 4, 6)
    np.testing.assert_allclose(chunks[2, :, 0], [3, 4, 5, 6])  # chunk predicted at tick 2 from state 2
    assert w.column(EXTRA_ROW)[:, 0].tolist() == [0, 1, 0, 1, 0, 1]


def test_slow_policy_runs_off_the_loop_thread_and_holds_are_counted():
    rig = FakeRig()
    policy = FixedChunkPolicy(chunk_size=4, step=1.0, delay_s=0.08)  # 8 ticks at 100 Hz
    source = PolicySource(policy, "pick", ChunkConfig(execute=4), fps=100)
    t0 = time.monotonic()
    res, w = _run(rig, source, ticks=40)
    elapsed = time.monotonic() - t0
    assert res.ticks == 40 and elapsed < 0.4 + 0.3  # the loop kept its rate while the model worked
    held = w.column(EXTRA_HELD)[:, 0]
    assert held[:5].all()  # nothing to execute until the first chunk arrived
    assert source.held_ticks == int(held.sum()) > 0 and not held.all()
    assert source.inferences >= 2


def test_estop_halts_within_one_tick():
    rig = FakeRig()
    policy = FixedChunkPolicy(chunk_size=8, step=2.0)
    source = PolicySource(policy, "pick", ChunkConfig(execute=8, asynchronous=False), fps=50)
    pressed = {}

    def press():
        time.sleep(0.2)
        pressed["t"] = time.monotonic()
        pressed["q"] = rig.robot.q.copy()
        source.estop.set()

    threading.Thread(target=press).start()
    res, w = _run(rig, source, ticks=200, fps=50)
    sent_after = [(t, a) for t, a in rig.robot.sent if t > pressed["t"]]
    # at most one command after the press, and it holds the arm where it was measured
    assert len(sent_after) <= 1
    for _, a in sent_after:
        assert np.allclose(a, pressed["q"], atol=2.0 + 1e-6)  # at most the one tick already under way
    assert rig.robot.sent[-1][0] - pressed["t"] < 1 / 50 + 0.01
    assert res.ticks < 30 and source.estop_tick is not None
    assert ("estop", source.estop_tick, source.estop_tick) in source.segments


def test_takeover_switches_to_teleop_and_back_and_marks_the_segment():
    rig = FakeRig(teleop=FakeTeleop(50.0))
    policy = FixedChunkPolicy(chunk_size=2, step=1.0)
    source = PolicySource(policy, "pick", ChunkConfig(asynchronous=False), fps=100, teleop=rig.teleop)
    calls = []

    def on_tick(info):
        calls.append(info.tick)
        if info.tick == 3:
            source.takeover.set()
        if info.tick == 6:
            source.takeover.clear()

    res, w = _run(rig, source, ticks=10, on_tick=on_tick)
    actions = w.column("action")[:, 0]
    assert actions[4:7].tolist() == [50, 50, 50]  # the teleoperator drove ticks 4..6
    assert actions[7] == 51  # the policy resumed from the state the teleoperator left
    assert source.segments == [("takeover", 4, 6)]


def test_safety_layer_in_the_loop_limits_policy_steps():
    rig = FakeRig()
    policy = FixedChunkPolicy(chunk_size=4, step=30.0)
    safety = SafetyLayer.for_robot(rig.robot, max_delta=5.0)
    source = PolicySource(policy, "pick", ChunkConfig(execute=1, asynchronous=False), fps=100)
    res, w = _run(rig, source, ticks=5, safety=safety)
    assert np.all(np.abs(np.diff(w.column("action")[:, 0], prepend=0)) <= 5.0 + 1e-6)
    assert safety.counts["max_delta"] == 5


def test_pinhole_projection_of_a_point_on_the_axis_hits_the_principal_point():
    K = np.array([[100.0, 0, 160], [0, 100.0, 120], [0, 0, 1]])
    T = np.eye(4)
    T[2, 3] = 1.0  # camera 1 m behind the world origin, looking along +z
    calib = PinholeCalibration(K, T)
    uv = calib.project(np.array([[0, 0, 0], [0.1, 0, 0], [0, 0, -2]]))
    np.testing.assert_allclose(uv[0], [160, 120])
    np.testing.assert_allclose(uv[1], [170, 120])
    assert np.isnan(uv[2]).all()  # behind the camera


def test_a_calibration_draws_the_path_on_a_real_camera_and_the_sim_projects_itself():
    from recorder.rollout import projectors_for
    from tests.rollout_doubles import FakeRobot

    calib = PinholeCalibration(np.array([[100.0, 0, 160], [0, 100.0, 120], [0, 0, 1]]), np.eye(4))
    robot = FakeRobot()
    assert projectors_for(robot, ["front"]) == {}  # a real camera without calibration: no path
    proj = projectors_for(robot, ["front", "wrist"], {"front": calib})
    assert set(proj) == {"front"}
    np.testing.assert_allclose(proj["front"](np.array([[0.0, 0.0, 1.0]])), [[160, 120]])

    class SimLike(FakeRobot):
        def project(self, pts, camera):
            return np.full((len(pts), 2), 7.0 if camera == "wrist" else 3.0)

    proj = projectors_for(SimLike(), ["front", "wrist"])
    assert proj["wrist"](np.zeros((2, 3))).tolist() == [[7, 7], [7, 7]]


def test_temporal_ensembling_in_the_loop_averages_every_overlapping_chunk():
    from tests.rollout_doubles import FakeOutput

    class CountingPolicy(FixedChunkPolicy):
        def predict(self, images, state, instruction):
            self.calls.append((state, instruction))
            v = 10.0 * (len(self.calls) - 1)
            return FakeOutput(np.full((3, 6), v, np.float32), None, 0.0)

    rig = FakeRig()
    policy = CountingPolicy(chunk_size=3)
    source = PolicySource(policy, "x", ChunkConfig(ensemble=True, ensemble_decay=0.0, asynchronous=False), fps=100)
    res, w = _run(rig, source, ticks=5)
    assert len(policy.calls) == 5  # a chunk every tick
    # tick t averages the chunks of ticks t-2..t (uniform weights with m = 0)
    assert w.column("action")[:, 0].tolist() == [0, 5, 10, 20, 30]


def test_a_chunk_asked_before_a_takeover_is_not_executed_after_it():
    rig = FakeRig(teleop=FakeTeleop(50.0))
    policy = FixedChunkPolicy(chunk_size=50, step=1.0, delay_s=0.05)  # 5 ticks at 100 Hz
    source = PolicySource(policy, "pick", ChunkConfig(), fps=100, teleop=rig.teleop)

    def on_tick(info):
        if info.tick == 1:  # the first chunk (from state 0) is on its way
            source.takeover.set()
        if info.tick == 3:
            source.takeover.clear()

    res, w = _run(rig, source, ticks=25, on_tick=on_tick)
    after = w.column("action")[4:, 0]
    # after the takeover only chunks predicted from the teleoperator's pose (50) are executed
    assert np.all(after >= 50), after
    assert source.inferences >= 1 and (after > 50).any()
