"""Frame i and state i are of the same moment, frame 0 included (issue 12, items 1-4).

The sim is the judge: its exact projection of the cube at each tick must land on the cube's red pixels
in the stored frame of that tick. Before the fix, frame 0 of every episode after the first showed the
cube where the previous episode left it (the camera's last frame from before the reset).
"""

import io
import threading
import time

import numpy as np
import pyarrow.parquet as pq

import recorder.session as session_mod
from recorder.devices.rig import load_rig, sim_rig_config
from recorder.loop import HoldSource, LoopConfig, run_episode
from recorder.rollout import ChunkConfig, RolloutConfig, run_rollouts
from recorder.store import CameraSpec, Store
from studio.commands.record import run_record
from tests.recorder.record_doubles import OnDemandCamera, Packet, fake_rig
from tests.recorder.sim_truth import assert_frames_show_the_cube, note_cube_truth
from tests.rollout_doubles import FixedChunkPolicy


def _capture_cubes(monkeypatch):
    """Wrap the one session factory so every recorded tick notes where the sim's cube really was."""
    made = []  # (session, {episode: [cube position per tick]})
    real = session_mod.make_record_session

    def wrapped(store, rig, **kw):
        s = real(store, rig, **kw)
        made.append((s, note_cube_truth(s)))
        return s

    monkeypatch.setattr(session_mod, "make_record_session", wrapped)
    return made


def test_cli_record_every_frame_shows_the_sim_of_its_tick_and_episodes_start_reset(home, monkeypatch):
    made = _capture_cubes(monkeypatch)
    rc = run_record(home, "sim", "truth", None, 2, episode_time=1.5, scripted=True, seed=4, size="160x120",
                    out=io.StringIO())
    assert rc == 0
    ((session, cubes),) = made
    with Store.open(home) as store:
        eps = store.episodes(dataset="truth")
        assert len(eps) == 2
        # each episode starts from its own seeded reset, not where the last one ended
        seeds = [e.rig["robot_info"]["seed"] for e in eps]
        assert seeds == [4, 5]
        assert np.linalg.norm(cubes[1][0] - cubes[0][-1]) > 0.005
        assert_frames_show_the_cube(store, [e.id for e in eps], [cubes[0], cubes[1]], session.rig.robot)


def test_rollout_every_frame_shows_the_sim_of_its_tick(home):
    # cameras at 4 fps (a slow renderer): the last frame before a reset stays the latest for a while
    rig = load_rig(sim_rig_config(teleop="scripted", width=160, height=120, fps=4.0))
    rig.connect()
    cubes: dict[int, list] = {}
    try:
        with Store.open(home) as store:
            cfg = RolloutConfig(instruction="pick up the red cube", episodes=2, fps=15.0, max_seconds=1.0, seed=7,
                                chunk=ChunkConfig(asynchronous=False), dataset="truth-rollouts")
            res = run_rollouts(rig, FixedChunkPolicy(step=0.0), store, cfg,
                               on_tick=lambda t: cubes.setdefault(t.episode, []).append(rig.robot.cube_position()))
            assert len(res.episodes) == 2
            assert np.linalg.norm(cubes[1][0] - cubes[0][-1]) > 0.005  # episode 2 is a new layout
            assert_frames_show_the_cube(store, [e.id for e in res.episodes], [cubes[0], cubes[1]], rig.robot)
    finally:
        rig.disconnect()


def test_scripted_expert_acts_only_while_recording_and_records_the_rigs_task(home):
    rig = load_rig(sim_rig_config(task="push", teleop="scripted", width=64, height=48, fps=15.0))
    rig.connect()
    try:
        with Store.open(home) as store:
            s = session_mod.make_record_session(store, rig, dataset="push", task="pick up the red cube",
                                                fps=15.0, episode_time_s=1.0, num_episodes=1, seed=2)
            assert s.cfg.source == "scripted" and s.task == "push the red cube onto the green square"
            s.start_thread()
            q0 = rig.robot.get_observation()["observation.state"].copy()
            time.sleep(1.0)  # idle: nothing is recorded, so the expert must not move the arm
            q1 = rig.robot.get_observation()["observation.state"]
            assert np.abs(q1 - q0).max() < 1.0, f"the arm moved while idle: {q0} -> {q1}"
            s.start()
            deadline = time.monotonic() + 15
            while s.phase is not session_mod.Phase.DONE and time.monotonic() < deadline:
                time.sleep(0.05)
            s.close()
            (ep,) = store.episodes(dataset="push")
            assert ep.task == "push the red cube onto the green square" and ep.source == "scripted"
            with store.open_episode(ep.id) as r:
                action = r.lowdim()["action"]
            assert np.abs(action[-1] - action[0]).max() > 5.0  # the expert drove the arm during the episode
    finally:
        rig.disconnect()


class _OldFrameCamera(OnDemandCamera):
    """Delivers new frames whose capture time never moves past connect(): every one is older than a reset."""

    def connect(self) -> None:
        super().connect()
        self._t0 = time.monotonic()

    def read_latest(self, timeout: float = 1.0) -> Packet:
        pkt = super().read_latest(timeout)
        pkt.timestamp = self._t0
        return pkt


def test_frames_from_before_a_reset_are_flagged_counted_stored_and_exported(home, tmp_path):
    from recorder.interop.lerobot import export_lerobot, import_lerobot

    rig = fake_rig(cameras=("front", "wrist"), width=32, height=24)
    rig.cameras["front"] = _OldFrameCamera(name="front", width=32, height=24)
    for c in rig.cameras.values():
        c.connect()
    store = Store.open(home)
    try:
        w = store.begin_episode(dataset="d", task="t", fps=30.0, rig={}, source="teleop",
                                cameras={n: CameraSpec(width=32, height=24) for n in rig.cameras},
                                lowdim={"observation.state": (6,), "action": (6,)})
        res = run_episode(rig, HoldSource(), w, LoopConfig(fps=30.0, max_duration_s=0.3, fresh_after=time.monotonic(),
                                        frame_timeout_s=0.1), threading.Event())
        info = w.finish()
        assert res.stale["front"] == res.written == 9 and res.stale["wrist"] == 0
        with store.open_episode(info.id) as r:
            assert r.stale("front").all() and not r.stale("wrist").any()
        plain = tmp_path / "plain"
        export_lerobot(store, plain, [info])  # by default the features stay lerobot's own (aggregate_datasets)
        assert "stale.front" not in pq.read_table(plain / "data/chunk-000/file-000.parquet").column_names
        out = tmp_path / "export"
        export_lerobot(store, out, [info], stale_column=True)
        table = pq.read_table(out / "data/chunk-000/file-000.parquet")
        assert table.column("stale.front").to_pylist() == [1.0] * 9
        assert table.column("stale.wrist").to_pylist() == [0.0] * 9
        (back,) = import_lerobot(store, out, "back")
        with store.open_episode(back.id) as r:
            assert r.stale("front").all() and not r.stale("wrist").any()
            assert "stale.front" not in (back.lowdim or {})
    finally:
        store.close()
        for c in rig.cameras.values():
            c.disconnect()
