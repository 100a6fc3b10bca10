"""A full encoder queue drops frames: counted, marked per tick, and the held frame is returned on read."""

import threading
import time

import numpy as np

from recorder.store import CameraSpec, Store
from recorder.store.video import VideoEncoder

from .helpers import H, W, smooth_image


def test_full_queue_drops_are_counted_and_held(home, monkeypatch):
    gate = threading.Event()
    original = VideoEncoder._encode_one

    def slow_encode(self, tick, image):
        gate.wait(5)  # the encoder is stuck until the loop has run ahead
        time.sleep(0.002)
        original(self, tick, image)

    monkeypatch.setattr(VideoEncoder, "_encode_one", slow_encode)
    cams = {"front": CameraSpec(width=W, height=H, queue_size=2)}
    with Store.open(home) as store:
        w = store.begin_episode(dataset="drops", fps=30.0, cameras=cams, lowdim={"action": (2,)})
        t0 = time.monotonic()
        for i in range(12):
            w.add_tick(frames={"front": smooth_image(i)}, values={"action": np.array([i, -i])})
        assert time.monotonic() - t0 < 1.0  # add_tick never waited for the stuck encoder
        stats = w.stats
        assert stats.frames_dropped["front"] >= 8 and stats.queue_depth["front"] >= 1
        gate.set()
        for i in range(12, 20):  # the encoder keeps up again
            while w.stats.queue_depth["front"]:
                time.sleep(0.005)
            w.add_tick(frames={"front": smooth_image(i)}, values={"action": np.array([i, -i])})
        info = w.finish()

        dropped_n = stats.frames_dropped["front"]
        assert info.dropped == {"front": dropped_n}
        assert store.episode(info.id).dropped == {"front": dropped_n}
        with store.open_episode(info.id) as r:
            ld = r.lowdim()
            flags = ld["dropped.front"]
            assert int(flags.sum()) == dropped_n and not flags[12:].any()
            np.testing.assert_array_equal(ld["action"][:, 0], np.arange(20))  # values always written in full
            kept = np.flatnonzero(~flags)
            for i in np.flatnonzero(flags):
                held = kept[kept < i].max()
                np.testing.assert_array_equal(r.frame("front", i), r.frame("front", held))
                assert np.abs(r.frame("front", i).astype(int) - smooth_image(held)).mean() < 6
            for i in kept:
                assert np.abs(r.frame("front", i).astype(int) - smooth_image(i)).mean() < 6


def test_missing_camera_frame_counts_as_dropped(home):
    cams = {"front": CameraSpec(width=W, height=H)}
    with Store.open(home) as store:
        w = store.begin_episode(dataset="d", fps=30.0, cameras=cams, lowdim={})
        for i in range(6):
            w.add_tick(frames={"front": smooth_image(i)} if i != 3 else {})
        info = w.finish()
        assert info.dropped == {"front": 1}
        with store.open_episode(info.id) as r:
            assert r.lowdim()["dropped.front"].tolist() == [False, False, False, True, False, False]
            np.testing.assert_array_equal(r.frame("front", 3), r.frame("front", 2))
