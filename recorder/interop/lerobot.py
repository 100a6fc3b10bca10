"""LeRobotDataset interop: export store episodes to the v3.0 layout, import v3.0 and v2.1 folders.

Our own reader and writer of the layout documented in huggingface/lerobot
(``docs/source/lerobot-dataset-v3.mdx``, ``src/lerobot/datasets/``); lerobot is not needed at run time.

v3.0 layout written by :class:`LeRobotWriter`::

    meta/info.json                         codebase_version "v3.0", fps, features, path templates, totals
    meta/stats.json                        per feature min/max/mean/std/count/q01/q10/q50/q90/q99 (images too)
    meta/tasks.parquet                     task_index | task (pandas index "task")
    meta/episodes/chunk-000/file-000.parquet   one row per episode: offsets into data and video files
    data/chunk-000/file-000.parquet        index, episode_index, frame_index, timestamp, task_index, features
    videos/<key>/chunk-000/file-000.mp4    the episodes of one camera back to back; an episode's frame i
                                           sits at ``from_timestamp + i / fps``

v2.1 layout read by :class:`LeRobotSource`: ``meta/info.json`` (with ``data_path``/``video_path`` templates
using ``episode_chunk``/``episode_index``), ``meta/episodes.jsonl``, ``meta/tasks.jsonl``, one parquet and one
mp4 per episode.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from recorder.devices.base import JOINT_NAMES
from recorder.errors import DatasetError
from recorder.stats import feature_stats

CODEBASE_VERSION = "v3.0"
CHUNKS_SIZE = 1000
DATA_FILE_MB = 100
VIDEO_FILE_MB = 200
DATA_PATH = "data/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet"
VIDEO_PATH = "videos/{video_key}/chunk-{chunk_index:03d}/file-{file_index:03d}.mp4"
EPISODES_PATH = "meta/episodes/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet"
IMAGE_PREFIX = "observation.images."
# Columns every LeRobot frame row has; not features of the robot.
INDEX_FEATURES = ("timestamp", "frame_index", "episode_index", "index", "task_index")
# Low-dim columns of our store that are bookkeeping, not robot features. (stale.<cam> is exported on
# request, ``stale_column=True``: a per-frame 0/1 column "stale.<cam>", 1 where the video holds an older
# frame than the row's moment. Off by default: a feature lerobot's own recordings lack would stop
# aggregate_datasets merging the export with them.)
_STORE_BOOKKEEPING = ("index", "t")
_STORE_BOOKKEEPING_PREFIXES = ("ts.", "dropped.")
QUANTILES = (0.01, 0.10, 0.50, 0.90, 0.99)
# Our per-episode column in meta/episodes: True / False / null (unlabelled). lerobot ignores extra columns.
SUCCESS_COLUMN = "success"
# Frames between keyframes: lerobot's own default (fast random access in training), unless the user picks one.
DEFAULT_GOP = 2
# The simulated arm is SO-101-shaped: its episodes are exported as this robot type unless told otherwise.
SIM_ROBOT_TYPE = "so101_follower"

_CODECS = {
    # our name -> (PyAV encoder, canonical codec name written to info.json, encoder options)
    "h264": ("libx264", "h264", {"crf": "18", "preset": "veryfast"}),
    "av1": ("libsvtav1", "av1", {"crf": "30", "preset": "12"}),  # lerobot 0.6's defaults
}

ProgressFn = Callable[[int, int], None]  # (frames done, frames in all)


def _advance(chunk: int, file: int, chunks_size: int) -> tuple[int, int]:
    file += 1
    if file >= chunks_size:
        return chunk + 1, 0
    return chunk, file


def camera_key(camera: str) -> str:
    """The LeRobot feature key of one of our cameras."""
    return IMAGE_PREFIX + camera


def camera_name(key: str) -> str:
    """Our camera name for a LeRobot video feature key."""
    name = key[len(IMAGE_PREFIX):] if key.startswith(IMAGE_PREFIX) else key
    return name.replace(".", "_").replace("/", "_") or "camera"


# --------------------------------------------------------------------------------------------- stats
def vector_stats(x: np.ndarray) -> dict[str, np.ndarray]:
    """min/max/mean/std/count and quantiles per dimension of an (N, D) array."""
    return feature_stats(x, QUANTILES)


class _ImageStats:
    """Per-channel stats of sampled frames, in [0, 1], shaped (3, 1, 1) as LeRobot stores them, with the same
    stat set as every other feature (quantiles from a 256-bin histogram per channel: exact for uint8 pixels)."""

    def __init__(self) -> None:
        self.n = 0
        self.sum = np.zeros(3)
        self.sumsq = np.zeros(3)
        self.min = np.full(3, np.inf)
        self.max = np.full(3, -np.inf)
        self.hist = np.zeros((3, 256), dtype=np.int64)

    def add(self, img: np.ndarray) -> None:
        raw = np.asarray(img).reshape(-1, 3)
        for c in range(3):
            self.hist[c] += np.bincount(raw[:, c].astype(np.uint8, copy=False), minlength=256)
        px = raw.astype(np.float64) / 255.0
        self.n += px.shape[0]
        self.sum += px.sum(axis=0)
        self.sumsq += (px * px).sum(axis=0)
        self.min = np.minimum(self.min, px.min(axis=0))
        self.max = np.maximum(self.max, px.max(axis=0))

    def merge(self, other: _ImageStats) -> None:
        self.n += other.n
        self.sum += other.sum
        self.sumsq += other.sumsq
        self.min = np.minimum(self.min, other.min)
        self.max = np.maximum(self.max, other.max)
        self.hist += other.hist

    def quantiles(self) -> dict[str, np.ndarray]:
        cum = np.cumsum(self.hist, axis=1)
        out = {}
        for q in QUANTILES:
            if not self.n:
                out[f"q{round(q * 100):02d}"] = np.zeros(3)
                continue
            # the smallest pixel value with at least q of the samples at or below it
            idx = [int(np.searchsorted(cum[c], q * cum[c, -1], side="left")) for c in range(3)]
            out[f"q{round(q * 100):02d}"] = np.asarray(idx, dtype=np.float64) / 255.0
        return out

    def result(self, frames: int) -> dict[str, np.ndarray]:
        n = max(self.n, 1)
        mean = self.sum / n
        std = np.sqrt(np.maximum(self.sumsq / n - mean * mean, 0.0))

        def shaped(v):
            return np.asarray(v, dtype=np.float64).reshape(3, 1, 1)

        out = {
            "min": shaped(self.min if self.n else np.zeros(3)),
            "max": shaped(self.max if self.n else np.zeros(3)),
            "mean": shaped(mean),
            "std": shaped(std),
            "count": np.array([frames], dtype=np.int64),
        }
        out.update({k: shaped(v) for k, v in self.quantiles().items()})
        return out


def _jsonable(stats: dict[str, dict[str, np.ndarray]]) -> dict:
    return {k: {s: np.asarray(v).tolist() for s, v in d.items()} for k, d in stats.items()}


# --------------------------------------------------------------------------------------------- writer
@dataclass
class LowdimSpec:
    shape: tuple[int, ...]
    names: list[str] | None = None


class _VideoShards:
    """Writes one camera's frames into videos/<key>/chunk-NNN/file-NNN.mp4, episodes back to back."""

    def __init__(self, root: Path, key: str, fps: int, width: int, height: int, codec: str, gop: int,
                 max_mb: float, chunks_size: int) -> None:
        if codec not in _CODECS:
            raise DatasetError(f"unknown video codec {codec!r}: use one of {', '.join(_CODECS)}")
        if width % 2 or height % 2:
            raise DatasetError(f"camera {key} is {width}x{height}: LeRobot videos (yuv420p) need even sizes")
        self.root, self.key, self.fps = root, key, fps
        self.width, self.height = width, height
        self.codec, self.gop, self.max_bytes, self.chunks_size = codec, gop, max_mb * 1e6, chunks_size
        self.chunk, self.file = 0, 0
        self.container = None
        self.stream = None
        self.frames_in_file = 0
        self.path: Path | None = None

    def _open(self) -> None:
        import av

        self.path = self.root / VIDEO_PATH.format(video_key=self.key, chunk_index=self.chunk, file_index=self.file)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        encoder, _, options = _CODECS[self.codec]
        self.container = av.open(str(self.path), "w")
        stream = self.container.add_stream(encoder, rate=self.fps)
        stream.width, stream.height, stream.pix_fmt = self.width, self.height, "yuv420p"
        stream.time_base = Fraction(1, self.fps)
        stream.options = {**options, "g": str(self.gop)}
        self.stream = stream
        self.frames_in_file = 0

    def _close(self) -> None:
        if self.container is None:
            return
        for packet in self.stream.encode(None):
            self.container.mux(packet)
        self.container.close()
        self.container = None
        self.stream = None

    def begin_episode(self) -> tuple[int, int, float]:
        """Where the next episode starts: (chunk_index, file_index, from_timestamp)."""
        if self.container is not None and self.path.exists() and self.path.stat().st_size >= self.max_bytes:
            self._close()
            self.chunk, self.file = _advance(self.chunk, self.file, self.chunks_size)
        if self.container is None:
            self._open()
        return self.chunk, self.file, self.frames_in_file / self.fps

    def write(self, img: np.ndarray) -> None:
        import av

        if img.shape != (self.height, self.width, 3):
            raise DatasetError(
                f"camera {self.key}: frame of shape {img.shape}, expected {(self.height, self.width, 3)}"
            )
        frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(img), format="rgb24")
        frame.pts = self.frames_in_file
        frame.time_base = Fraction(1, self.fps)
        for packet in self.stream.encode(frame):
            self.container.mux(packet)
        self.frames_in_file += 1

    def end_timestamp(self) -> float:
        return self.frames_in_file / self.fps

    def close(self) -> None:
        self._close()


class LeRobotWriter:
    """Writes episodes into a LeRobotDataset v3.0 folder. Call :meth:`finalize` once at the end.

    ``cameras`` maps our camera name to (width, height); ``lowdim`` maps a feature key
    (``observation.state``, ``action``, extras) to its :class:`LowdimSpec`.
    """

    def __init__(self, root: Path, fps: float, cameras: dict[str, tuple[int, int]],
                 lowdim: dict[str, LowdimSpec], robot_type: str | None = None, codec: str = "h264",
                 gop: int | None = None, data_file_mb: float = DATA_FILE_MB,
                 video_file_mb: float = VIDEO_FILE_MB, chunks_size: int = CHUNKS_SIZE,
                 threads: bool = True, camera_keys: dict[str, str] | None = None) -> None:
        ifps = int(round(fps))
        if ifps <= 0 or abs(fps - ifps) > 1e-6:
            raise DatasetError(f"LeRobot datasets need a whole-number fps; these episodes run at {fps}")
        if gop is not None and (isinstance(gop, bool) or not isinstance(gop, int) or gop < 1):
            raise DatasetError(f"keyframe spacing (GOP) {gop!r} must be a whole number of frames >= 1")
        self.root = Path(root)
        self.fps = ifps
        self.cameras = dict(cameras)
        # our camera name -> its feature key; a rig may name its own (Meta-World's single "observation.image")
        self.camera_keys = {cam: (camera_keys or {}).get(cam) or camera_key(cam) for cam in self.cameras}
        self.lowdim = {k: LowdimSpec(tuple(v.shape), v.names) for k, v in lowdim.items()}
        self.robot_type = robot_type
        self.codec = codec
        self.gop = gop or DEFAULT_GOP
        self.threads = threads
        self.chunks_size = chunks_size
        self.data_max_bytes = data_file_mb * 1e6
        self.videos = {
            cam: _VideoShards(self.root, self.camera_keys[cam], ifps, w, h, codec, self.gop,
                              video_file_mb, chunks_size)
            for cam, (w, h) in self.cameras.items()
        }
        self.tasks: dict[str, int] = {}
        self.episode_rows: list[dict] = []
        self.success: dict[int, bool | None] = {}
        self.total_frames = 0
        self._data_chunk, self._data_file = 0, 0
        self._data_writer: pq.ParquetWriter | None = None
        self._data_bytes = 0
        self._lowdim_all: dict[str, list[np.ndarray]] = {k: [] for k in self.lowdim}
        self._image_stats = {cam: _ImageStats() for cam in self.cameras}
        self._schema = self._data_schema()

    # -- schema
    def _data_schema(self) -> pa.Schema:
        fields = []
        for key, spec in self.lowdim.items():
            if spec.shape in ((), (1,)):
                fields.append(pa.field(key, pa.float32()))
            else:
                fields.append(pa.field(key, pa.list_(pa.float32(), int(np.prod(spec.shape)))))
        fields += [
            pa.field("timestamp", pa.float32()),
            pa.field("frame_index", pa.int64()),
            pa.field("episode_index", pa.int64()),
            pa.field("index", pa.int64()),
            pa.field("task_index", pa.int64()),
        ]
        return pa.schema(fields)

    def features(self) -> dict:
        feats: dict[str, dict] = {}
        for key, spec in self.lowdim.items():
            shape = [1] if spec.shape in ((), (1,)) else [int(np.prod(spec.shape))]
            names = list(spec.names) if spec.names and len(spec.names) == shape[0] else None
            feats[key] = {"dtype": "float32", "shape": shape, "names": names}
        _, codec_name, options = _CODECS[self.codec]
        for cam, (w, h) in self.cameras.items():
            # the keys and their order as lerobot 0.6 writes them (video_utils.get_video_info): stream facts,
            # then the encoder settings, then is_depth_map
            feats[self.camera_keys[cam]] = {
                "dtype": "video",
                "shape": [h, w, 3],
                "names": ["height", "width", "channels"],
                "info": {
                    "video.height": h,
                    "video.width": w,
                    "video.codec": codec_name,
                    "video.pix_fmt": "yuv420p",
                    "video.fps": self.fps,
                    "video.channels": 3,
                    "has_audio": False,
                    "video.g": self.gop,
                    "video.crf": int(options["crf"]),
                    "video.preset": int(options["preset"]) if options["preset"].isdigit() else options["preset"],
                    "video.fast_decode": 0,
                    "video.video_backend": "pyav",
                    "video.extra_options": {},
                    "is_depth_map": False,
                },
            }
        feats["timestamp"] = {"dtype": "float32", "shape": [1], "names": None}
        for key in ("frame_index", "episode_index", "index", "task_index"):
            feats[key] = {"dtype": "int64", "shape": [1], "names": None}
        return feats

    # -- episodes
    def add_episode(self, task: str, values: dict[str, np.ndarray], frames: dict[str, Iterable[np.ndarray]],
                    length: int, on_frame: Callable[[], None] | None = None, success: bool | None = None) -> int:
        """Append one episode: ``values[key]`` is (length, *shape); ``frames[cam]`` yields ``length`` images."""
        ep = len(self.episode_rows)
        if length <= 0:
            raise DatasetError(f"episode {ep} has no frames: nothing to export")
        missing = set(self.lowdim) - set(values)
        if missing:
            raise DatasetError(f"episode {ep} lacks the low-dim streams {sorted(missing)}")
        if set(frames) != set(self.cameras):
            raise DatasetError(f"episode {ep} has cameras {sorted(frames)}, the dataset has {sorted(self.cameras)}")
        task_index = self.tasks.setdefault(task, len(self.tasks))
        row: dict = {"episode_index": ep, "tasks": [task], "length": length}
        self.success[ep] = success

        # video: one thread per camera (PyAV decodes and encodes without holding the GIL)
        sample_every = max(1, length // 30)

        def write_camera(cam: str, it: Iterable[np.ndarray]):
            shard = self.videos[cam]
            chunk, file, t0 = shard.begin_episode()
            stats = _ImageStats()
            count = 0
            for i, img in enumerate(it):
                if i >= length or cancel.is_set():
                    break
                shard.write(img)
                if i % sample_every == 0:
                    stats.add(img[::4, ::4])
                count += 1
                if on_frame is not None:
                    on_frame()
            if count != length and not cancel.is_set():
                raise DatasetError(f"episode {ep}: camera {cam} gave {count} frames, expected {length}")
            return chunk, file, t0, shard.end_timestamp(), stats

        def guarded(cam: str, it: Iterable[np.ndarray]):
            try:
                return write_camera(cam, it)
            except BaseException:
                cancel.set()  # stop the other cameras too
                raise

        cancel = threading.Event()
        if self.threads and len(frames) > 1:
            with ThreadPoolExecutor(max_workers=len(frames), thread_name_prefix="lerobot-export") as pool:
                futures = {cam: pool.submit(guarded, cam, it) for cam, it in frames.items()}
                try:
                    results = {cam: f.result() for cam, f in futures.items()}
                except BaseException:
                    cancel.set()
                    raise
        else:
            results = {cam: write_camera(cam, it) for cam, it in frames.items()}
        ep_image_stats = {}
        for cam, (chunk, file, t0, t1, stats) in results.items():
            key = self.camera_keys[cam]
            row[f"videos/{key}/chunk_index"] = chunk
            row[f"videos/{key}/file_index"] = file
            row[f"videos/{key}/from_timestamp"] = t0
            row[f"videos/{key}/to_timestamp"] = t1
            ep_image_stats[key] = stats.result(length)
            self._image_stats[cam].merge(stats)

        # table rows
        cols: dict[str, pa.Array] = {}
        ep_stats: dict[str, dict] = {}
        for key, spec in self.lowdim.items():
            arr = np.asarray(values[key], dtype=np.float32).reshape(length, -1)
            if arr.shape[0] != length:
                raise DatasetError(f"episode {ep}: {key} has {arr.shape[0]} rows, expected {length}")
            self._lowdim_all[key].append(arr)
            ep_stats[key] = vector_stats(arr)
            if spec.shape in ((), (1,)):
                cols[key] = pa.array(arr[:, 0], type=pa.float32())
            else:
                flat = pa.array(arr.reshape(-1), type=pa.float32())
                cols[key] = pa.FixedSizeListArray.from_arrays(flat, arr.shape[1])
        frame_index = np.arange(length, dtype=np.int64)
        timestamps = (frame_index / self.fps).astype(np.float32)
        cols["timestamp"] = pa.array(timestamps)
        cols["frame_index"] = pa.array(frame_index)
        cols["episode_index"] = pa.array(np.full(length, ep, dtype=np.int64))
        cols["index"] = pa.array(frame_index + self.total_frames)
        cols["task_index"] = pa.array(np.full(length, task_index, dtype=np.int64))
        table = pa.Table.from_arrays([cols[f.name] for f in self._schema], schema=self._schema)
        ep_stats["timestamp"] = vector_stats(timestamps)
        ep_stats["frame_index"] = vector_stats(frame_index)
        ep_stats["episode_index"] = vector_stats(np.full(length, ep))
        ep_stats["index"] = vector_stats(frame_index + self.total_frames)
        ep_stats["task_index"] = vector_stats(np.full(length, task_index))
        ep_stats.update(ep_image_stats)

        if self._data_writer is not None and self._data_bytes >= self.data_max_bytes:
            self._data_writer.close()
            self._data_writer = None
            self._data_chunk, self._data_file = _advance(self._data_chunk, self._data_file, self.chunks_size)
        if self._data_writer is None:
            path = self.root / DATA_PATH.format(chunk_index=self._data_chunk, file_index=self._data_file)
            path.parent.mkdir(parents=True, exist_ok=True)
            self._data_writer = pq.ParquetWriter(str(path), self._schema)
            self._data_bytes = 0
        self._data_writer.write_table(table)
        self._data_bytes += table.nbytes
        row["data/chunk_index"] = self._data_chunk
        row["data/file_index"] = self._data_file
        row["dataset_from_index"] = self.total_frames
        row["dataset_to_index"] = self.total_frames + length
        for key, st in ep_stats.items():
            for name, v in st.items():
                row[f"stats/{key}/{name}"] = np.asarray(v).tolist()
        row["meta/episodes/chunk_index"] = 0
        row["meta/episodes/file_index"] = 0
        self.episode_rows.append(row)
        self.total_frames += length
        return ep

    def finalize(self) -> None:
        """Close the files and write meta/: tasks, episodes, stats, and info.json last."""
        if not self.episode_rows:
            raise DatasetError("no episodes to export: the selection is empty")
        for shard in self.videos.values():
            shard.close()
        if self._data_writer is not None:
            self._data_writer.close()
            self._data_writer = None
        meta = self.root / "meta"
        meta.mkdir(parents=True, exist_ok=True)
        self._write_tasks(meta / "tasks.parquet")
        ep_path = self.root / EPISODES_PATH.format(chunk_index=0, file_index=0)
        ep_path.parent.mkdir(parents=True, exist_ok=True)
        episodes = pa.Table.from_pylist(self.episode_rows)
        success = pa.array([self.success.get(r["episode_index"]) for r in self.episode_rows], type=pa.bool_())
        pq.write_table(episodes.append_column(SUCCESS_COLUMN, success), str(ep_path))
        stats: dict[str, dict] = {}
        for key, parts in self._lowdim_all.items():
            stats[key] = vector_stats(np.concatenate(parts, axis=0))
        for cam, st in self._image_stats.items():
            stats[self.camera_keys[cam]] = st.result(self.total_frames)
        frame_index = np.concatenate([np.arange(r["length"]) for r in self.episode_rows])
        stats["timestamp"] = vector_stats(frame_index / self.fps)
        stats["frame_index"] = vector_stats(frame_index)
        stats["index"] = vector_stats(np.arange(self.total_frames))
        stats["episode_index"] = vector_stats(
            np.concatenate([np.full(r["length"], r["episode_index"]) for r in self.episode_rows]))
        stats["task_index"] = vector_stats(
            np.concatenate([np.full(r["length"], self.tasks[r["tasks"][0]]) for r in self.episode_rows]))
        (meta / "stats.json").write_text(json.dumps(_jsonable(stats), indent=2))
        info = {
            "codebase_version": CODEBASE_VERSION,
            "robot_type": self.robot_type,
            "total_episodes": len(self.episode_rows),
            "total_frames": self.total_frames,
            "total_tasks": len(self.tasks),
            "chunks_size": self.chunks_size,
            "data_files_size_in_mb": int(math.ceil(self.data_max_bytes / 1e6)),
            "video_files_size_in_mb": int(math.ceil(self.videos[next(iter(self.videos))].max_bytes / 1e6))
            if self.videos else VIDEO_FILE_MB,
            "fps": self.fps,
            "splits": {"train": f"0:{len(self.episode_rows)}"},
            "data_path": DATA_PATH,
            "video_path": VIDEO_PATH if self.cameras else None,
            "features": self.features(),
        }
        (meta / "info.json").write_text(json.dumps(info, indent=4))

    def _write_tasks(self, path: Path) -> None:
        # pandas writes a DataFrame indexed by "task" with a "task_index" column; lerobot reads it with
        # pd.read_parquet and looks tasks up by index, so record the index in the pandas metadata.
        names = sorted(self.tasks, key=self.tasks.get)
        table = pa.table({"task_index": pa.array([self.tasks[n] for n in names], type=pa.int64()),
                          "task": pa.array(names, type=pa.string())})
        pandas_meta = {
            "index_columns": ["task"],
            "column_indexes": [{"name": None, "field_name": None, "pandas_type": "unicode",
                                "numpy_type": "object", "metadata": {"encoding": "UTF-8"}}],
            "columns": [
                {"name": "task_index", "field_name": "task_index", "pandas_type": "int64",
                 "numpy_type": "int64", "metadata": None},
                {"name": "task", "field_name": "task", "pandas_type": "unicode",
                 "numpy_type": "object", "metadata": None},
            ],
            "creator": {"library": "pyarrow", "version": pa.__version__},
            "pandas_version": "2.2.3",
        }
        table = table.replace_schema_metadata({b"pandas": json.dumps(pandas_meta).encode()})
        pq.write_table(table, str(path))

    def abort(self) -> None:
        for shard in self.videos.values():
            try:
                shard.close()
            except Exception:  # noqa: BLE001 (best effort while failing already)
                pass
        if self._data_writer is not None:
            try:
                self._data_writer.close()
            except Exception:  # noqa: BLE001
                pass
            self._data_writer = None


# --------------------------------------------------------------------------------------------- export
@dataclass
class ExportResult:
    path: Path
    episodes: int
    frames: int
    seconds: float

    @property
    def frames_per_s(self) -> float:
        return self.frames / self.seconds if self.seconds > 0 else float("inf")


def _partial_path(out: Path) -> Path:
    return out.with_name(out.name + ".partial")


def export_robot_type(rig: dict, override: str | None = None) -> str | None:
    """The ``robot_type`` an episode is exported with: the user's choice, else what an import recorded,
    else the rig's robot type, the simulated arm (SO-101-shaped) being exported as the SO-101 follower."""
    if override:
        return override
    if rig.get("robot_type"):
        return str(rig["robot_type"])
    robot = rig.get("robot") if isinstance(rig.get("robot"), dict) else {}
    kind = robot.get("type")
    if kind == "sim":
        return SIM_ROBOT_TYPE
    return str(kind) if kind else None


def export_names(key: str, dim: int, rig: dict) -> list[str] | None:
    """Feature names of a low-dim stream: those an import recorded, else the arm's joints as lerobot names
    its motor features (``<joint>.pos``) for state and action."""
    recorded = (rig.get("feature_names") or {}).get(key) if isinstance(rig.get("feature_names"), dict) else None
    if isinstance(recorded, list) and len(recorded) == dim:
        return [str(n) for n in recorded]
    if key not in ("observation.state", "action"):
        return None
    info = rig.get("robot_info") if isinstance(rig.get("robot_info"), dict) else {}
    joints = info.get("joint_names") or JOINT_NAMES
    if len(joints) != dim:
        return None
    return [j if j.endswith(".pos") else f"{j}.pos" for j in joints]


def _is_bookkeeping(key: str) -> bool:
    return key in _STORE_BOOKKEEPING or key.startswith(_STORE_BOOKKEEPING_PREFIXES)


def exportable(episodes: list, include_failed: bool = False) -> list:
    """The episodes an export takes by default: successful and unlabelled ones (all with ``include_failed``)."""
    return list(episodes) if include_failed else [e for e in episodes if e.success is not False]


def export_lerobot(store, out: Path | str, episodes: list, *, codec: str = "h264", overwrite: bool = False,
                   robot_type: str | None = None, gop: int | None = None, progress: ProgressFn | None = None,
                   batch: int = 64, stale_column: bool = False) -> ExportResult:
    """Export store episodes (a list of ``EpisodeInfo``) to a LeRobotDataset v3.0 folder ``out``.

    ``robot_type`` defaults to :func:`export_robot_type`; ``gop`` (frames between keyframes) to
    :data:`DEFAULT_GOP`, lerobot's own, for fast random access in training. Each episode's success label
    goes into the ``success`` column of meta/episodes. ``stale_column``: also write each camera's per-frame
    stale flag (the store's ``stale.<cam>``) as a 0/1 feature ``stale.<cam>``.

    Everything is written into ``<out>.partial`` and renamed to ``out`` only once complete, so an
    interrupted export never leaves a folder that looks like a finished dataset.
    """
    out = Path(out)
    if not episodes:
        raise DatasetError(f"no episodes to export to {out}: the dataset or filter selects none")
    if out.exists():
        if not overwrite:
            raise DatasetError(f"{out} already exists: choose another --out or remove it")
    partial = _partial_path(out)
    if partial.exists():
        shutil.rmtree(partial)
    partial.mkdir(parents=True)
    t_start = time.perf_counter()
    total = sum(int(e.num_frames) for e in episodes)
    done = 0
    progress_lock = threading.Lock()
    writer: LeRobotWriter | None = None
    try:
        first_cams = None
        for info in episodes:
            reader = store.open_episode(info.id)
            try:
                n = int(reader.num_frames)
                lowdim = reader.lowdim()
                values = {k: np.asarray(v) for k, v in lowdim.items() if not _is_bookkeeping(k)
                          and (stale_column or not k.startswith("stale."))}
                cams = {name: (int(spec.width), int(spec.height)) for name, spec in reader.cameras.items()}
                if writer is None:
                    first_cams = cams
                    rig = getattr(info, "rig", None) or {}
                    specs = {}
                    for k, v in values.items():
                        shape = tuple(v.shape[1:]) or (1,)
                        specs[k] = LowdimSpec(shape, export_names(k, int(np.prod(shape)), rig))
                    keys = (rig.get("robot_info") or {}).get("lerobot_camera_keys") if isinstance(
                        rig.get("robot_info"), dict) else None
                    writer = LeRobotWriter(partial, float(reader.fps), cams, specs,
                                           robot_type=export_robot_type(rig, robot_type), codec=codec, gop=gop,
                                           camera_keys=keys if isinstance(keys, dict) else None)
                else:
                    _check_same_shape(info, cams, first_cams, values, writer, float(reader.fps))

                for cam in cams:  # open each camera's decoder here: the threads then share no state
                    reader.frame(cam, 0)

                def frames_of(cam, reader=reader, n=n):
                    for s in range(0, n, batch):
                        block = reader.frames(cam, list(range(s, min(n, s + batch))))
                        yield from block

                def tick(ncam=max(1, len(cams))):
                    nonlocal done
                    with progress_lock:
                        done += 1
                        report = progress is not None and done % ncam == 0
                        value = done // ncam
                    if report:
                        progress(value, total)

                writer.add_episode(info.task or "", {k: values[k] for k in writer.lowdim},
                                   {cam: frames_of(cam) for cam in cams}, n, on_frame=tick,
                                   success=info.success)
            finally:
                reader.close()
        writer.finalize()
        if out.exists() and overwrite:
            shutil.rmtree(out)
        os.replace(partial, out)
    except BaseException:
        if writer is not None:
            writer.abort()
        shutil.rmtree(partial, ignore_errors=True)
        raise
    if progress is not None:
        progress(total, total)
    return ExportResult(out, len(episodes), total, time.perf_counter() - t_start)


def _check_same_shape(info, cams, first_cams, values, writer: LeRobotWriter, fps: float) -> None:
    label = f"episode {info.id}"
    if cams != first_cams:
        raise DatasetError(f"{label} has cameras {cams}, the first episode has {first_cams}: export them apart")
    if int(round(fps)) != writer.fps:
        raise DatasetError(f"{label} runs at {fps} fps, the first episode at {writer.fps}: export them apart")
    for k, spec in writer.lowdim.items():
        if k not in values:
            raise DatasetError(f"{label} has no {k!r} stream that the first episode has: export them apart")
        shape = tuple(values[k].shape[1:]) or (1,)
        if int(np.prod(shape)) != int(np.prod(spec.shape)):
            raise DatasetError(f"{label}: {k} has shape {shape}, the first episode {spec.shape}")


# --------------------------------------------------------------------------------------------- reader
@dataclass
class SourceEpisode:
    index: int
    length: int
    tasks: list[str]
    data_file: Path
    videos: dict[str, tuple[Path, float]] = field(default_factory=dict)  # key -> (file, from_timestamp)
    success: bool | None = None  # our per-episode "success" column (lerobot itself has none)


def _load_json(path: Path, what: str) -> dict | list:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as err:
        raise DatasetError(f"{path}: cannot read the {what} ({err.__class__.__name__}): is the dataset complete?") \
            from None


def _check_fps(value, where: Path) -> float:
    """The dataset's fps as a positive finite number, or a DatasetError naming the file."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise DatasetError(f"{where}: fps is {value!r}, not a number: set 'fps' to the rate the dataset was "
                           "recorded at (e.g. 30)")
    fps = float(value)
    if not math.isfinite(fps) or fps <= 0:
        raise DatasetError(f"{where}: fps is {value!r}: set 'fps' to the positive rate the dataset was "
                           "recorded at (e.g. 30)")
    return fps


def _is_depth(feature: dict) -> bool:
    info = feature.get("info") or {}
    vinfo = feature.get("video_info") or {}
    return bool(info.get("is_depth_map") or info.get("video.is_depth_map") or vinfo.get("video.is_depth_map"))


def _same_rate(a: float, b: float, rel: float = 5e-4) -> bool:
    """Two frame rates agree: 29.97 is not 30, 30000/1001 is 29.97."""
    return abs(a - b) <= rel * max(abs(a), abs(b))


def _video_rate(path: Path) -> float | None:
    """Frames per second of the first video stream of ``path`` as its container states it (None: unknown)."""
    import av

    try:
        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            rate = stream.average_rate or stream.guessed_rate or stream.base_rate
    except (OSError, IndexError, av.FFmpegError) as err:
        raise DatasetError(f"{path}: cannot open video ({err.__class__.__name__}): the file is damaged") from None
    return float(rate) if rate else None


def _load_jsonl(path: Path) -> list[dict]:
    if not path.is_file():
        raise DatasetError(f"{path} is missing: a LeRobot v2.1 dataset needs it")
    rows = []
    for n, line in enumerate(path.read_text().splitlines(), 1):
        if line.strip():
            try:
                rows.append(json.loads(line))
            except ValueError:
                raise DatasetError(f"{path}:{n}: not valid JSON; the file is damaged") from None
    return rows


def _column_to_numpy(col: pa.ChunkedArray, n: int) -> np.ndarray:
    arr = col.combine_chunks() if isinstance(col, pa.ChunkedArray) else col
    t = arr.type
    if pa.types.is_fixed_size_list(t) or pa.types.is_list(t) or pa.types.is_large_list(t):
        flat = arr.flatten().to_numpy(zero_copy_only=False)
        return np.asarray(flat, dtype=np.float32).reshape(n, -1)
    return np.asarray(arr.to_numpy(zero_copy_only=False), dtype=np.float32).reshape(n, 1)


class LeRobotSource:
    """A LeRobot dataset folder (v3.0 or v2.x), read without lerobot."""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        info_path = self.path / "meta" / "info.json"
        if not self.path.is_dir():
            raise DatasetError(f"{self.path} is not a folder: give the folder that holds meta/, data/ and videos/")
        if not info_path.is_file():
            if _partial_path(self.path).exists() or self.path.name.endswith(".partial"):
                raise DatasetError(f"{self.path} is an unfinished export (no meta/info.json): export it again")
            raise DatasetError(f"{self.path} is not a LeRobot dataset (no meta/info.json): "
                               "give the folder that holds meta/, data/ and videos/")
        info = _load_json(info_path, "dataset info")
        if not isinstance(info, dict) or "features" not in info or "fps" not in info:
            raise DatasetError(f"{info_path} has no 'features'/'fps': not a LeRobot dataset info file")
        self.info = info
        self.version = str(info.get("codebase_version", ""))
        if self.version.startswith("v3."):
            self.layout = "v3"
        elif self.version.startswith("v2."):
            self.layout = "v2"
        else:
            raise DatasetError(f"{info_path}: codebase_version {self.version!r} is not supported "
                               "(v2.0, v2.1 and v3.0 are)")
        self.fps = _check_fps(info.get("fps"), info_path)
        self.features: dict[str, dict] = info["features"]
        self.robot_type = info.get("robot_type")
        videos = [k for k, f in self.features.items() if f.get("dtype") == "video"]
        # depth maps (lerobot's is_depth_map, 12-bit grey video): the store keeps RGB cameras only
        self.depth_keys = [k for k in videos if _is_depth(self.features[k])]
        self.video_keys = [k for k in videos if k not in self.depth_keys]
        image_keys = [k for k, f in self.features.items() if f.get("dtype") == "image"]
        if image_keys:
            raise DatasetError(f"{info_path}: image features {image_keys} (frames stored as PNG in parquet) are "
                               "not supported; convert them to video features first")
        self.lowdim_keys = [
            k for k, f in self.features.items()
            if k not in INDEX_FEATURES and f.get("dtype") in ("float32", "float64", "int64", "int32", "bool",
                                                             "int8", "int16", "uint8", "float16")
        ]
        self.episodes = self._load_episodes_v3() if self.layout == "v3" else self._load_episodes_v2()
        self._table_cache: tuple[Path, pa.Table] | None = None

    @property
    def name(self) -> str:
        return self.path.name

    def camera_shape(self, key: str) -> tuple[int, int]:
        """(width, height) of a video feature."""
        f = self.features[key]
        vinfo = f.get("info") or f.get("video_info") or {}
        names = f.get("names") or ["height", "width", "channels"]
        shape = list(f.get("shape", []))
        if "video.height" in vinfo and "video.width" in vinfo:
            return int(vinfo["video.width"]), int(vinfo["video.height"])
        if len(shape) == 3:
            dims = dict(zip(names, shape))
            return int(dims.get("width", shape[1])), int(dims.get("height", shape[0]))
        raise DatasetError(f"{self.path}: video feature {key} has no height/width in meta/info.json")

    def lowdim_shape(self, key: str) -> tuple[int, ...]:
        shape = tuple(int(s) for s in self.features[key].get("shape", [1]))
        return (int(np.prod(shape)),) if shape else (1,)

    def lowdim_names(self, key: str) -> list[str] | None:
        names = self.features[key].get("names")
        if isinstance(names, dict):  # v2.0 style {"motors": [...]}
            names = next(iter(names.values()), None)
        return list(names) if isinstance(names, list) else None

    # -- episode lists
    def _load_tasks_v3(self) -> dict[int, str]:
        path = self.path / "meta" / "tasks.parquet"
        if not path.is_file():
            return {}
        t = pq.read_table(str(path))
        text_col = next((c for c in ("task", "__index_level_0__") if c in t.column_names), None)
        if text_col is None or "task_index" not in t.column_names:
            raise DatasetError(f"{path} has no task/task_index columns: the dataset is damaged")
        return dict(zip(t.column("task_index").to_pylist(), t.column(text_col).to_pylist()))

    def _load_episodes_v3(self) -> list[SourceEpisode]:
        ep_dir = self.path / "meta" / "episodes"
        files = sorted(ep_dir.glob("chunk-*/file-*.parquet"))
        if not files:
            raise DatasetError(f"{ep_dir} holds no episode files: not a complete LeRobot v3.0 dataset")
        tasks = self._load_tasks_v3()
        data_tmpl = self.info.get("data_path", DATA_PATH)
        video_tmpl = self.info.get("video_path") or VIDEO_PATH
        rows = []
        for f in files:
            t = pq.read_table(str(f), columns=None)
            keep = [c for c in t.column_names if not c.startswith("stats/")]
            rows += t.select(keep).to_pylist()
        out = []
        for r in sorted(rows, key=lambda r: r["episode_index"]):
            ep_tasks = r.get("tasks") or []
            if isinstance(ep_tasks, str):
                ep_tasks = [ep_tasks]
            data_file = self.path / data_tmpl.format(chunk_index=r["data/chunk_index"],
                                                     file_index=r["data/file_index"])
            videos = {}
            for key in self.video_keys:
                try:
                    videos[key] = (
                        self.path / video_tmpl.format(video_key=key, chunk_index=r[f"videos/{key}/chunk_index"],
                                                      file_index=r[f"videos/{key}/file_index"]),
                        float(r[f"videos/{key}/from_timestamp"]),
                    )
                except KeyError:
                    raise DatasetError(f"{files[0]}: episode {r['episode_index']} has no video offsets for {key}"
                                       ) from None
            success = r.get(SUCCESS_COLUMN)
            out.append(SourceEpisode(int(r["episode_index"]), int(r["length"]), list(ep_tasks) or
                                     [tasks.get(0, "")], data_file, videos,
                                     success if isinstance(success, bool) else None))
        return out

    def _load_episodes_v2(self) -> list[SourceEpisode]:
        meta = self.path / "meta"
        eps = _load_jsonl(meta / "episodes.jsonl")
        chunks = int(self.info.get("chunks_size", CHUNKS_SIZE))
        data_tmpl = self.info.get("data_path") or "data/chunk-{episode_chunk:03d}/episode_{episode_index:06d}.parquet"
        video_tmpl = self.info.get("video_path") or \
            "videos/chunk-{episode_chunk:03d}/{video_key}/episode_{episode_index:06d}.mp4"
        out = []
        for r in sorted(eps, key=lambda r: r["episode_index"]):
            idx = int(r["episode_index"])
            ep_tasks = r.get("tasks") or []
            if isinstance(ep_tasks, str):
                ep_tasks = [ep_tasks]
            data_file = self.path / data_tmpl.format(episode_chunk=idx // chunks, episode_index=idx)
            videos = {
                key: (self.path / video_tmpl.format(episode_chunk=idx // chunks, video_key=key, episode_index=idx),
                      0.0)
                for key in self.video_keys
            }
            out.append(SourceEpisode(idx, int(r["length"]), list(ep_tasks), data_file, videos))
        return out

    def check_files(self) -> None:
        """DatasetError naming the first data or video file an episode needs that is missing, or whose
        frame rate disagrees with the dataset's fps."""
        for ep in self.episodes:
            if not ep.data_file.is_file():
                raise DatasetError(f"{ep.data_file} is missing (episode {ep.index}): the dataset is incomplete")
            for key, (path, _) in ep.videos.items():
                if not path.is_file():
                    raise DatasetError(f"{path} is missing (video {key} of episode {ep.index}): "
                                       "download the videos too or pick a complete copy")
        self.check_fps()

    def check_fps(self) -> None:
        """The fps of meta/info.json must agree with every video stream and with the frame timestamps."""
        info_path = self.path / "meta" / "info.json"
        for key in self.video_keys:
            vfps = (self.features[key].get("info") or self.features[key].get("video_info") or {}).get("video.fps")
            if isinstance(vfps, int | float) and not isinstance(vfps, bool) and not _same_rate(vfps, self.fps):
                raise DatasetError(f"{info_path}: fps {self.fps:g} disagrees with video.fps {vfps:g} of {key}: "
                                   "fix 'fps' (or the feature's video.fps) to the rate the videos were recorded at")
        seen: set[Path] = set()
        for ep in self.episodes:
            for path, _ in ep.videos.values():
                if path in seen:
                    continue
                seen.add(path)
                rate = _video_rate(path)
                if rate is not None and not _same_rate(rate, self.fps):
                    raise DatasetError(f"{info_path}: fps {self.fps:g} disagrees with {path} ({rate:g} frames/s): "
                                       "fix 'fps' in meta/info.json to the rate the videos were recorded at")
        if self.episodes:
            ts = self.read_lowdim(self.episodes[0]).get("timestamp")
            if ts is not None and len(ts) > 1:
                step = float(np.median(np.diff(ts)))
                # (captured timestamps jitter: a coarser check than the videos' stated rate)
                if step > 0 and not _same_rate(1.0 / step, self.fps, rel=0.02):
                    raise DatasetError(f"{info_path}: fps {self.fps:g} disagrees with the frame timestamps of "
                                       f"{self.episodes[0].data_file} (one frame every {step:g} s): fix 'fps'")

    # -- per-episode data
    def _table(self, path: Path) -> pa.Table:
        if self._table_cache is None or self._table_cache[0] != path:
            try:
                self._table_cache = (path, pq.read_table(str(path)))
            except (OSError, pa.ArrowInvalid) as err:
                raise DatasetError(f"{path}: cannot read parquet ({err.__class__.__name__}): the file is damaged") \
                    from None
        return self._table_cache[1]

    def read_lowdim(self, ep: SourceEpisode) -> dict[str, np.ndarray]:
        """The episode's rows: feature key -> (length, D) float32, plus ``timestamp`` (length,)."""
        table = self._table(ep.data_file)
        if "episode_index" in table.column_names:
            table = table.filter(pc.equal(table.column("episode_index"), ep.index))
        if "frame_index" in table.column_names:
            table = table.sort_by("frame_index")
        n = table.num_rows
        if n != ep.length:
            raise DatasetError(f"{ep.data_file}: episode {ep.index} has {n} rows, its metadata says {ep.length}")
        out = {}
        for key in self.lowdim_keys:
            if key not in table.column_names:
                raise DatasetError(f"{ep.data_file}: column {key!r} named in meta/info.json is missing")
            out[key] = _column_to_numpy(table.column(key), n)
        if "timestamp" in table.column_names:
            out["timestamp"] = _column_to_numpy(table.column("timestamp"), n)[:, 0].astype(np.float64)
        else:
            out["timestamp"] = np.arange(n) / self.fps
        if "task_index" in table.column_names and n:
            out["task_index"] = _column_to_numpy(table.column("task_index"), n)[:, 0].astype(np.int64)
        return out

    def iter_frames(self, ep: SourceEpisode, key: str) -> Iterator[np.ndarray]:
        """The episode's frames of one camera, in order (exactly ``ep.length`` of them or a DatasetError)."""
        import av

        path, start = ep.videos[key]
        half = 0.5 / self.fps
        try:
            container = av.open(str(path))
        except (OSError, av.FFmpegError) as err:
            raise DatasetError(f"{path}: cannot open video ({err.__class__.__name__}): the file is damaged") \
                from None
        count = 0
        try:
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            if start > 0:
                container.seek(int(start / stream.time_base), stream=stream, backward=True, any_frame=False)
            for frame in container.decode(stream):
                t = float(frame.pts * stream.time_base) if frame.pts is not None else (frame.time or 0.0)
                if t < start - half:
                    continue
                yield frame.to_ndarray(format="rgb24")
                count += 1
                if count >= ep.length:
                    break
        except av.FFmpegError as err:
            raise DatasetError(f"{path}: decoding failed at frame {count} ({err}): the video is damaged") from None
        finally:
            container.close()
        if count < ep.length:
            raise DatasetError(f"{path}: has {count} frames for episode {ep.index}, which needs {ep.length}: "
                               "the video is truncated")


# --------------------------------------------------------------------------------------------- import
def import_lerobot(store, src: Path | str, dataset: str | None = None, *, source: str = "teleop",
                   progress: ProgressFn | None = None, tags: Iterable[str] = ("lerobot",)) -> list:
    """Import every episode of a LeRobot v3.0/v2.x folder into ``dataset`` (default: the folder name).

    Returns the new ``EpisodeInfo`` list. The whole folder is checked before anything is written;
    an episode that fails half-way is discarded.
    """
    from recorder.store import CameraSpec

    src_ds = LeRobotSource(src)
    src_ds.check_files()
    if not src_ds.episodes:
        raise DatasetError(f"{src_ds.path} holds no episodes")
    name = (dataset or src_ds.name).strip()
    if not name:
        raise DatasetError("a dataset needs a non-empty name: give --dataset NAME")
    # the dataset is created with its first episode: a refused folder leaves no empty dataset behind
    cams = {camera_name(k): k for k in src_ds.video_keys}
    if len(cams) != len(src_ds.video_keys):
        raise DatasetError(f"{src_ds.path}: camera keys {src_ds.video_keys} collide once shortened")
    lowdim_shapes = {k: src_ds.lowdim_shape(k) for k in src_ds.lowdim_keys}
    # our export's per-frame stale flags come back as the store's stale.<cam> column, not as a stream
    stale_keys = {cam: f"stale.{cam}" for cam in cams if f"stale.{cam}" in lowdim_shapes}
    for key in stale_keys.values():
        del lowdim_shapes[key]
    feature_names = {k: src_ds.lowdim_names(k) for k in src_ds.lowdim_keys if src_ds.lowdim_names(k)}
    total = sum(e.length for e in src_ds.episodes)
    done = 0
    imported = []
    for ep in src_ds.episodes:
        values = src_ds.read_lowdim(ep)
        task = ep.tasks[0] if ep.tasks else ""
        w = store.begin_episode(
            dataset=name, task=task, fps=src_ds.fps,
            rig={"imported_from": str(src_ds.path), "format": f"lerobot {src_ds.version}",
                 "robot_type": src_ds.robot_type, "episode_index": ep.index,
                 "feature_names": feature_names},
            source=source,
            cameras={cam: _spec(CameraSpec, src_ds.camera_shape(key)) for cam, key in cams.items()},
            lowdim=lowdim_shapes,
        )
        try:
            iters = {cam: src_ds.iter_frames(ep, key) for cam, key in cams.items()}
            for i in range(ep.length):
                frames = {cam: next(it) for cam, it in iters.items()}
                t = float(values["timestamp"][i])
                _wait_for_room(w)
                w.add_tick(t=t, frames=frames, timestamps={cam: t for cam in frames},
                           values={k: values[k][i].reshape(lowdim_shapes[k]) for k in lowdim_shapes},
                           stale={cam: bool(values[k][i].reshape(-1)[0]) for cam, k in stale_keys.items()})
                done += 1
                if progress is not None and done % 32 == 0:
                    progress(done, total)
            for it in iters.values():
                it.close()
            left_out = f"; depth videos {', '.join(src_ds.depth_keys)} left out (no depth streams in the store)" \
                if src_ds.depth_keys else ""
            info = w.finish(success=ep.success,
                            notes=f"imported from {src_ds.path} (episode {ep.index}){left_out}",
                            tags=list(tags))
        except BaseException:
            w.discard()
            raise
        imported.append(info)
    if progress is not None:
        progress(total, total)
    return imported


def _spec(camera_spec_cls, wh: tuple[int, int]):
    return camera_spec_cls(width=int(wh[0]), height=int(wh[1]), queue_size=64)


def _wait_for_room(writer, limit: int = 8, timeout: float = 60.0) -> None:
    """Back-pressure for bulk writes: the store drops frames when its encoder queue is full."""
    deadline = time.monotonic() + timeout
    while True:
        depth = getattr(writer.stats, "queue_depth", {}) or {}
        if not depth or max(depth.values()) < limit:
            return
        if time.monotonic() > deadline:
            return
        time.sleep(0.002)
