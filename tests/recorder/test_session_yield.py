"""An idle rig gives the CPU to a local training run; recording always runs at full rate (issue 12, item 9)."""

import time

from recorder.devices.rig import load_rig, sim_rig_config
from recorder.session import IDLE_YIELD_CAMERA_FPS, Phase, make_record_session
from recorder.store import Store


def _camera_fps(cam, seconds=1.2) -> float:
    i0, t0 = cam.read_latest().index, time.monotonic()
    time.sleep(seconds)
    return (cam.read_latest().index - i0) / (time.monotonic() - t0)


def test_idle_rig_slows_its_cameras_while_training_and_recording_restores_them(home):
    rig = load_rig(sim_rig_config(width=64, height=48, fps=15.0))
    rig.connect()
    try:
        with Store.open(home) as store:
            s = make_record_session(store, rig, dataset="y", fps=15.0, episode_time_s=None, reset_time_s=0.0,
                                    auto_advance=False,
                                    seed=1)
            s.start_thread()
            cam = rig.cameras["front"]
            assert _camera_fps(cam) > 9  # idle, nothing training: the full rate
            s.set_yield(True)
            time.sleep(0.3)
            assert s.yielding
            assert _camera_fps(cam) <= IDLE_YIELD_CAMERA_FPS + 1.5
            s.start()  # recording while a run trains: full rate, every frame of its own tick
            deadline = time.monotonic() + 5
            while s.phase is not Phase.RECORDING and time.monotonic() < deadline:
                time.sleep(0.02)
            assert not s.yielding
            assert _camera_fps(cam) > 9
            s.save()
            deadline = time.monotonic() + 5
            while s.saved < 1 and time.monotonic() < deadline:
                time.sleep(0.02)
            time.sleep(0.3)
            assert s.yielding and _camera_fps(cam) <= IDLE_YIELD_CAMERA_FPS + 1.5  # idle again: slowed again
            s.set_yield(False)  # the run ended
            time.sleep(0.3)
            assert _camera_fps(cam) > 9
            s.close()
            (ep,) = store.episodes(dataset="y")
            with store.open_episode(ep.id) as r:
                stale = r.stale("front")
            assert not stale[0] and stale.mean() < 0.5
    finally:
        rig.disconnect()
