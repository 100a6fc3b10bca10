import numpy as np
import pytest

from recorder.errors import StoreError
from recorder.store import CameraSpec, Store

from .helpers import H, W, action, record, smooth_image, state


def test_round_trip_arrays_exact_and_frames_close(home):
    store = Store.open(home)
    infos = [record(store, n=15 + 3 * e, task=f"task {e}") for e in range(3)]
    store.close()

    store = Store.open(home)  # a fresh process would see the same
    eps = store.episodes(dataset="demo")
    assert [e.id for e in eps] == [i.id for i in infos]
    for e in eps:
        assert e.status == "complete" and e.success is True
        assert e.dropped == {"front": 0, "wrist": 0}
        assert (e.path / "meta.json").is_file()
        with store.open_episode(e.id) as r:
            n = r.num_frames
            assert n == e.num_frames and r.fps == 30.0 and set(r.cameras) == {"front", "wrist"}
            ld = r.lowdim()
            np.testing.assert_array_equal(ld["observation.state"], np.stack([state(i) for i in range(n)]))
            np.testing.assert_array_equal(ld["action"], np.stack([action(i) for i in range(n)]))
            np.testing.assert_array_equal(ld["index"], np.arange(n))
            np.testing.assert_allclose(ld["t"], 100.0 + np.arange(n) / 30)
            assert not ld["dropped.front"].any()
            for k, cam in enumerate(("front", "wrist")):
                for i in (0, n - 1, 7, 3, n // 2):  # out of order: exercises backward seeks
                    img = r.frame(cam, i)
                    assert img.shape == (H, W, 3) and img.dtype == np.uint8
                    assert np.abs(img.astype(int) - smooth_image(i, k)).mean() < 6, (cam, i)
                idx = [n - 1, 0, 5, 5, 11]
                batch = r.frames(cam, idx)
                assert batch.shape == (5, H, W, 3)
                for j, i in enumerate(idx):
                    np.testing.assert_array_equal(batch[j], r.frame(cam, i))
            with pytest.raises(IndexError):
                r.frame("front", n)
    store.close()


def test_av1_option_round_trip(home):
    cams = {"front": CameraSpec(width=W, height=H, codec="av1")}
    with Store.open(home) as store:
        info = record(store, n=12, cameras=cams, dataset="av1")
        with store.open_episode(info.id) as r:
            for i in (11, 0, 6):
                assert np.abs(r.frame("front", i).astype(int) - smooth_image(i)).mean() < 6


def test_keyframe_every_gop_frames(home):
    from recorder.store.video import scan_video

    with Store.open(home) as store:
        info = record(store, n=25)
    idx = scan_video(info.path / "video" / "front.mp4", 30.0)
    np.testing.assert_array_equal(np.flatnonzero(idx.key), [0, 10, 20])


def test_discard_removes_files_and_hides_episode(home):
    with Store.open(home) as store:
        w = store.begin_episode(
            dataset="demo",
            task="x",
            fps=30.0,
            cameras={"front": CameraSpec(width=W, height=H)},
            lowdim={"action": (6,)},
        )
        w.add_tick(frames={"front": smooth_image(0)}, values={"action": np.zeros(6)})
        folder = w.path
        w.discard()
        assert not folder.exists()
        assert store.episodes() == []
        assert [e.status for e in store.episodes(status=None)] == ["discarded"]


def test_wrong_frame_shape_is_reported_at_finish(home):
    with Store.open(home) as store:
        w = store.begin_episode(
            dataset="demo",
            fps=30.0,
            cameras={"front": CameraSpec(width=W, height=H)},
            lowdim={"action": (6,)},
        )
        w.add_tick(frames={"front": np.zeros((10, 10, 3), np.uint8)}, values={"action": np.zeros(6)})
        with pytest.raises(StoreError, match="front.mp4"):
            w.finish()


def test_dataset_features_must_match(home):
    from recorder.errors import DatasetError

    with Store.open(home) as store:
        record(store, n=3)
        with pytest.raises(DatasetError, match="demo"):
            store.begin_episode(
                dataset="demo",
                fps=30.0,
                cameras={"front": CameraSpec(width=W, height=H)},
                lowdim={"action": (6,)},
            )
