"""Qt adapters of the Datasets tab that do I/O off the GUI thread.

- :class:`FrameDecodeWorker`: opens one episode and decodes the frames of the tick the viewer wants
  (requests are coalesced: only the newest tick is decoded, so seeking never queues up work).
- :class:`ThumbnailWorker`: one small frame per episode for the table.
- :class:`StoreJob`: import, export, merge... in a QThread with its own Store (SQLite is per thread).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PyQt6.QtCore import QObject, Qt, QThread, pyqtSignal, pyqtSlot

from recorder.devices.base import JOINT_NAMES
from recorder.errors import KnownError, error_text
from studio.qt.threads import WorkerThread  # noqa: F401 - the viewer and the tab take it from here too
from widgets.episode_viewer import EpisodeViewData
from widgets.timeline import TimelineSegment

log = logging.getLogger(__name__)

DEFAULT_JOINTS = JOINT_NAMES  # the SO-101 names, when an episode names none


def joint_names(info, dim: int) -> list[str] | None:
    """Joint names from the episode's rig snapshot, else the SO-101 names when there are six."""

    def find(d):
        if isinstance(d, dict):
            names = d.get("joint_names")
            if isinstance(names, list) and len(names) == dim:
                return [str(n) for n in names]
            for v in d.values():
                got = find(v)
                if got:
                    return got
        return None

    return find(info.rig or {}) or (DEFAULT_JOINTS if dim == len(DEFAULT_JOINTS) else None)


def view_data(info, lowdim: dict[str, np.ndarray]) -> EpisodeViewData:
    """Plain data for the viewer from an EpisodeInfo and its low-dim table."""
    drops: set[int] = set()
    for cam in info.cameras:
        d = lowdim.get(f"dropped.{cam}")
        if d is not None:
            drops.update(int(i) for i in np.flatnonzero(np.asarray(d).astype(bool)))
    segments = []
    for seg in info.segments or ():
        try:
            start = int(seg.get("start_tick", seg.get("start", 0)))
            end = int(seg.get("end_tick", seg.get("end", info.num_frames - 1)))
            segments.append(TimelineSegment(str(seg.get("kind", "segment")), start, end))
        except (TypeError, ValueError, AttributeError):
            continue
    series = {k: np.asarray(lowdim[k]) for k in ("observation.state", "action") if k in lowdim}
    dim = next((v.reshape(len(v), -1).shape[1] for v in series.values()), 0)
    status = "" if info.status == "complete" else f"  [{info.status}]"
    title = (f"#{info.id}  {info.dataset}  —  {info.task}  ({info.num_frames} frames, {info.fps:g} fps, "
             f"{info.source}){status}")
    return EpisodeViewData(num_frames=int(info.num_frames), fps=float(info.fps), cameras=list(info.cameras),
                           series=series, names=joint_names(info, dim), drops=sorted(drops),
                           segments=segments, title=title)


class FrameDecodeWorker(QObject):
    """Decodes frames of one episode in its own thread (move it to a QThread).

    ``reader_factory(info)`` opens the episode (default: ``EpisodeReader``); ``describe(info, lowdim)`` makes
    what ``episode_loaded`` carries (default: :func:`view_data`, the episode viewer's plain data; the rollout
    review adds its overlays), both called in the worker thread.

    Signals:
        episode_loaded(int, object): episode id, ``describe``'s result (EpisodeViewData by default).
        frames_decoded(int, int, object): episode id, tick, {camera: HxWx3 uint8}.
        failed(str): a one-line error.
    """

    episode_loaded = pyqtSignal(int, object)
    frames_decoded = pyqtSignal(int, int, object)
    failed = pyqtSignal(str)
    _wake = pyqtSignal()

    def __init__(self, reader_factory: Callable | None = None, describe: Callable = view_data,
                 load: Callable | None = None) -> None:
        super().__init__()
        self._describe = describe
        self.load = load  # episode id -> the full EpisodeInfo, called in this thread (open_episode may get a row)
        self._lock = threading.Lock()
        self._pending_info = False  # False: no change; None: close; an EpisodeInfo: open it
        self._wanted: int | None = None
        self._reader = None
        self._episode_id = -1
        self._factory = reader_factory
        self.decode_count = 0
        self._wake.connect(self._process, Qt.ConnectionType.QueuedConnection)

    # -- called from the GUI thread
    def open_episode(self, info) -> None:
        with self._lock:
            self._pending_info = info
            self._wanted = None
        self._wake.emit()

    def request(self, tick: int) -> None:
        with self._lock:
            self._wanted = int(tick)
        self._wake.emit()

    def close_episode(self) -> None:
        self.open_episode(None)

    # -- runs in the worker thread
    def _make_reader(self, info):
        if self._factory is not None:
            return self._factory(info)
        from recorder.store import EpisodeReader

        return EpisodeReader(info)

    @pyqtSlot()  # a slot runs in the worker's thread; a plain method would run on the GUI thread
    def _process(self) -> None:
        while True:
            with self._lock:
                info, self._pending_info = self._pending_info, False
                tick, self._wanted = self._wanted, None
            if info is not False:
                self._close_reader()
                if info is not None:
                    try:
                        if self.load is not None:
                            info = self.load(info.id)
                        self._reader = self._make_reader(info)
                        self._episode_id = info.id
                        self.episode_loaded.emit(info.id, self._describe(info, self._reader.lowdim()))
                    except Exception as err:  # noqa: BLE001 - shown to the user, a bug logged with traceback
                        self.failed.emit(error_text(err, f"episode {info.id}"))
            if tick is None:
                return
            if self._reader is None:
                continue
            try:
                frames = {cam: self._reader.frame(cam, tick) for cam in self._reader.cameras}
                self.decode_count += 1
            except KnownError as err:
                self.failed.emit(str(err))
                continue
            except IndexError:
                continue
            self.frames_decoded.emit(self._episode_id, tick, frames)

    def _close_reader(self) -> None:
        if self._reader is not None:
            self._reader.close()
        self._reader = None
        self._episode_id = -1

    def shutdown(self) -> None:
        """Call in the worker thread (or after it stopped)."""
        self._close_reader()


class ThumbnailWorker(QObject):
    """Decodes one small frame (middle of the first camera) per episode.

    Signals:
        thumbnail_ready(int, object): episode id, small HxWx3 uint8 array.
    """

    thumbnail_ready = pyqtSignal(int, object)
    _wake = pyqtSignal()

    #: episodes taken from the queue at a time (their full records read in one go with ``load_many``)
    BATCH = 8

    def __init__(self, width: int = 96, load=None, load_many=None, pause_s: float = 0.0) -> None:
        super().__init__()
        self.width = width
        self.load = load  # episode id -> EpisodeInfo, called in this thread for requests that are plain rows
        self.load_many = load_many  # [episode id] -> {id: EpisodeInfo}: the same, for a batch (preferred)
        # after each thumbnail this thread sleeps this long: a point where the GUI thread gets the GIL at
        # once instead of waiting up to the interpreter's switch interval (5 ms) each time it needs it
        self.pause_s = pause_s
        self._lock = threading.Lock()
        self._queue: list = []
        self._wake.connect(self._process, Qt.ConnectionType.QueuedConnection)

    def request(self, infos: list) -> None:
        """Replace the queue with these episodes (newest request wins)."""
        with self._lock:
            self._queue = list(infos)
        self._wake.emit()

    @pyqtSlot()  # a slot runs in the worker's thread; a plain method would run on the GUI thread
    def _process(self) -> None:
        from recorder.store import EpisodeReader

        while True:
            with self._lock:  # a few at a time; a newer request replaces what is left of the queue
                batch, self._queue = self._queue[: self.BATCH], self._queue[self.BATCH :]
            if not batch:
                return
            full: dict = {}
            if self.load_many is not None:
                try:
                    full = self.load_many([i.id for i in batch])
                except Exception as err:  # noqa: BLE001 - a thumbnail is optional
                    log.warning("no thumbnails for episodes %s: %s", [i.id for i in batch], err)
                    continue
            for info in batch:
                self._one(full.get(info.id, info) if self.load_many is not None else info, EpisodeReader)
                if self.pause_s:
                    time.sleep(self.pause_s)

    def _one(self, info, reader) -> None:
        try:
            if self.load is not None and self.load_many is None:
                info = self.load(info.id)
            if not info.cameras or not info.num_frames:
                return
            with reader(info) as r:
                img = r.frame(next(iter(info.cameras)), info.num_frames // 2)
        except Exception as err:  # noqa: BLE001 - a thumbnail is optional
            log.warning("no thumbnail for episode %s: %s", info.id, err)
            return
        step = max(1, img.shape[1] // self.width)
        self.thumbnail_ready.emit(info.id, np.ascontiguousarray(img[::step, ::step]))


class StoreJob(QThread):
    """Runs ``fn(store, progress) -> str`` with its own Store in a thread.

    Signals:
        progressed(int, int): done, total.
        succeeded(str): a one-line summary.
        failed(str): a one-line error.
    """

    progressed = pyqtSignal(int, int)
    succeeded = pyqtSignal(str)
    failed = pyqtSignal(str)

    def __init__(self, home: Path, fn: Callable, title: str, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.home = Path(home)
        self.fn = fn
        self.title = title

    def run(self) -> None:
        from recorder.store import Store

        try:
            store = Store.open(self.home, recover=False)
            try:
                msg = self.fn(store, self.progressed.emit)
            finally:
                store.close()
        except Exception as err:  # noqa: BLE001 - shown to the user, a bug logged with traceback
            self.failed.emit(error_text(err, f"{self.title} failed"))
            return
        self.succeeded.emit(str(msg))
