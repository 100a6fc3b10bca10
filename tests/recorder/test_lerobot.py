"""LeRobot v3.0 export and v3.0/v2.1 import against the real store (synthetic frames, no sim)."""

from __future__ import annotations

import json
import shutil
from fractions import Fraction
from pathlib import Path

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
FIXTURES = Path(__file__).parent / "lerobot_fixtures"
# made by lerobot 0.6.1 itself (lerobot_fixtures/make_v30_with_lerobot_0_6_1.py)
KOCH = FIXTURES / "koch_lerobot_0_6_1"
SO101 = FIXTURES / "so101_lerobot_0_6_1"
# what a recording on the built-in sim rig stores as its rig (Rig.snapshot(): the rig file + robot_info)
SIM_RIG = {"name": "sim", "robot": {"type": "sim", "id": "sim"},
           "robot_info": {"joint_names": ["shoulder_pan", "shoulder_lift", "elbow_flex", "wrist_flex", "wrist_roll",
                                          "gripper"]}}


def color(i: int, offset: int = 0) -> tuple[int, int, int]:
    """A distinct solid colour per tick (and per camera offset), far apart in every channel."""
    return ((i * 53 + offset) % 200 + 28, (i * 97 + 2 * offset) % 200 + 28, (i * 29 + 3 * offset) % 200 + 28)


def solid(i: int, offset: int = 0, w: int = W, h: int = H) -> np.ndarray:
    img = np.empty((h, w, 3), np.uint8)
    img[:] = color(i, offset)
    return img


CAM_OFFSETS = {"front": 0, "wrist": 101}


def make_episode(store, dataset="demo", task="pick up the red cube", n=12, cameras=("front", "wrist"),
                 seed=0, success=None, source="teleop", w=W, h=H, state_dim=6, segments=(), tags=(), drops=(),
                 rig=None, fps=FPS):
    """Record one synthetic episode through the store writer; returns (EpisodeInfo, state, action)."""
    rng = np.random.default_rng(seed)
    state = rng.uniform(-90, 90, size=(n, state_dim)).astype(np.float32)
    action = rng.uniform(-90, 90, size=(n, state_dim)).astype(np.float32)
    writer = store.begin_episode(
        dataset=dataset, task=task, fps=fps, rig=rig or {"name": "test"}, source=source,
        cameras={c: CameraSpec(width=w, height=h, queue_size=max(64, n + 1)) for c in cameras},
        lowdim={"observation.state": (state_dim,), "action": (state_dim,)})
    for i in range(n):
        frames = {c: solid(i, CAM_OFFSETS.get(c, 50), w, h) for c in cameras if (c, i) not in drops}
        writer.add_tick(t=100.0 + i / fps, frames=frames, timestamps={c: 100.0 + i / fps for c in cameras},
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


def _info(folder: Path) -> dict:
    return json.loads((folder / "meta/info.json").read_text())


def _episode_rows(folder: Path) -> list[dict]:
    rows = pq.read_table(folder / "meta/episodes/chunk-000/file-000.parquet").to_pylist()
    return [{k: v for k, v in r.items() if not k.startswith("stats/")} for r in rows]


def test_sim_export_has_the_features_lerobot_writes_for_an_so101(store, tmp_path):
    """Issue 18 items 1, 3, 6: what lerobot's aggregate_datasets compares (fps, robot_type, features) equals,
    key for key, what lerobot 0.6.1 itself wrote for an SO-101 with the sim rig's cameras; the stats have the
    same stat names for every feature, images included."""
    e1, _, _ = make_episode(store, n=5, seed=1, w=320, h=240, fps=30.0, rig=SIM_RIG)
    e2, _, _ = make_episode(store, n=4, seed=2, w=320, h=240, fps=30.0, rig=SIM_RIG)
    out = tmp_path / "sim_export"
    export_lerobot(store, out, [e1, e2], codec="av1")
    ours, theirs = _info(out), _info(SO101)
    assert (ours["robot_type"], ours["fps"]) == (theirs["robot_type"], theirs["fps"]) == ("so101_follower", 30)
    assert list(ours["features"]) == list(theirs["features"])
    for key, feature in theirs["features"].items():
        assert ours["features"][key] == feature, key
    assert {k: v for k, v in ours.items() if k not in ("features", "total_episodes", "total_frames")} == \
        {k: v for k, v in theirs.items() if k not in ("features", "total_episodes", "total_frames")}

    ours_stats = json.loads((out / "meta/stats.json").read_text())
    theirs_stats = json.loads((SO101 / "meta/stats.json").read_text())
    assert set(ours_stats) == set(theirs_stats)
    for key, st in theirs_stats.items():
        assert set(ours_stats[key]) == set(st), key
        assert np.asarray(ours_stats[key]["q50"]).shape == np.asarray(st["q50"]).shape, key
    # every lerobot episode column is there, plus our success label
    assert set(_episode_rows(SO101)[0]) <= set(_episode_rows(out)[0])
    assert set(pq.read_table(out / "data/chunk-000/file-000.parquet").column_names) == \
        set(pq.read_table(SO101 / "data/chunk-000/file-000.parquet").column_names)


def test_image_quantiles_follow_the_frames(store, tmp_path):
    """The camera stats carry q01..q99 per channel, in [0, 1], from the frames themselves."""
    e, _, _ = make_episode(store, n=9, seed=1)
    out = tmp_path / "q"
    export_lerobot(store, out, [e])
    st = json.loads((out / "meta/stats.json").read_text())["observation.images.front"]
    colours = np.array([color(i) for i in range(9)]) / 255.0
    for q in ("q01", "q10", "q50", "q90", "q99"):
        assert np.asarray(st[q]).shape == (3, 1, 1)
    np.testing.assert_allclose(np.asarray(st["q50"])[:, 0, 0], np.median(colours, axis=0), atol=4 / 255)
    np.testing.assert_allclose(np.asarray(st["q01"])[:, 0, 0], colours.min(axis=0), atol=4 / 255)
    np.testing.assert_allclose(np.asarray(st["q99"])[:, 0, 0], colours.max(axis=0), atol=4 / 255)


def test_lerobot_dataset_round_trip_keeps_robot_type_names_tasks_fps_and_order(store, tmp_path):
    """Issue 18 item 2: a koch_follower dataset written by lerobot 0.6.1 (state_j0..5, two tasks, 15 fps)
    comes back out of an import -> export with its robot type, names, per-episode tasks, fps and order."""
    eps = import_lerobot(store, KOCH, "koch")
    assert [e.num_frames for e in eps] == [8, 10, 12]
    out = tmp_path / "koch_back"
    export_lerobot(store, out, eps)
    src, back = _info(KOCH), _info(out)
    assert back["robot_type"] == "koch_follower" and back["fps"] == 15
    for key in ("observation.state", "action", "observation.effort"):
        assert back["features"][key] == src["features"][key]
    assert back["features"]["observation.state"]["names"][0] == "state_j0"
    assert [r["tasks"] for r in _episode_rows(out)] == [r["tasks"] for r in _episode_rows(KOCH)] == \
        [["stack the blue block on the red block"], ["open the top drawer"], ["stack the blue block on the red block"]]
    a, b = LeRobotSource(KOCH), LeRobotSource(out)
    for ea, eb in zip(a.episodes, b.episodes):
        la, lb = a.read_lowdim(ea), b.read_lowdim(eb)
        for key in ("observation.state", "action", "observation.effort"):
            np.testing.assert_array_equal(la[key], lb[key])
        fa = list(a.iter_frames(ea, "observation.images.top"))
        fb = list(b.iter_frames(eb, "observation.images.top"))
        assert len(fa) == len(fb) == ea.length
        for i, (x, y) in enumerate(zip(fa, fb)):  # two lossy generations: close, and the same frame
            diff = np.abs(x.astype(np.int16) - y.astype(np.int16)).mean()
            assert diff < 8, (ea.index, i, diff)
            if i:
                assert diff < np.abs(fa[i - 1].astype(np.int16) - y.astype(np.int16)).mean()
    # the depth camera cannot be stored yet: said so in every episode's notes, never silently
    assert all("observation.images.depth left out" in e.notes for e in eps)


def test_sim_rig_is_exported_as_so101_follower_unless_told(store, tmp_path):
    e, _, _ = make_episode(store, n=3, rig=SIM_RIG)
    export_lerobot(store, tmp_path / "a", [e])
    info = _info(tmp_path / "a")
    assert info["robot_type"] == "so101_follower"
    assert info["features"]["action"]["names"] == ["shoulder_pan.pos", "shoulder_lift.pos", "elbow_flex.pos",
                                                   "wrist_flex.pos", "wrist_roll.pos", "gripper.pos"]
    export_lerobot(store, tmp_path / "b", [e], robot_type="my_sim_arm")
    assert _info(tmp_path / "b")["robot_type"] == "my_sim_arm"


def _keyframes(path: Path) -> list[int]:
    with av.open(str(path)) as c:
        return [i for i, p in enumerate(p for p in c.demux(c.streams.video[0]) if p.size) if p.is_keyframe]


def _export_slow_scene(root: Path, n: int = 12, **kw) -> Path:
    """An episode whose frames change a little each tick (no scene cut: keyframes only where the GOP says)."""
    writer = lerobot.LeRobotWriter(root, 10, {"front": (W, H)}, {"action": lerobot.LowdimSpec((2,))}, **kw)
    ramp = np.linspace(40, 200, W, dtype=np.float32)
    frames = [np.broadcast_to((ramp + i)[None, :, None], (H, W, 3)).astype(np.uint8) for i in range(n)]
    writer.add_episode("t", {"action": np.zeros((n, 2), np.float32)}, {"front": iter(frames)}, n)
    writer.finalize()
    return root / "videos/observation.images.front/chunk-000/file-000.mp4"


def test_export_gop_defaults_to_lerobots_and_can_be_chosen(store, tmp_path):
    """Issue 18 item 5: a keyframe every 2 frames by default (lerobot's), as info.json says; the user picks
    another spacing with gop= (datasets export --gop)."""
    assert _keyframes(_export_slow_scene(tmp_path / "default", codec="av1")) == [0, 2, 4, 6, 8, 10]
    assert _info(tmp_path / "default")["features"]["observation.images.front"]["info"]["video.g"] == 2
    assert _keyframes(_export_slow_scene(tmp_path / "g6", codec="av1", gop=6)) == [0, 6]
    assert _info(tmp_path / "g6")["features"]["observation.images.front"]["info"]["video.g"] == 6
    # x264 places them its own way (g=2 makes every frame one), never further apart than asked
    h264_default = _keyframes(_export_slow_scene(tmp_path / "h264", codec="h264"))
    h264_g6 = _keyframes(_export_slow_scene(tmp_path / "h264_g6", codec="h264", gop=6))
    assert max(np.diff(h264_default + [12])) <= 2 and max(np.diff(h264_g6 + [12])) <= 6
    assert len(h264_g6) < len(h264_default)
    e, _, _ = make_episode(store, n=3)
    with pytest.raises(DatasetError, match="GOP"):
        export_lerobot(store, tmp_path / "g0", [e], gop=0)
    assert not (tmp_path / "g0").exists() and not (tmp_path / "g0.partial").exists()


def test_success_labels_travel_in_meta_episodes_and_come_back(store, tmp_path):
    """Issue 18 item 4: the label of each episode is a per-episode column, and import restores it."""
    eps = [make_episode(store, n=3, seed=i, success=s)[0] for i, s in enumerate((True, False, None))]
    out = tmp_path / "labels"
    export_lerobot(store, out, eps)
    assert [r["success"] for r in _episode_rows(out)] == [True, False, None]
    back = import_lerobot(store, out, "back")
    assert [e.success for e in back] == [True, False, None]
    assert [e.id for e in lerobot.exportable(eps)] == [eps[0].id, eps[2].id]
    assert lerobot.exportable(eps, include_failed=True) == eps


def _with_fps(tmp_path: Path, fps, keep_video_fps: bool = True) -> Path:
    folder = tmp_path / f"fps_{fps}_{keep_video_fps}"
    shutil.copytree(SO101, folder)
    info = _info(folder)
    info["fps"] = fps
    if not keep_video_fps:
        for f in info["features"].values():
            (f.get("info") or {}).pop("video.fps", None)
    (folder / "meta/info.json").write_text(json.dumps(info))
    return folder


@pytest.mark.parametrize("fps", [0, -30, "abc", None, float("nan")])
def test_import_refuses_a_bad_fps_in_one_line_and_creates_nothing(store, tmp_path, fps):
    """Issue 13 item 10: fps 0, -30 or "abc" is one line naming info.json, and no empty dataset is left."""
    with pytest.raises(DatasetError, match="info.json: fps is") as err:
        import_lerobot(store, _with_fps(tmp_path, fps), "bad")
    assert "\n" not in str(err.value)
    assert store.datasets() == [] and store.episodes() == []


@pytest.mark.parametrize("fps", [10, 29.97, 1e9])
@pytest.mark.parametrize("keep_video_fps", [True, False])
def test_import_refuses_an_fps_its_videos_disagree_with(store, tmp_path, fps, keep_video_fps):
    """Issue 13 item 11: the videos run at 30 fps; an info.json saying 10, 29.97 or 1e9 is refused (checked
    against video.fps, and against the video streams themselves when info.json has no video.fps)."""
    with pytest.raises(DatasetError, match="disagrees with") as err:
        import_lerobot(store, _with_fps(tmp_path, fps, keep_video_fps), "bad")
    assert ("file-000.mp4 (30 frames/s)" in str(err.value)) is not keep_video_fps
    assert store.datasets() == [] and store.episodes() == []
    # the untouched folder imports (30 fps, what its videos say)
    eps = import_lerobot(store, SO101, "good")
    assert [e.fps for e in eps] == [30.0, 30.0]


def test_import_without_videos_checks_fps_against_the_timestamps(store, tmp_path):
    e, _, _ = make_episode(store, n=6, cameras=())
    out = tmp_path / "novideo"
    export_lerobot(store, out, [e])
    info = _info(out)
    info["fps"] = 30
    (out / "meta/info.json").write_text(json.dumps(info))
    with pytest.raises(DatasetError, match="disagrees with the frame timestamps"):
        import_lerobot(store, out, "bad")
    assert [d.name for d in store.datasets()] == ["demo"]
