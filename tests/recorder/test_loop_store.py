"""The loop over real test-pattern cameras into the real episode store."""

import threading

import numpy as np
import pytest

from recorder.loop import LoopConfig, TeleopSource, lowdim_spec, run_episode
from recorder.store import CameraSpec, Store
from tests.recorder.record_doubles import pattern_rig


@pytest.mark.slow
def test_three_seconds_of_test_pattern_cameras_every_tick_stored(home):
    rig = pattern_rig()
    rig.connect()
    store = Store.open(home)
    try:
        w = store.begin_episode(
            dataset="loop", task="t", fps=30.0, rig=rig.snapshot(), source="teleop",
            cameras={n: CameraSpec(width=320, height=240) for n in rig.cameras}, lowdim=lowdim_spec(rig),
        )
        res = run_episode(rig, TeleopSource(rig.teleop), w, LoopConfig(fps=30, max_duration_s=3.0),
                          threading.Event(), None)
        stats = w.stats
        info = w.finish(notes=f"late {res.late_ticks}")
        assert res.reason == "time_limit" and res.ticks == res.written == 90
        assert info.num_frames == 90 and info.status == "complete"
        with store.open_episode(info.id) as r:
            low = r.lowdim()
            assert len(low["t"]) == 90
            assert np.all(np.diff(low["t"]) > 0)
            for cam in ("front", "wrist"):
                ts = low[f"ts.{cam}"]
                assert np.all(np.diff(ts) >= 0)
                # every frame is either encoded or counted as dropped, and stale repeats are all counted
                assert stats.frames_written[cam] + stats.frames_dropped[cam] == 90
                assert int(low[f"dropped.{cam}"].sum()) == info.dropped[cam] == res.dropped[cam]
                assert res.stale[cam] == int(np.sum(np.diff(ts) == 0))
            frames = r.frames("front", [0, 45, 89])
            assert frames.shape == (3, 240, 320, 3)
            np.testing.assert_allclose(low["action"][:, 0], np.arange(1, 91) * 0.5, atol=1e-4)
    finally:
        store.close()
        rig.disconnect()
