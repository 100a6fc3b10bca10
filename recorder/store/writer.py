"""EpisodeWriter: what the record loop calls once per tick. Never blocks on encoding or disk."""

from __future__ import annotations

import fcntl
import logging
import os
import shutil
import threading
import time
from pathlib import Path
from typing import Any, Protocol, Self

import numpy as np

from recorder.errors import StoreError
from recorder.fsutil import write_json_atomic
from recorder.store.faults import MIN_FREE_BYTES, RESERVE_BYTES, disk_full_error, is_disk_full
from recorder.store.lowdim import FILENAME as LOWDIM_FILE
from recorder.store.lowdim import LowdimWriter
from recorder.store.types import CameraSpec, EpisodeInfo, LowdimSpec, WriterStats
from recorder.store.video import VideoEncoder

log = logging.getLogger(__name__)

META_FILE = "meta.json"
LOCK_FILE = ".writer.lock"
META_FORMAT = 1
#: per-tick values with these prefixes may be left undeclared: they are optional diagnostics (a policy
#: source plugged into a loop whose episode did not declare them); add_tick drops them, logs it once and
#: lists them in meta.json ``ignored_values``. Any other undeclared name is an error.
OPTIONAL_VALUE_PREFIXES = ("policy.", "extra.")


class EpisodeCommits(Protocol):
    """What an :class:`EpisodeWriter` may do to its episode's index row, and nothing more: the narrow
    interface the Store hands each writer (``Store.begin_episode``), so the writer never reaches into the
    Store's private methods."""

    def commit(self, episode_id: int, *, num_frames: int, success: bool | None, notes: str,
               dropped: dict[str, int], segments: list[dict], tags: list[str],
               frames_per_camera: dict[str, int]) -> EpisodeInfo:
        """Mark the row ``complete`` with these counts (the files are flushed and meta.json written)."""
        ...

    def discard(self, episode_id: int, note: str) -> EpisodeInfo:
        """Mark the row ``discarded``, adding ``note`` to its notes; the row as it is now."""
        ...

    def salvage(self, episode_id: int) -> EpisodeInfo:
        """Keep what the (failed) files hold, as crash recovery does; the caller holds the writer lock."""
        ...


def check_undeclared(folder: Path, names: set[str], declared) -> None:
    """StoreError naming the values of ``names`` that were not declared and are not optional diagnostics."""
    bad = sorted(n for n in names if not n.startswith(OPTIONAL_VALUE_PREFIXES))
    if bad:
        raise StoreError(
            f"episode {folder}: add_tick got values {bad} not declared in lowdim at begin_episode "
            f"(declared: {sorted(declared)}); declare them in begin_episode(lowdim=...) or leave them out"
        )


def try_lock(folder: Path) -> int | None:
    """Take the writer lock of an episode folder; None when a live writer (any process) holds it."""
    fd = os.open(folder / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    return fd


def release_lock(fd: int | None) -> None:
    if fd is not None:
        try:
            fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)


class FinishOnExit:
    """``with`` support of an episode writer: ``finish()`` on a clean exit, ``discard()`` on an exception
    (nothing when it was finished or discarded inside the block)."""

    _done: bool

    def __enter__(self) -> Self:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if self._done:
            return
        if exc_type is None:
            self.finish()
        else:
            self.discard()


class EpisodeWriter(FinishOnExit):
    """Writes one episode: a video per camera (encoder thread each) and the low-dim table.

    ``add_tick`` only queues frames (a full queue drops the frame, counts it and marks
    ``dropped.<cam>`` in the low-dim table) and buffers the values; ``finish`` flushes every file
    and then commits the index row (status ``complete``) in one transaction.
    Do not modify a frame array after passing it to ``add_tick``: it is encoded later, uncopied.
    """

    def __init__(
        self,
        index: EpisodeCommits,
        *,
        episode_id: int,
        uuid: str,
        path: Path,
        meta: dict[str, Any],
        fps: float,
        cameras: dict[str, CameraSpec],
        lowdim: dict[str, LowdimSpec],
        lock_fd: int,
        flush_s: float = 0.5,
        reserve=None,
    ) -> None:
        self._index = index
        self.episode_id = episode_id
        self.uuid = uuid
        self.path = Path(path)
        self.fps = fps
        self.cameras = dict(cameras)
        self.lowdim = dict(lowdim)
        self._meta = meta
        self._lock_fd = lock_fd
        self._reserve = reserve  # a recorder.store.faults.SpaceReserve, released when the disk fills
        self._disk_full = False
        self._lock = threading.Lock()
        self._segments: list[dict] = []
        self._ticks = 0
        self._dropped = {c: 0 for c in cameras}
        self._done = False
        self._ignored: set[str] = set()
        self._encoders: dict[str, VideoEncoder] = {}
        try:
            (self.path / "video").mkdir(exist_ok=True)
            for name, spec in self.cameras.items():
                enc = VideoEncoder(self.path / "video" / f"{name}.mp4", name, spec, fps)
                self._encoders[name] = enc
                enc.start()
            self._lowdim = LowdimWriter(
                self.path / LOWDIM_FILE, list(self.cameras), self.lowdim, flush_s=flush_s
            )
        except BaseException:
            for enc in self._encoders.values():
                enc.close()
            raise

    # -- the per-tick call -------------------------------------------------------------------
    def add_tick(
        self,
        t: float | None = None,
        frames: dict[str, Any] | None = None,
        timestamps: dict[str, float] | None = None,
        values: dict[str, np.ndarray] | None = None,
        stale: dict[str, bool] | None = None,
    ) -> int:
        """Record one tick; returns its index. Frames may be arrays or FramePackets (``.image``, ``.timestamp``).
        ``stale[cam]`` True: that camera's image is not of this tick (stored as ``stale.<cam>``)."""
        if self._done:
            raise StoreError(f"episode {self.uuid} is already finished; begin a new episode to record more")
        frames = frames or {}
        if not frames.keys() <= self._encoders.keys():
            raise ValueError(
                f"add_tick got frames for undeclared cameras {sorted(set(frames) - set(self._encoders))}"
            )
        values = values or {}
        undeclared = values.keys() - self.lowdim.keys()
        if undeclared:
            self._check_undeclared(undeclared)
        prepared = self._lowdim.prepare(values)  # raises before anything is queued
        if not self._disk_full and any(is_disk_full(e.error) for e in self._encoders.values()):
            self._on_disk_full()
        if self._disk_full:
            raise disk_full_error(self._root, then="the recording again")
        ts = dict(timestamps or {})
        tick = self._ticks
        dropped: dict[str, bool] = {}
        for name, enc in self._encoders.items():
            img = frames.get(name)
            if img is not None and hasattr(img, "image"):
                ts.setdefault(name, float(img.timestamp))
                img = img.image
            ok = img is not None and enc.submit(tick, img)
            if not ok:
                self._dropped[name] += 1
            dropped[name] = not ok
        try:
            self._lowdim.append(tick, time.monotonic() if t is None else float(t), ts, dropped, prepared, stale)
        except OSError as err:
            if not is_disk_full(err, self.path):
                raise
            self._on_disk_full()
            raise disk_full_error(self._root, then="the recording again") from None
        self._ticks += 1
        return tick

    @property
    def _root(self) -> Path:
        return self.path.parent.parent

    def _on_disk_full(self) -> None:
        """The disk filled: give the reserve back so that finish() can still write what it must."""
        self._disk_full = True
        if self._reserve is not None:
            self._reserve.release()

    def _check_undeclared(self, names: set[str]) -> None:
        check_undeclared(self.path, names, self.lowdim)
        new = names - self._ignored
        if new:
            self._ignored |= new
            log.warning(
                "episode %s: values %s were not declared at begin_episode and are not stored",
                self.uuid,
                sorted(new),
            )

    def mark_segment(self, kind: str, start_tick: int, end_tick: int | None = None, **extra: Any) -> None:
        """Label ticks [start_tick, end_tick] (e.g. "takeover", "estop"); stored in the episode meta."""
        seg = {
            "kind": str(kind),
            "start_tick": int(start_tick),
            "end_tick": int(self._ticks - 1 if end_tick is None else end_tick),
            **extra,
        }
        self._segments.append(seg)

    @property
    def num_ticks(self) -> int:
        return self._ticks

    @property
    def stats(self) -> WriterStats:
        return WriterStats(
            ticks=self._ticks,
            frames_written={n: e.frames_written for n, e in self._encoders.items()},
            frames_dropped=dict(self._dropped),
            queue_depth={n: e.queue.qsize() for n, e in self._encoders.items()},
        )

    # -- ending ------------------------------------------------------------------------------
    def _bytes_written(self) -> int:
        total = 0
        for p in self.path.rglob("*"):
            try:
                total += p.stat().st_size if p.is_file() else 0
            except OSError:
                pass
        return total

    def _close_files(self) -> list[str]:
        errors = []
        self._errors: list[BaseException] = []
        try:
            self._lowdim.close(fsync=True)
        except Exception as err:  # noqa: BLE001
            errors.append(f"{self.path / LOWDIM_FILE}: {err}")
            self._errors.append(err)
        for _name, enc in self._encoders.items():
            enc.close()
            if enc.error is not None:
                errors.append(f"{enc.path}: {enc.error}")
                self._errors.append(enc.error)
                continue
            # no frame ever reached the encoder (e.g. stopped before the first tick): nothing to sync
            if not enc.path.exists():
                continue
            with open(enc.path, "rb") as f:
                os.fsync(f.fileno())
        return errors

    def finish(
        self, success: bool | None = None, notes: str = "", tags: list[str] | None = None
    ) -> EpisodeInfo:
        """Flush every file, then mark the episode complete in one transaction."""
        with self._lock:
            if self._done:
                raise StoreError(f"episode {self.uuid} was already finished or discarded")
            self._done = True
            try:
                if self._disk_full:
                    self._on_disk_full()
                errors = self._close_files()
                full = self._disk_full or any(is_disk_full(e, self.path) for e in self._errors)
                if errors or full:
                    # keep what is usable: salvage as after a crash
                    if full:
                        self._on_disk_full()
                    else:
                        log.error("episode %s: %s", self.uuid, "; ".join(errors))
                    info = self._index.salvage(self.episode_id)
                    kept = (f"episode {info.id} kept as {info.status!r} with {info.num_frames} ticks"
                            if info.status != "discarded" else f"episode {info.id} had nothing usable")
                    if full:
                        need = self._bytes_written() + RESERVE_BYTES + MIN_FREE_BYTES  # this episode again, and room to end it
                        raise disk_full_error(self._root, need, f"the recording again ({kept})")
                    raise StoreError(
                        f"episode {self.uuid} could not be written completely ({errors[0]}); {kept}"
                    )
                if self._ticks == 0:
                    return self._index.discard(self.episode_id, note="no ticks recorded")
                tags = sorted(set(self._meta.get("tags") or []) | set(tags or []))
                self._meta.update(
                    status="complete",
                    num_frames=self._ticks,
                    segments=self._segments,
                    success=success,
                    notes=notes,
                    dropped=self._dropped,
                    tags=tags,
                    duration_s=self._ticks / self.fps,
                )
                if self._ignored:
                    self._meta["ignored_values"] = sorted(self._ignored)
                write_json_atomic(self.path / META_FILE, self._meta)
                frames_per_cam = {n: e.frames_written for n, e in self._encoders.items()}
                return self._index.commit(
                    self.episode_id,
                    num_frames=self._ticks,
                    success=success,
                    notes=notes,
                    dropped=dict(self._dropped),
                    segments=list(self._segments),
                    tags=tags,
                    frames_per_camera=frames_per_cam,
                )
            finally:
                release_lock(self._lock_fd)
                self._lock_fd = None

    def discard(self) -> None:
        """Stop, delete the episode's files and mark its row ``discarded``."""
        with self._lock:
            if self._done:
                return
            self._done = True
            try:
                self._close_files()
            finally:
                release_lock(self._lock_fd)
                self._lock_fd = None
            shutil.rmtree(self.path, ignore_errors=True)
            self._index.discard(self.episode_id, note="discarded by the recorder")

    def __del__(self) -> None:
        if not getattr(self, "_done", True):
            log.warning(
                "episode %s was neither finished nor discarded; it will be recovered on next open",
                getattr(self, "uuid", "?"),
            )
