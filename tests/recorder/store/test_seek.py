"""Random seeks: exact frames in any order, with and without a shared decoded-frame cache."""

from __future__ import annotations

import av
import numpy as np

from recorder.store import Store
from recorder.store.video import FrameCache, VideoDecoder
from tests.recorder.store.helpers import record


def _sequential(path) -> list[np.ndarray]:
    with av.open(str(path)) as c:
        return [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]


def test_random_seeks_give_the_exact_frames_with_and_without_a_frame_cache(tmp_path):
    with Store.open(tmp_path / "home") as store:
        info = record(store, n=25)
        path = info.path / "video" / "front.mp4"
        truth = _sequential(path)
        assert len(truth) == 25
        order = np.random.default_rng(0).permutation(25).tolist() + [24, 3, 3, 11, 0]
        plain = VideoDecoder(path, info.fps)
        cache = FrameCache(64 * 2**20)
        cached = VideoDecoder(path, info.fps, cache=cache)
        other = VideoDecoder(path, info.fps, cache=cache)  # a second reader of the same file shares the frames
        for i in order:
            for dec in (plain, cached, other):
                got = dec.frame(i)
                assert np.array_equal(got, truth[i]), (i, dec is plain)
        assert cache.hits > 0 and len(cache) == 25
        for dec in (plain, cached, other):
            dec.close()


def test_frames_passed_on_the_way_to_a_seek_target_are_served_from_the_cache(tmp_path):
    with Store.open(tmp_path / "home") as store:
        info = record(store, n=12)  # keyframes every 10 ticks (store default GOP)
        path = info.path / "video" / "front.mp4"
        truth = _sequential(path)
        cache = FrameCache(64 * 2**20)
        dec = VideoDecoder(path, info.fps, cache=cache)
        decoded = []
        real = dec._decode_packet

        def counting(j):
            decoded.append(j)
            return real(j)

        dec._decode_packet = counting
        assert np.array_equal(dec.frame(9), truth[9])
        assert decoded == list(range(10))  # keyframe 0 .. 9, converted to RGB only at 9
        for i in (4, 0, 7):  # passed on the way: no decoding at all
            assert np.array_equal(dec.frame(i), truth[i])
        assert decoded == list(range(10))
        tiny = FrameCache(1)  # a budget smaller than one frame keeps nothing
        with av.open(str(path)) as c:
            tiny.put(("x", 0), next(iter(c.decode(video=0))))
        assert len(tiny) == 0 and tiny.bytes == 0
        dec.close()


def test_episode_reader_uses_the_frame_cache_it_is_given(tmp_path):
    with Store.open(tmp_path / "home") as store:
        info = record(store, n=12)
        truth = _sequential(info.path / "video" / "wrist.mp4")
        cache = FrameCache(64 * 2**20)
        reader = store.open_episode(info.id)
        reader.frame_cache = cache
        assert np.array_equal(reader.frame("wrist", 8), truth[8])
        again = store.open_episode(info.id)
        again.frame_cache = cache
        assert np.array_equal(again.frame("wrist", 5), truth[5]) and cache.hits == 1
        reader.close()
        again.close()
