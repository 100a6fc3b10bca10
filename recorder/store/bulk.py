"""Bulk import: many whole episodes into a store, a batch of them per index transaction.

``Store.bulk_import(batch_size=N)`` is for writing stored data, not a live rig: a LeRobot or DROID-sized
dataset, a copy of another store, a synthetic benchmark store. Compared with ``begin_episode`` (made for a
record loop: encoder threads behind bounded queues, every file synced and one transaction per episode) an
episode here is encoded in the caller's thread and never drops a frame, and the cost of making it durable is
paid once per batch:

1. every episode of the batch is written into a staging folder, ``<store>/.importing/<session>/<uuid>/``,
   which nothing else reads (``store check``, an index rebuild and the GUI only look at ``episodes/``);
2. when the batch is full (or the import ends) the file system is synced once (``syncfs``), the batch's
   uuids go into ``journal.json``, the folders are renamed into ``episodes/`` and all their index rows
   (episodes, streams, tags, the datasets' versions) are inserted in ONE transaction: the commit point;
3. the journal is removed.

A crash (or an exception, or a full disk) mid-batch loses that batch and only that batch: the next
``Store.open`` removes the staging folder, and if the crash came between the renames and the commit, the
journal names the folders without an index row to remove. Earlier batches are committed episodes like any
other. ``store check`` reports an interrupted import as a note and never as orphan folders.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import logging
import os
import shutil
import sys
import time
import uuid as uuidlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import sqlalchemy as sa

from recorder.errors import StoreError
from recorder.fsutil import write_json_atomic
from recorder.store import models as m
from recorder.store.faults import disk_full_error, is_disk_full
from recorder.store.lowdim import FILENAME as LOWDIM_FILE
from recorder.store.lowdim import LowdimWriter
from recorder.store.types import CameraSpec, EpisodeInfo, LowdimSpec
from recorder.store.video import VideoFile
from recorder.store.writer import (
    META_FILE,
    OPTIONAL_VALUE_PREFIXES,
    FinishOnExit,
    check_undeclared,
    release_lock,
    try_lock,
)

if TYPE_CHECKING:
    from recorder.store.store import Store

log = logging.getLogger(__name__)

IMPORTING_DIR = ".importing"
JOURNAL_FILE = "journal.json"
DEFAULT_BATCH = 64


# ------------------------------------------------------------------------------------------- durability
def _syncfs(folder: Path) -> bool:
    """Sync the file system holding ``folder`` (one call for every file of a batch); False where unavailable."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        fd = os.open(folder, os.O_RDONLY)
    except (OSError, AttributeError):
        return False
    try:
        if libc.syncfs(fd) != 0:
            err = ctypes.get_errno()
            raise OSError(err, os.strerror(err), str(folder))
        return True
    finally:
        os.close(fd)


def _fsync_tree(folder: Path) -> None:
    """fsync every file and folder under ``folder`` (where ``syncfs`` is not available)."""
    for dirpath, _dirs, files in os.walk(folder):
        for name in files:
            with open(os.path.join(dirpath, name), "rb") as f:
                os.fsync(f.fileno())
        _fsync_dir(Path(dirpath))


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


# ------------------------------------------------------------------------------------------- one episode
class BulkEpisodeWriter(FinishOnExit):
    """One episode of a :class:`BulkImport`: ``add_tick`` per tick (frames are encoded at once, in this thread;
    none is ever dropped), then ``finish``, which hands the episode to the batch (its index row is written
    when the batch commits). Same files and ``meta.json`` as :class:`~recorder.store.writer.EpisodeWriter`."""

    def __init__(self, batch: BulkImport, *, folder: Path, uuid: str, meta: dict, dataset: str, task: str,
                 fps: float, rig: dict, source: str, cameras: dict[str, CameraSpec],
                 lowdim: dict[str, LowdimSpec], tags: tuple[str, ...], start: datetime) -> None:
        self._batch = batch
        self.path = folder
        self.uuid = uuid
        self._meta = meta
        self.dataset, self.task, self.fps, self.rig, self.source = dataset, task, fps, rig, source
        self.cameras, self.lowdim, self.tags, self.start = cameras, lowdim, tags, start
        self._ticks = 0
        self._ignored: set[str] = set()
        self._done = False
        self._videos: dict[str, VideoFile] = {}
        self._lowdim: LowdimWriter | None = None
        try:
            (folder / "video").mkdir(parents=True)
            for name, spec in cameras.items():
                self._videos[name] = VideoFile(folder / "video" / f"{name}.mp4", name, spec, fps)
            self._lowdim = LowdimWriter(folder / LOWDIM_FILE, list(cameras), lowdim, flush_s=float("inf"))
        except BaseException as err:
            self._abandon()
            self._raise_disk_full(err)
            raise

    @property
    def num_ticks(self) -> int:
        return self._ticks

    def add_tick(self, t: float | None = None, frames: dict[str, Any] | None = None,
                 timestamps: dict[str, float] | None = None, values: dict[str, np.ndarray] | None = None,
                 stale: dict[str, bool] | None = None) -> int:
        """Write one tick (arguments as ``EpisodeWriter.add_tick``); every declared camera needs a frame: an
        RGB array, a FramePacket, or an ``av.VideoFrame`` (e.g. decoded from the source dataset's video: encoded
        without a round trip through RGB)."""
        if self._done:
            raise StoreError(f"episode {self.uuid} is already finished; begin a new episode to write more")
        frames = frames or {}
        if frames.keys() != self._videos.keys():
            raise ValueError(f"add_tick needs one frame per camera {sorted(self._videos)}, got {sorted(frames)}")
        values = values or {}
        undeclared = values.keys() - self.lowdim.keys()
        if undeclared:
            check_undeclared(self.path, set(undeclared), self.lowdim)
            self._ignored |= {n for n in undeclared if n.startswith(OPTIONAL_VALUE_PREFIXES)}
        prepared = self._lowdim.prepare(values)
        ts = dict(timestamps or {})
        tick = self._ticks
        try:
            for name, video in self._videos.items():
                img = frames[name]
                if hasattr(img, "image"):
                    ts.setdefault(name, float(img.timestamp))
                    img = img.image
                video.encode(tick, img)
            self._lowdim.append(tick, time.monotonic() if t is None else float(t), ts, {}, prepared, stale)
        except BaseException as err:
            self._raise_disk_full(err)
            raise
        self._ticks += 1
        return tick

    def finish(self, success: bool | None = None, notes: str = "", tags: Iterable[str] | None = None) -> None:
        """Close the episode's files; it is committed with its batch (``BulkImport.commit``). An episode
        without ticks is dropped."""
        if self._done:
            raise StoreError(f"episode {self.uuid} was already finished or discarded")
        self._done = True
        try:
            for video in self._videos.values():
                video.flush()
                video.close()
            self._lowdim.close(fsync=False)  # the batch syncs once for all its files
            self._videos, self._lowdim = {}, None  # an encoder's buffers are freed now, not with the batch
            if self._ticks == 0:
                self._abandon()
                return
            tags = tuple(sorted(set(self.tags) | set(tags or ())))
            self._meta.update(status="complete", num_frames=self._ticks, segments=[], success=success, notes=notes,
                              dropped={c: 0 for c in self.cameras}, tags=list(tags),
                              duration_s=self._ticks / self.fps)
            if self._ignored:
                self._meta["ignored_values"] = sorted(self._ignored)
            (self.path / META_FILE).write_text(json.dumps(self._meta, indent=1, default=str))
        except BaseException as err:
            self._abandon()
            self._raise_disk_full(err)
            raise
        self._batch._finished(self, success, notes, tags)

    def discard(self) -> None:
        """Drop this episode (its staged files go; nothing reaches the index)."""
        if not self._done:
            self._done = True
            self._abandon()

    def _abandon(self) -> None:
        for video in self._videos.values():
            with contextlib.suppress(BaseException):
                video.close()
        if self._lowdim is not None:
            with contextlib.suppress(BaseException):
                self._lowdim._file.close()
        shutil.rmtree(self.path, ignore_errors=True)
        self._batch._open = None

    def _raise_disk_full(self, err: BaseException) -> None:
        if is_disk_full(err, self.path):
            raise disk_full_error(self._batch.store.root, then=self._batch.then) from None


@dataclass
class _Pending:
    writer: BulkEpisodeWriter
    success: bool | None
    notes: str
    tags: tuple[str, ...]


# ------------------------------------------------------------------------------------------- the batch
class BulkImport:
    """Writes whole episodes ``batch_size`` at a time (see the module doc); use ``Store.bulk_import``.

    ``begin_episode`` (same arguments as ``Store.begin_episode`` less the live-recording ones, plus
    ``start_time``) returns a :class:`BulkEpisodeWriter`; one episode at a time. Leaving the ``with`` block
    commits the last batch; an exception rolls back the batch in progress (earlier batches stay).
    ``on_commit(infos)`` is called after each committed batch with its new episodes."""

    def __init__(self, store: Store, batch_size: int = DEFAULT_BATCH,
                 on_commit: Callable[[list[EpisodeInfo]], None] | None = None,
                 then: str = "the import again") -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, not {batch_size!r}")
        self.store = store
        self.batch_size = int(batch_size)
        self.on_commit = on_commit
        self.then = then + " (episodes of batches already committed are kept)"
        self.committed = 0
        self._pending: list[_Pending] = []
        self._open: BulkEpisodeWriter | None = None
        self._features: dict[str, dict | None] = {}
        self._closed = False
        self.staging = store.root / IMPORTING_DIR / uuidlib.uuid4().hex
        self.staging.mkdir(parents=True)
        self._lock_fd = try_lock(self.staging)  # a live import: recovery and checks leave it alone

    # -- episodes ----------------------------------------------------------------------------
    def begin_episode(self, *, dataset: str, task: str = "", fps: float, rig: dict | None = None,
                      source: str = "teleop", cameras: dict[str, CameraSpec | dict] | None = None,
                      lowdim: dict[str, Any] | None = None, tags: Iterable[str] = (),
                      start_time: datetime | None = None) -> BulkEpisodeWriter:
        from recorder.store.store import _check_features, episode_meta, episode_streams, to_json

        if self._closed:
            raise StoreError("this bulk import is closed; start a new one with Store.bulk_import()")
        if self._open is not None:
            raise StoreError(f"episode {self._open.uuid} is still open; finish or discard it first")
        dataset = str(dataset).strip()
        if not dataset:
            raise ValueError("a dataset needs a non-empty name")
        cams, low, features = episode_streams(fps, source, cameras, lowdim)
        have = self._dataset_features(dataset)
        if have is not None:
            _check_features(dataset, have, features)
        else:
            self._features[dataset] = features
        rig = to_json(rig or {})
        uuid = str(uuidlib.uuid4())
        start = start_time or m.utcnow()
        if start.tzinfo is None:
            start = start.replace(tzinfo=UTC)
        tags = tuple(sorted(set(tags)))
        meta = episode_meta(uuid=uuid, dataset=dataset, task=task, fps=fps, start=start, source=source, rig=rig,
                            cams=cams, low=low, checkpoint_id=None, checkpoint_path=None, tags=tags)
        self._open = BulkEpisodeWriter(self, folder=self.staging / uuid, uuid=uuid, meta=meta, dataset=dataset,
                                       task=str(task), fps=float(fps), rig=rig, source=source, cameras=cams,
                                       lowdim=low, tags=tags, start=start)
        return self._open

    def _dataset_features(self, name: str) -> dict | None:
        if name not in self._features:
            with self.store._read() as s:
                self._features[name] = s.scalar(sa.select(m.Dataset.features).where(m.Dataset.name == name))
        return self._features[name]

    def _finished(self, writer: BulkEpisodeWriter, success, notes, tags) -> None:
        self._open = None
        self._pending.append(_Pending(writer, success, str(notes), tags))
        if len(self._pending) >= self.batch_size:
            self.commit()

    @property
    def pending(self) -> int:
        """Finished episodes waiting for the next commit."""
        return len(self._pending)

    # -- committing --------------------------------------------------------------------------
    def commit(self) -> list[EpisodeInfo]:
        """Make the finished episodes durable and add them to the index in one transaction; their infos."""
        if not self._pending:
            return []
        batch, self._pending = self._pending, []
        root = self.store.root
        episodes_dir = self.store.root / "episodes"
        journal = self.staging / JOURNAL_FILE
        moved: list[Path] = []
        try:
            if not _syncfs(self.staging):
                _fsync_tree(self.staging)
            write_json_atomic(journal, {"uuids": [p.writer.uuid for p in batch]})
            for p in batch:
                dest = episodes_dir / p.writer.uuid
                os.replace(p.writer.path, dest)
                moved.append(dest)
            _fsync_dir(episodes_dir)
            infos = self._insert_rows(batch)
        except BaseException as err:
            for folder in moved:  # not in the index: they go with the rest of the batch
                shutil.rmtree(folder, ignore_errors=True)
            for p in batch:
                shutil.rmtree(p.writer.path, ignore_errors=True)
            journal.unlink(missing_ok=True)
            if isinstance(err, OSError) and is_disk_full(err, root):
                raise disk_full_error(root, then=self.then) from None
            raise
        journal.unlink()
        self.committed += len(infos)
        if self.on_commit is not None:
            self.on_commit(infos)
        return infos

    def _insert_rows(self, batch: list[_Pending]) -> list[EpisodeInfo]:
        from recorder.store.store import stream_values

        now = m.utcnow()
        with self.store._write() as s:
            ds_ids: dict[str, int] = {}
            for name in dict.fromkeys(p.writer.dataset for p in batch):
                ds = s.scalar(sa.select(m.Dataset).where(m.Dataset.name == name))
                if ds is None:
                    ds = m.Dataset(name=name, features=self._features.get(name), version=0)
                    s.add(ds)
                elif ds.features is None:
                    ds.features = self._features.get(name)
                ds.version += 1
                s.flush()
                ds_ids[name] = ds.id
            rows = []
            for p in batch:
                w = p.writer
                rows.append(dict(uuid=w.uuid, dataset_id=ds_ids[w.dataset], task=w.task, rig=w.rig, fps=w.fps,
                                 start_time=w.start, duration_s=w.num_ticks / w.fps, num_frames=w.num_ticks,
                                 status="complete", source=w.source, success=p.success, notes=p.notes,
                                 dropped={c: 0 for c in w.cameras}, segments=[], checkpoint_id=None,
                                 updated_at=now))
            ids = list(s.scalars(sa.insert(m.Episode).returning(m.Episode.id, sort_by_parameter_order=True), rows))
            streams, tags = [], []
            for eid, p in zip(ids, batch, strict=True):
                w = p.writer
                streams += [dict(row, episode_id=eid) for row in stream_values(w.cameras, w.lowdim, w.num_ticks)]
                tags += [dict(episode_id=eid, tag=t) for t in p.tags]
            s.execute(sa.insert(m.Stream), streams)
            if tags:
                s.execute(sa.insert(m.EpisodeTag), tags)
        return [
            EpisodeInfo(id=eid, uuid=p.writer.uuid, dataset=p.writer.dataset, task=p.writer.task, fps=p.writer.fps,
                        start_time=p.writer.start, duration_s=p.writer.num_ticks / p.writer.fps,
                        num_frames=p.writer.num_ticks, status="complete", source=p.writer.source, success=p.success,
                        tags=p.tags, notes=p.notes, dropped={c: 0 for c in p.writer.cameras}, checkpoint_id=None,
                        path=self.store.episode_dir(p.writer.uuid), cameras=dict(p.writer.cameras),
                        lowdim=dict(p.writer.lowdim), segments=(), rig=dict(p.writer.rig))
            for eid, p in zip(ids, batch, strict=True)
        ]

    # -- ending ------------------------------------------------------------------------------
    def close(self) -> list[EpisodeInfo]:
        """Commit what is finished and remove the staging folder."""
        if self._closed:
            return []
        try:
            if self._open is not None:
                self._open.discard()
            return self.commit()
        finally:
            self._end()

    def rollback(self) -> None:
        """Drop the episodes not committed yet (the open one too); committed batches stay."""
        if self._closed:
            return
        if self._open is not None:
            self._open.discard()
        self._pending = []
        self._end()

    def _end(self) -> None:
        self._closed = True
        release_lock(self._lock_fd)
        self._lock_fd = None
        shutil.rmtree(self.staging, ignore_errors=True)
        with contextlib.suppress(OSError):
            self.staging.parent.rmdir()  # only when no other import is staging there

    def __enter__(self) -> BulkImport:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.rollback()


# ------------------------------------------------------------------------------------------- after a crash
@dataclass
class InterruptedImport:
    """A staging folder of ``.importing/``: ``live`` when its import still runs."""

    folder: Path
    live: bool
    staged: int  # episode folders still in staging (never committed)
    journal: list[str]  # uuids being moved into episodes/ when it stopped (commit point not known yet)


def staged_imports(root: Path) -> list[InterruptedImport]:
    """The bulk imports that have (or had, before a crash) a staging folder in the store at ``root``."""
    base = Path(root) / IMPORTING_DIR
    if not base.is_dir():
        return []
    out = []
    for folder in sorted(base.iterdir()):
        if not folder.is_dir():
            continue
        try:
            fd = try_lock(folder)
        except OSError:  # a read-only store: no import can be writing into it
            fd = -1
        live = fd is None
        if fd is not None and fd >= 0:
            release_lock(fd)
        try:
            uuids = list(json.loads((folder / JOURNAL_FILE).read_text())["uuids"])
        except (OSError, ValueError, KeyError, TypeError):
            uuids = []
        staged = sum(1 for p in folder.iterdir() if p.is_dir())
        out.append(InterruptedImport(folder, live, staged, uuids))
    return out


def roll_back_interrupted(store: Store) -> int:
    """Remove what crashed bulk imports left (their uncommitted batch); how many episodes were dropped."""
    from recorder.store.store import remove_episode_folder

    dropped = 0
    for imp in staged_imports(store.root):
        if imp.live:
            continue
        try:
            fd = try_lock(imp.folder)
        except OSError as err:  # a read-only store: leave it as it is (store check notes it)
            log.warning("cannot remove what an interrupted import left in %s (%s)", imp.folder, err)
            continue
        if fd is None:
            continue
        try:
            uncommitted = []
            if imp.journal:
                with store._read() as s:
                    have = set(s.scalars(sa.select(m.Episode.uuid).where(m.Episode.uuid.in_(imp.journal))))
                uncommitted = [u for u in imp.journal if u not in have and store.episode_dir(u).is_dir()]
            for u in uncommitted:
                remove_episode_folder(store.episode_dir(u))
            dropped += imp.staged + len(uncommitted)
        finally:
            release_lock(fd)
        shutil.rmtree(imp.folder, ignore_errors=True)
        log.warning("an interrupted bulk import's last batch was not committed: %d episodes dropped (%s)",
                    imp.staged + len(uncommitted), imp.folder)
    with contextlib.suppress(OSError):
        (store.root / IMPORTING_DIR).rmdir()
    return dropped
