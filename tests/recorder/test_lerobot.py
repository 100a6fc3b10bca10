"""LeRobot v3.0 export and v3.0/v2.1 import against the real store (synthetic frames, no sim)."""

from __future__ import annotations

import json
from fractions import Fraction

import av
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from recorder.errors import DatasetError
from recorder.interop import lerobot
from recorder.interop.lerobot import LeRobotSource, export_lerobot, import_lerobot
from recorder.store import CameraSpec, Store

W, H = 64, 48
FPS = 10.0


def color(i: int, offset: int = 0) -> tuple[int, int, int]:
    """A distinct solid colour per tick (and per camera offset), far apart in every channel."""
    return ((i * 53 + offset) % 200 + 28, (i * 97 + 2 * offset) % 200 + 28, (i * 29 + 3 * offset) % 200 + 28)


def solid(i: int, offset: int = 0, w: int = W, h: int = H) -> np.ndarray:
    img = np.empty((h, w, 3), np.uint8)
    img[:] = color(i, offset)
    return img


CAM_OFFSETS = {"front": 0, "wrist": 101}


def make_episode(store, dataset="demo", task="pick up the red cube", n=12, cameras=("front", "wrist"),
                 seed=0, success=None, source="teleop", w=W, h=H, state_dim=6, segments=(), tags=(), drops=()):
    """Record one synthetic episode through the store writer; returns (EpisodeInfo, state, action)."""
    rng = np.random.default_rng(seed)
    state = rng.uniform(-90, 90, size=(n, state_dim)).astype(np.float32)
    action = rng.uniform(-90, 90, size=(n, state_dim)).astype(np.float32)
    writer = store.begin_episode(
        dataset=dataset, task=task, fps=FPS, rig={"name": "test"}, source=source,
        cameras={c: CameraSpec(width=w, height=h, queue_size=max(64, n + 1)) for c in cameras},
        lowdim={"observation.state": (state_dim,), "action": (state_dim,)})
    for i in range(n):
        frames = {c: solid(i, CAM_OFFSETS.get(c, 50), w, h) for c in cameras if (c, i) not in drops}
        writer.add_tick(t=100.0 + i / FPS, frames=frames, timestamps={c: 100.0 + i / FPS for c in cameras},
                        values={"observation.state": state[i], "action": action[i]})
    for kind, a, b in segments:
        writer.mark_segment(kind, a, b)
    info = writer.finish(success=success, tags=list(tags))
    assert sum(info.dropped.values()) == len(drops)
    return info, state, action


@pytest.fixture
def store(home):
    s = Store.open(home)
    yield s
    s.close()


def assert_frames_close(a: np.ndarray, b: np.ndarray, tol: int = 12) -> None:
    diff = np.abs(a.astype(np.int16) - b.astype(np.int16))
    assert diff.mean() < 6 and diff.max() <= tol, (diff.mean(), diff.max())


def test_export_import_round_trip_keeps_arrays_frames_and_tasks(store, tmp_path):
    e1, s1, a1 = make_episode(store, task="pick up the red cube", n=12, seed=1)
    e2, s2, a2 = make_episode(store, task="push the red cube onto the green square", n=8, seed=2)
    out = tmp_path / "export"
    res = export_lerobot(store, out, [e1, e2])
    assert res.frames == 20 and out.is_dir() and not (tmp_path / "export.partial").exists()

    info = json.loads((out / "meta/info.json").read_text())
    assert info["codebase_version"] == "v3.0"
    assert (info["total_episodes"], info["total_frames"], info["total_tasks"]) == (2, 20, 2)
    assert info["features"]["observation.images.front"]["dtype"] == "video"
    assert info["features"]["observation.state"]["shape"] == [6]
    tasks = pq.read_table(out / "meta/tasks.parquet")
    assert sorted(tasks.column("task").to_pylist()) == sorted([e1.task, e2.task])
    eps = pq.read_table(out / "meta/episodes/chunk-000/file-000.parquet").to_pylist()
    assert [r["dataset_from_index"] for r in eps] == [0, 12]
    assert eps[1]["videos/observation.images.front/from_timestamp"] == pytest.approx(12 / FPS)
    data = pq.read_table(out / "data/chunk-000/file-000.parquet")
    assert data.column("index").to_pylist() == list(range(20))
    np.testing.assert_allclose(np.array(data.column("timestamp").to_pylist()[12:]), np.arange(8) / FPS,
                               atol=1e-6)
    stats = json.loads((out / "meta/stats.json").read_text())
    np.testing.assert_allclose(stats["action"]["max"], np.concatenate([a1, a2]).max(0), rtol=1e-6)

    imported = import_lerobot(store, out, "roundtrip")
    assert [e.task for e in imported] == [e1.task, e2.task]
    assert all("lerobot" in e.tags for e in imported)
    for orig, new, state, action in ((e1, imported[0], s1, a1), (e2, imported[1], s2, a2)):
        assert new.num_frames == orig.num_frames and new.dataset == "roundtrip"
        with store.open_episode(new.id) as r, store.open_episode(orig.id) as r0:
            low = r.lowdim()
            np.testing.assert_array_equal(low["observation.state"], state)
            np.testing.assert_array_equal(low["action"], action)
            for cam in ("front", "wrist"):
                for i in range(orig.num_frames):
                    assert_frames_close(r.frame(cam, i), r0.frame(cam, i))
                    assert_frames_close(r.frame(cam, i), solid(i, CAM_OFFSETS[cam]))


def test_export_refuses_existing_folder_and_empty_selection(store, tmp_path):
    e, _, _ = make_episode(store, n=4)
    (tmp_path / "taken").mkdir()
    with pytest.raises(DatasetError, match="already exists"):
        export_lerobot(store, tmp_path / "taken", [e])
    with pytest.raises(DatasetError, match="no episodes"):
        export_lerobot(store, tmp_path / "none", [])


def test_interrupted_export_leaves_nothing_that_looks_complete(store, tmp_path, monkeypatch):
    e1, _, _ = make_episode(store, n=6, seed=1)
    e2, _, _ = make_episode(store, n=6, seed=2)
    out = tmp_path / "export"
    calls = {"n": 0}

    def boom(done, total):
        calls["n"] += 1
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        export_lerobot(store, out, [e1, e2], progress=boom, batch=2)
    assert calls["n"] <= 2  # one per camera thread at most: both stop at once
    assert not out.exists()
    assert not (tmp_path / "export.partial").exists()

    # a crash (no cleanup at all) leaves only <out>.partial, which import refuses by name
    partial = tmp_path / "crashed.partial"
    (partial / "data").mkdir(parents=True)
    with pytest.raises(DatasetError, match="unfinished export"):
        LeRobotSource(partial)


def test_import_rejects_folders_that_are_not_lerobot_datasets(store, tmp_path):
    with pytest.raises(DatasetError, match="not a LeRobot dataset") as err:
        import_lerobot(store, tmp_path)
    assert "\n" not in str(err.value)
    with pytest.raises(DatasetError, match="not a folder"):
        import_lerobot(store, tmp_path / "nope")
    (tmp_path / "meta").mkdir()
    (tmp_path / "meta/info.json").write_text(json.dumps({"codebase_version": "v1.6", "fps": 10, "features": {}}))
    with pytest.raises(DatasetError, match="v1.6"):
        import_lerobot(store, tmp_path)
    assert store.episodes() == []


def test_import_with_missing_video_names_the_file_and_writes_nothing(store, tmp_path):
    e, _, _ = make_episode(store, n=5)
    out = tmp_path / "export"
    export_lerobot(store, out, [e])
    video = out / "videos/observation.images.wrist/chunk-000/file-000.mp4"
    video.unlink()
    with pytest.raises(DatasetError, match="file-000.mp4 is missing"):
        import_lerobot(store, out, "broken")
    assert store.episodes(dataset="broken") == []


def _write_v21(root, episodes, fps=10):
    """A LeRobot v2.1 folder: one parquet and one mp4 per episode, jsonl metadata."""
    (root / "meta").mkdir(parents=True)
    tasks = sorted({t for t, _ in episodes})
    with open(root / "meta/tasks.jsonl", "w") as f:
        for i, t in enumerate(tasks):
            f.write(json.dumps({"task_index": i, "task": t}) + "\n")
    total = 0
    with open(root / "meta/episodes.jsonl", "w") as f:
        for ep, (task, n) in enumerate(episodes):
            f.write(json.dumps({"episode_index": ep, "tasks": [task], "length": n}) + "\n")
            state = np.arange(n * 6, dtype=np.float32).reshape(n, 6) + 1000 * ep
            table = pa.table({
                "observation.state": pa.FixedSizeListArray.from_arrays(pa.array(state.ravel()), 6),
                "action": pa.FixedSizeListArray.from_arrays(pa.array(-state.ravel()), 6),
                "timestamp": pa.array(np.arange(n, dtype=np.float32) / fps),
                "frame_index": pa.array(np.arange(n, dtype=np.int64)),
                "episode_index": pa.array(np.full(n, ep, dtype=np.int64)),
                "index": pa.array(np.arange(total, total + n, dtype=np.int64)),
                "task_index": pa.array(np.full(n, tasks.index(task), dtype=np.int64)),
            })
            path = root / f"data/chunk-000/episode_{ep:06d}.parquet"
            path.parent.mkdir(parents=True, exist_ok=True)
            pq.write_table(table, path)
            vpath = root / f"videos/chunk-000/observation.images.top/episode_{ep:06d}.mp4"
            vpath.parent.mkdir(parents=True, exist_ok=True)
            with av.open(str(vpath), "w") as c:
                s = c.add_stream("libx264", rate=fps)
                s.width, s.height, s.pix_fmt = W, H, "yuv420p"
                for i in range(n):
                    fr = av.VideoFrame.from_ndarray(solid(i + 10 * ep), format="rgb24")
                    fr.pts, fr.time_base = i, Fraction(1, fps)
                    for p in s.encode(fr):
                        c.mux(p)
                for p in s.encode(None):
                    c.mux(p)
            total += n
    info = {
        "codebase_version": "v2.1", "robot_type": "so100", "total_episodes": len(episodes),
        "total_frames": total, "total_tasks": len(tasks), "total_videos": len(episodes), "total_chunks": 1,
        "chunks_size": 1000, "fps": fps, "splits": {"train": f"0:{len(episodes)}"},
        "data_path": "data/chunk-{episode_chunk:03d}/episode_{episode_index:06d}.parquet",
        "video_path": "videos/chunk-{episode_chunk:03d}/{video_key}/episode_{episode_index:06d}.mp4",
        "features": {
            "action": {"dtype": "float32", "shape": [6], "names": ["a", "b", "c", "d", "e", "f"]},
            "observation.state": {"dtype": "float32", "shape": [6], "names": ["a", "b", "c", "d", "e", "f"]},
            "observation.images.top": {"dtype": "video", "shape": [H, W, 3],
                                       "names": ["height", "width", "channels"],
                                       "info": {"video.fps": fps, "video.height": H, "video.width": W,
                                                "video.codec": "h264", "video.pix_fmt": "yuv420p"}},
            "timestamp": {"dtype": "float32", "shape": [1], "names": None},
            "frame_index": {"dtype": "int64", "shape": [1], "names": None},
            "episode_index": {"dtype": "int64", "shape": [1], "names": None},
            "index": {"dtype": "int64", "shape": [1], "names": None},
            "task_index": {"dtype": "int64", "shape": [1], "names": None},
        },
    }
    (root / "meta/info.json").write_text(json.dumps(info))


def test_import_v21_folder(store, tmp_path):
    src = tmp_path / "old_v21"
    _write_v21(src, [("stack the blocks", 7), ("open the drawer", 5)])
    eps = import_lerobot(store, src)
    assert [e.dataset for e in eps] == ["old_v21", "old_v21"]
    assert [e.task for e in eps] == ["stack the blocks", "open the drawer"]
    assert [e.num_frames for e in eps] == [7, 5]
    with store.open_episode(eps[1].id) as r:
        assert list(r.cameras) == ["top"]
        np.testing.assert_array_equal(r.lowdim()["observation.state"][2], np.arange(12, 18) + 1000)
        np.testing.assert_array_equal(r.lowdim()["action"][2], -(np.arange(12, 18) + 1000))
        for i in range(5):
            assert_frames_close(r.frame("top", i), solid(i + 10))


def test_column_helpers_accept_variable_length_lists():
    col = pa.chunked_array([pa.array([[1.0, 2.0], [3.0, 4.0]])])
    np.testing.assert_array_equal(lerobot._column_to_numpy(col, 2), [[1, 2], [3, 4]])


FIXTURES = __import__("pathlib").Path(__file__).parent / "lerobot_fixtures"


def test_import_folder_written_by_lerobot_itself(store):
    """A v3.0 folder made by lerobot 0.4.4 (LeRobotDataset.create/add_frame/save_episode, AV1 video;
    see lerobot_fixtures/make_v30_with_lerobot.py) imports with its tasks, arrays and frames."""
    eps = import_lerobot(store, FIXTURES / "v30_lerobot_0_4_4", "made")
    assert [(e.task, e.num_frames) for e in eps] == [("task 0", 6), ("task 1", 7)]
    with store.open_episode(eps[1].id) as r:
        np.testing.assert_array_equal(r.lowdim()["observation.state"][:, 0], np.arange(10, 17))
        np.testing.assert_array_equal(r.lowdim()["action"][:, 0], -np.arange(7))
        for i in range(7):
            assert_frames_close(r.frame("cam", i), solid(i))
