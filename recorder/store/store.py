"""The episode store: ``index.sqlite`` (SQLAlchemy, WAL, foreign keys, Alembic) + one folder per episode."""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import shutil
import sqlite3
import threading
import urllib.parse
import uuid as uuidlib
from collections.abc import Iterable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import sqlalchemy as sa
from sqlalchemy import event, select
from sqlalchemy.orm import Session, selectinload, sessionmaker

from recorder.errors import DatasetError, SchemaTooNewError, StoreError
from recorder.fsutil import write_json_atomic
from recorder.paths import resolve_home
from recorder.stats import feature_stats
from recorder.store import models as m
from recorder.store.backups import BACKUPS_DIR, Backup
from recorder.store.bulk import DEFAULT_BATCH, BulkImport, roll_back_interrupted
from recorder.store.faults import (
    IndexCorruptError,
    SpaceReserve,
    disk_full_error,
    is_disk_full,
    known_sqlite_error,
)
from recorder.store.lowdim import FILENAME as LOWDIM_FILE
from recorder.store.lowdim import is_bookkeeping
from recorder.store.query import (
    EpisodeQuery,
    _as_list,
    count_statement,
    like_escaped,
    page_statement,
    query_from,
)
from recorder.store.reader import EpisodeReader
from recorder.store.types import (
    DELETING,
    SOURCES,
    STATUSES,
    CameraSpec,
    CheckpointInfo,
    DatasetInfo,
    EpisodeInfo,
    EpisodeRow,
    LowdimSpec,
    RunInfo,
)
from recorder.store.writer import (
    META_FILE,
    META_FORMAT,
    EpisodeWriter,
    release_lock,
    try_lock,
)

log = logging.getLogger(__name__)

INDEX_FILE = "index.sqlite"
EPISODES_DIR = "episodes"
RUNS_DIR = "runs"
STORE_LOCK = ".store.lock"
KNOWN_REVISIONS = ("0001", "0002", "0003")
_STORE_ENTRIES = {
    INDEX_FILE, EPISODES_DIR, RUNS_DIR, STORE_LOCK, INDEX_FILE + "-wal", INDEX_FILE + "-shm", BACKUPS_DIR
}
_UNSET: Any = object()


def _json_once(cache: dict[str, Any], text: str | None) -> Any:
    """``json.loads(text)`` through ``cache`` (the caller copies what it keeps); None for NULL."""
    if text is None:
        return None
    try:
        return cache[text]
    except KeyError:
        value = cache[text] = json.loads(text)
        return value


def _fix_hint(root: Path) -> str:
    return f"vla-studio --home {root} store check --repair"


@contextlib.contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


def make_engine(index: Path, read_only: bool = False) -> sa.Engine:
    if read_only:
        url = f"sqlite:///{_ro_uri(index)}&uri=true"
    else:
        url = f"sqlite:///{index}"
    engine = sa.create_engine(url, connect_args={"timeout": 30, "check_same_thread": False})

    @event.listens_for(engine, "connect")
    def _pragmas(dbapi_conn, _rec) -> None:
        cur = dbapi_conn.cursor()
        if not read_only:
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute("PRAGMA busy_timeout=30000")
        cur.close()

    return engine


def _ro_uri(index: Path) -> str:
    return "file:" + urllib.parse.quote(str(index)) + "?mode=ro"


def probe_index(index: Path, integrity: bool = True) -> tuple[int, str | None, set[str]]:
    """(user_version, alembic revision, table names), read-only.

    IndexCorruptError when it is not a SQLite index (or, with ``integrity``, fails ``PRAGMA quick_check``, or is
    an empty file beside episode folders); a full disk, a lock or an I/O error is another StoreError, never
    "corrupt". The quick check reads the whole file (0.7 s for a 100k-episode index): ``store check`` runs it,
    ``Store.open`` does not (a damaged page met later is the same IndexCorruptError, through ``sql_errors``)."""
    if not index.exists():
        return 0, None, set()
    root = index.parent
    if index.is_file() and index.stat().st_size == 0 and _has_store_data(root):
        raise IndexCorruptError(
            f"{index} is empty (0 bytes) but {root} holds episodes or runs: the index was lost, this is not a "
            f"new store; run '{_fix_hint(root)}' to move it aside and rebuild it from the episode and run folders"
        )
    try:
        con = sqlite3.connect(_ro_uri(index), uri=True, timeout=30)
        try:
            uv = int(con.execute("PRAGMA user_version").fetchone()[0] or 0)
            if integrity:
                ok = con.execute("PRAGMA quick_check").fetchone()[0]
                if ok != "ok":
                    raise sqlite3.DatabaseError(f"integrity check failed: {ok}")
            tables = {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type='table'")}
            rev = None
            if "alembic_version" in tables:
                row = con.execute("SELECT version_num FROM alembic_version").fetchone()
                rev = row[0] if row else None
        finally:
            con.close()
    except sqlite3.DatabaseError as err:
        known = known_sqlite_error(err, index, then=f"'vla-studio --home {root} store check' again")
        if known is not None and not isinstance(known, IndexCorruptError):
            raise known from None
        raise IndexCorruptError(
            f"{index} is not a readable SQLite index ({err}); run "
            f"'{_fix_hint(root)}' to move it aside and rebuild it from the episode folders"
        ) from None
    return uv, rev, tables


def _has_runs(root: Path) -> bool:
    """True when ``runs/`` holds a fine-tune run folder (one with its config.json)."""
    try:
        return any((p / "config.json").is_file() for p in (root / RUNS_DIR).iterdir())
    except OSError:
        return False


def _has_store_data(root: Path) -> bool:
    """True when episode or run folders exist under ``root`` (an index there cannot be a new one)."""
    try:
        if any(p.is_dir() for p in (root / EPISODES_DIR).iterdir()):
            return True
    except OSError:
        pass
    return _has_runs(root)


def sql_errors(root: Path, then: str = "retry"):
    """A context manager turning SQLite faults of the store at ``root`` into one-line StoreErrors."""
    return _SqlErrors(root, then)


class _SqlErrors(contextlib.AbstractContextManager):
    def __init__(self, root: Path, then: str) -> None:
        self.root, self.then = root, then

    def __exit__(self, exc_type, exc, tb) -> bool:
        if exc is None or isinstance(exc, StoreError):
            return False
        if isinstance(exc, (sa.exc.DBAPIError, sqlite3.Error)):
            known = known_sqlite_error(exc, self.root / INDEX_FILE, then=self.then)
            if known is not None:
                raise known from None
        elif isinstance(exc, OSError) and is_disk_full(exc):
            raise disk_full_error(self.root, then=self.then) from None
        return False


def _refuse_foreign(index: Path, uv: int, rev: str | None, tables: set[str]) -> None:
    if rev is None and tables - {"sqlite_sequence"}:
        raise StoreError(
            f"{index} is a SQLite file of another program (no vla-studio schema); "
            "pass the right store folder with --home"
        )


def check_schema_version(index: Path, uv: int, rev: str | None) -> bool:
    """True when migrations are needed; SchemaTooNewError when a newer vla-studio wrote the store."""
    major, minor = m.unpack_user_version(uv)
    if major > m.SCHEMA_MAJOR or (rev is not None and rev not in KNOWN_REVISIONS and major != m.SCHEMA_MAJOR):
        raise SchemaTooNewError(
            f"{index} has schema {major}.{minor} (revision {rev}) from a newer vla-studio; this one reads up to "
            f"{m.SCHEMA_MAJOR}.{m.SCHEMA_MINOR}: upgrade vla-studio or pass another --home"
        )
    if rev is not None and rev not in KNOWN_REVISIONS:
        return False  # same major, newer minor: compatible, leave it as it is
    return rev != m.HEAD_REVISION


def run_migrations(engine: sa.Engine) -> None:
    from alembic import command
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(Path(__file__).parent / "migrations"))
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "head")
        uv = int(conn.exec_driver_sql("PRAGMA user_version").scalar() or 0)
        ours = m.pack_user_version(m.SCHEMA_MAJOR, m.SCHEMA_MINOR)
        if uv < ours:
            conn.exec_driver_sql(f"PRAGMA user_version={ours}")


def _rel(path: Path, root: Path) -> str:
    path = Path(path).absolute()
    try:
        return str(path.relative_to(root.absolute()))
    except ValueError:
        return str(path)


class _WriterCommits:
    """The Store's side of :class:`~recorder.store.writer.EpisodeCommits`: all an episode's writer may do."""

    def __init__(self, store: Store) -> None:
        self._store = store

    def commit(self, episode_id: int, *, num_frames: int, success: bool | None, notes: str,
               dropped: dict[str, int], segments: list[dict], tags: list[str],
               frames_per_camera: dict[str, int]) -> EpisodeInfo:
        return self._store._commit_episode(episode_id, num_frames=num_frames, success=success, notes=notes,
                                           dropped=dropped, segments=segments, tags=tags,
                                           frames_per_camera=frames_per_camera)

    def discard(self, episode_id: int, note: str) -> EpisodeInfo:
        self._store._set_discarded(episode_id, note=note)
        return self._store.episode(episode_id)

    def salvage(self, episode_id: int) -> EpisodeInfo:
        return self._store._salvage(episode_id, lock_held=True)


class Store:
    """One store root. Thread-safe writes (one lock); open a new Store per process.

    Dataset ``features`` recorded from the first episode:
    ``{"fps": float, "cameras": {name: {"shape": [h, w, 3], "dtype": "uint8", "codec": ...}},
       "lowdim": {name: {"shape": [...], "dtype": "float32"}}}``
    """

    def __init__(self, root: Path, engine: sa.Engine) -> None:
        self.root = root
        self.index_path = root / INDEX_FILE
        self._engine = engine
        self._Session = sessionmaker(engine, expire_on_commit=False)
        self._wlock = threading.RLock()
        self.recovered: list[EpisodeInfo] = []  # salvaged by open()
        self.reserve = SpaceReserve(root)  # ballast that lets a writer finish once the disk fills
        self._closed = False

    # -- opening -----------------------------------------------------------------------------
    @classmethod
    def open(cls, root: str | os.PathLike[str] | None = None, *, recover: bool = True) -> Store:
        """Open (creating if missing), migrate and salvage crashed episodes. StoreError on bad input."""
        root = resolve_home(root).absolute()
        validate_root(root)
        return cls._open_unchecked(root, recover=recover)

    @classmethod
    def _open_unchecked(cls, root: Path, *, recover: bool = True) -> Store:
        with sql_errors(root, "the command again"):
            return cls._open_inner(root, recover=recover)

    @classmethod
    def _open_inner(cls, root: Path, *, recover: bool) -> Store:
        index = root / INDEX_FILE
        if root.exists() and not root.is_dir():
            raise StoreError(f"{root} is a file, not a store folder; pass a folder with --home")
        _refuse_foreign(index, *probe_index(index, integrity=False))  # before anything is created next to it
        root.mkdir(parents=True, exist_ok=True)
        (root / EPISODES_DIR).mkdir(exist_ok=True)
        with _file_lock(root / STORE_LOCK):
            uv, rev, tables = probe_index(index, integrity=False)  # again: another process may have migrated
            engine = make_engine(index)
            try:
                if check_schema_version(index, uv, rev):
                    run_migrations(engine)
            except BaseException:
                engine.dispose()
                raise
            store = cls(root, engine)
            if recover:
                store.recovered = store.recover()
        return store

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._engine.dispose()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    @contextlib.contextmanager
    def _write(self) -> Iterator[Session]:
        """One write transaction; SQLite faults (disk full, locked, I/O) come out as one-line StoreErrors."""
        with sql_errors(self.root, "the command again"), self._wlock, self._Session.begin() as s:
            yield s

    @contextlib.contextmanager
    def _read(self) -> Iterator[Session]:
        with sql_errors(self.root, "the command again"), self._Session() as s:
            yield s

    def episode_dir(self, uuid: str) -> Path:
        return self.root / EPISODES_DIR / uuid

    # -- conversions -------------------------------------------------------------------------
    def _ep_info(self, ep: m.Episode) -> EpisodeInfo:
        cams, low = {}, {}
        for st in ep.streams:
            if st.kind == "video":
                cams[st.name] = CameraSpec.from_dict(st.options)
            else:
                low[st.name] = LowdimSpec(tuple(st.shape), st.dtype)
        return EpisodeInfo(
            id=ep.id,
            uuid=ep.uuid,
            dataset=ep.dataset.name,
            task=ep.task,
            fps=ep.fps,
            start_time=ep.start_time,
            duration_s=ep.duration_s,
            num_frames=ep.num_frames,
            status=ep.status,
            source=ep.source,
            success=ep.success,
            tags=tuple(sorted(t.tag for t in ep.tag_rows)),
            notes=ep.notes,
            dropped=dict(ep.dropped or {}),
            checkpoint_id=ep.checkpoint_id,
            path=self.episode_dir(ep.uuid),
            cameras=cams,
            lowdim=low,
            segments=tuple(ep.segments or ()),
            rig=dict(ep.rig or {}),
            status_before_trash=ep.status_before_trash,
        )

    @staticmethod
    def _ep_query():
        return select(m.Episode).options(
            selectinload(m.Episode.dataset), selectinload(m.Episode.streams), selectinload(m.Episode.tag_rows)
        )

    def _ds_info(self, s: Session, ds: m.Dataset) -> DatasetInfo:
        rows = s.execute(
            select(m.Episode.status, sa.func.count(), sa.func.coalesce(sa.func.sum(m.Episode.num_frames), 0))
            .where(m.Episode.dataset_id == ds.id)
            .group_by(m.Episode.status)
        ).all()
        counts = {st: n for st, n, _ in rows}
        good = [r for r in rows if r[0] in ("complete", "recovered")]
        return DatasetInfo(
            id=ds.id,
            name=ds.name,
            features=ds.features,
            num_episodes=sum(r[1] for r in good),
            num_frames=int(sum(r[2] for r in good)),
            counts=counts,
            created_at=ds.created_at,
        )

    def _run_info(self, run: m.FinetuneRun) -> RunInfo:
        return RunInfo(
            id=run.id,
            run_id=run.run_id,
            dataset=run.dataset.name if run.dataset else None,
            model=run.model,
            config=dict(run.config or {}),
            path=self.root / run.path,
            status=run.status,
            best_metric=run.best_metric,
            created_at=run.created_at,
            finished_at=run.finished_at,
            num_checkpoints=len(run.checkpoints),
        )

    def _ck_info(self, ck: m.Checkpoint) -> CheckpointInfo:
        return CheckpointInfo(
            id=ck.id,
            run_id=ck.run.run_id,
            step=ck.step,
            path=self.root / ck.path,
            metrics=dict(ck.metrics or {}),
            created_at=ck.created_at,
        )

    # -- datasets ----------------------------------------------------------------------------
    def get_or_create_dataset(self, name: str, features: dict | None = None) -> DatasetInfo:
        name = str(name).strip()
        if not name:
            raise DatasetError("a dataset needs a non-empty name")
        with self._write() as s:
            ds = s.scalar(select(m.Dataset).where(m.Dataset.name == name))
            if ds is None:
                ds = m.Dataset(name=name, features=features, version=0)
                s.add(ds)
                s.flush()
            elif features is not None and ds.features is None:
                ds.features = features
            return self._ds_info(s, ds)

    def datasets(self) -> list[DatasetInfo]:
        with self._read() as s:
            return [self._ds_info(s, ds) for ds in s.scalars(select(m.Dataset).order_by(m.Dataset.name))]

    def dataset(self, name: str) -> DatasetInfo:
        with self._read() as s:
            ds = s.scalar(select(m.Dataset).where(m.Dataset.name == name))
            if ds is None:
                raise DatasetError(f"no dataset named {name!r} in {self.root}; see 'vla-studio store info'")
            return self._ds_info(s, ds)

    # -- recording ---------------------------------------------------------------------------
    def begin_episode(
        self,
        *,
        dataset: str,
        task: str = "",
        fps: float,
        rig: dict | None = None,
        source: str = "teleop",
        cameras: dict[str, CameraSpec | dict] | None = None,
        lowdim: dict[str, Any] | None = None,
        checkpoint_id: int | None = None,
        tags: Iterable[str] = (),
        flush_s: float = 0.5,
    ) -> EpisodeWriter:
        """Start an episode (row status ``recording``) and return its writer."""
        cams, low, features = episode_streams(fps, source, cameras, lowdim)
        rig = to_json(rig or {})
        uuid = str(uuidlib.uuid4())
        folder = self.episode_dir(uuid)
        start = m.utcnow()
        # room to finish an episode once the disk fills: given back by the writer when it does
        self.reserve.take(then="the recording again")
        try:
            return self._begin_episode(
                dataset, task, fps, rig, source, cams, low, checkpoint_id, tags, flush_s, features, uuid, folder, start
            )
        except BaseException:
            shutil.rmtree(folder, ignore_errors=True)
            raise

    def _begin_episode(
        self, dataset, task, fps, rig, source, cams, low, checkpoint_id, tags, flush_s, features, uuid, folder, start
    ) -> EpisodeWriter:
        with self._write() as s:
            ds = s.scalar(select(m.Dataset).where(m.Dataset.name == dataset))
            if ds is None:
                ds = m.Dataset(name=dataset, features=features, version=0)
                s.add(ds)
                s.flush()
            elif ds.features is None:
                ds.features = features
            else:
                _check_features(dataset, ds.features, features)
            ck = s.get(m.Checkpoint, checkpoint_id) if checkpoint_id is not None else None
            if checkpoint_id is not None and ck is None:
                raise StoreError(
                    f"checkpoint id {checkpoint_id} is not in {self.index_path}; "
                    "register it with add_checkpoint first"
                )
            folder.mkdir(parents=True)
            lock_fd = try_lock(folder)
            meta = episode_meta(uuid=uuid, dataset=dataset, task=task, fps=fps, start=start, source=source, rig=rig,
                                cams=cams, low=low, checkpoint_id=checkpoint_id,
                                checkpoint_path=ck.path if ck is not None else None, tags=tags)
            write_json_atomic(folder / META_FILE, meta)
            ep = m.Episode(
                uuid=uuid,
                dataset=ds,
                task=task,
                rig=rig or {},
                fps=float(fps),
                start_time=start,
                duration_s=0.0,
                num_frames=0,
                status="recording",
                source=source,
                notes="",
                dropped={c: 0 for c in cams},
                segments=[],
                checkpoint_id=checkpoint_id,
            )
            ep.streams = _stream_rows(cams, low)
            ep.tag_rows = [m.EpisodeTag(tag=t) for t in sorted(set(tags))]
            s.add(ep)
            s.flush()
            episode_id = ep.id
        try:
            return EpisodeWriter(
                _WriterCommits(self),
                episode_id=episode_id,
                uuid=uuid,
                path=folder,
                meta=meta,
                fps=float(fps),
                cameras=cams,
                lowdim=low,
                lock_fd=lock_fd,
                flush_s=flush_s,
                reserve=self.reserve,
            )
        except BaseException as err:
            release_lock(lock_fd)
            shutil.rmtree(folder, ignore_errors=True)
            if is_disk_full(err, self.root):
                self.reserve.release()
            self._set_discarded(episode_id, note="writer failed to start")
            if isinstance(err, OSError) and is_disk_full(err, self.root):
                raise disk_full_error(self.root, then="the recording again") from None
            raise

    def _commit_episode(
        self,
        episode_id: int,
        *,
        num_frames: int,
        success: bool | None,
        notes: str,
        dropped: dict[str, int],
        segments: list[dict],
        tags: list[str],
        frames_per_camera: dict[str, int],
        status: str = "complete",
    ) -> EpisodeInfo:
        with self._write() as s:
            ep = s.scalar(self._ep_query().where(m.Episode.id == episode_id))
            ep.status = status
            ep.num_frames = num_frames
            ep.duration_s = num_frames / ep.fps
            ep.success = success
            ep.notes = notes
            ep.dropped = dropped
            ep.segments = segments
            have = {t.tag for t in ep.tag_rows}
            ep.tag_rows.extend(m.EpisodeTag(tag=t) for t in sorted(set(tags) - have))
            for st in ep.streams:
                st.num_frames = (
                    frames_per_camera.get(st.name, num_frames) if st.kind == "video" else num_frames
                )
            ep.dataset.version += 1
            s.flush()
            return self._ep_info(ep)

    def _set_discarded(self, episode_id: int, note: str = "") -> None:
        with self._write() as s:
            ep = s.get(m.Episode, episode_id)
            if ep is not None:
                ep.status = "discarded"
                if note:
                    ep.notes = (ep.notes + "\n" if ep.notes else "") + note
                ep.dataset.version += 1

    # -- queries -----------------------------------------------------------------------------
    def episodes(
        self,
        dataset: str | Iterable[str] | None = None,
        task: str | None = None,
        success: bool | None = None,
        source: str | Iterable[str] | None = None,
        tags: str | Iterable[str] | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        status: str | Iterable[str] | None = ("complete", "recovered"),
        checkpoint_id: int | None = None,
        limit: int | None = None,
        *,
        query: EpisodeQuery | None = None,
    ) -> list[EpisodeInfo]:
        """Episodes matching every given filter (tags: all of them), oldest first. status=None: any status.

        ``query`` (an :class:`EpisodeQuery`, which can also ask for unlabelled episodes) replaces the
        keyword filters."""
        if query is None:
            query = query_from(dataset, task, success, source, tags, since, until, status, checkpoint_id)
        return self.episode_page(query, limit=limit)

    def episode_page(
        self,
        query: EpisodeQuery,
        *,
        sort: str = "id",
        descending: bool = False,
        after: tuple | None = None,
        limit: int | None = None,
    ) -> list[EpisodeInfo]:
        """One page of the episodes matching ``query``, ordered by ``sort`` (see ``query.SORT_KEYS``) then id;
        ``after`` is ``(sort_value(last), last.id)`` of the previous page."""
        ids_stmt = page_statement(query, m.Episode.id, sort=sort, descending=descending, after=after, limit=limit)
        with self._read() as s:
            ids = list(s.scalars(ids_stmt))
            if not ids:
                return []
            by_id = self._ep_infos(s, ids)
            return [by_id[i] for i in ids if i in by_id]

    _INFO_COLUMNS = ("id", "uuid", "dataset_id", "task", "fps", "start_time", "duration_s", "num_frames", "status",
                     "source", "success", "notes", "dropped", "checkpoint_id", "segments", "rig", "status_before_trash")

    def _ep_infos(self, s: Session, ids: list[int]) -> dict[int, EpisodeInfo]:
        """EpisodeInfos of ``ids`` from plain SQL reads (three indexed queries per 500 ids, no ORM objects):
        the same values as :meth:`_ep_info` of the ORM rows, at a fraction of the cost for long listings.
        JSON columns are read as text and each distinct text is decoded once (a store's episodes share a few
        camera options, shapes and drop counts); what an EpisodeInfo holds is never shared with another."""
        e, st, tg = m.Episode.__table__, m.Stream.__table__, m.EpisodeTag.__table__

        def text(col):
            return sa.type_coerce(col, sa.Text)

        names = dict(s.execute(select(m.Dataset.id, m.Dataset.name)).all())
        cam_specs: dict[str, CameraSpec] = {}  # one (frozen) spec per distinct camera options
        low_specs: dict[tuple[str, str], LowdimSpec] = {}
        dropped_of: dict[str, Any] = {}
        eps_dir = self.root / EPISODES_DIR
        out: dict[int, EpisodeInfo] = {}
        for i in range(0, len(ids), 500):
            chunk = ids[i : i + 500]
            cams: dict[int, dict[str, CameraSpec]] = {}
            low: dict[int, dict[str, LowdimSpec]] = {}
            stream_q = (select(st.c.episode_id, st.c.name, st.c.kind, text(st.c.shape), st.c.dtype,
                               text(st.c.options))
                        .where(st.c.episode_id.in_(chunk)).order_by(st.c.episode_id, st.c.id))
            for eid, name, kind, shape, dtype, options in s.execute(stream_q):
                if kind == "video":
                    spec = cam_specs.get(options)
                    if spec is None:
                        spec = cam_specs[options] = CameraSpec.from_dict(json.loads(options))
                    cams.setdefault(eid, {})[name] = spec
                else:
                    lspec = low_specs.get((shape, dtype))
                    if lspec is None:
                        lspec = low_specs[(shape, dtype)] = LowdimSpec(tuple(json.loads(shape)), dtype)
                    low.setdefault(eid, {})[name] = lspec
            tags: dict[int, list[str]] = {}
            for eid, tag in s.execute(select(tg.c.episode_id, tg.c.tag).where(tg.c.episode_id.in_(chunk))):
                tags.setdefault(eid, []).append(tag)
            cols = [text(e.c[c]) if c in ("dropped", "segments", "rig") else e.c[c] for c in self._INFO_COLUMNS]
            for r in s.execute(select(*cols).where(e.c.id.in_(chunk))):
                (eid, uuid, ds_id, task, fps, start, dur, nf, status, source, success, notes, dropped, ck,
                 segments, rig, before) = r
                drop = _json_once(dropped_of, dropped)
                out[eid] = EpisodeInfo(
                    id=eid, uuid=uuid, dataset=names.get(ds_id, ""), task=task, fps=fps, start_time=start,
                    duration_s=dur, num_frames=nf, status=status, source=source, success=success,
                    tags=tuple(sorted(tags.get(eid, ()))), notes=notes, dropped=dict(drop or {}),
                    checkpoint_id=ck, path=eps_dir / uuid, cameras=cams.get(eid, {}), lowdim=low.get(eid, {}),
                    segments=tuple(json.loads(segments) or ()) if segments and segments != "[]" else (),
                    rig=dict(json.loads(rig) or {}) if rig and rig != "{}" else {}, status_before_trash=before)
        return out

    def episode_rows(
        self,
        query: EpisodeQuery,
        *,
        sort: str = "id",
        descending: bool = False,
        after: tuple | None = None,
        limit: int | None = None,
    ) -> list[EpisodeRow]:
        """Like :meth:`episode_page` but only the label columns (:class:`EpisodeRow`): two indexed queries,
        no ORM objects, no stream rows; for listings of many episodes."""
        e = m.Episode
        cols = [e.id, e.uuid, e.dataset_id, e.task, e.start_time, e.duration_s, e.num_frames, e.status, e.source,
                e.success, e.notes, sa.type_coerce(e.dropped, sa.Text), e.checkpoint_id]
        stmt = page_statement(query, cols, sort=sort, descending=descending, after=after, limit=limit)
        ids = page_statement(query, e.id, sort=sort, descending=descending, after=after, limit=limit)
        with self._read() as s:
            rows = s.execute(stmt).all()
            if not rows:
                return []
            names = dict(s.execute(select(m.Dataset.id, m.Dataset.name)).all())
            tags: dict[int, list[str]] = {}
            tag_q = select(m.EpisodeTag.episode_id, m.EpisodeTag.tag).where(
                m.EpisodeTag.episode_id.in_(ids))
            for eid, tag in s.execute(tag_q):
                tags.setdefault(eid, []).append(tag)
        dropped: dict[str, Any] = {}  # JSON text -> its value, decoded once (most rows share a few)
        return [
            EpisodeRow(id=r[0], uuid=r[1], dataset=names.get(r[2], ""), task=r[3], start_time=r[4], duration_s=r[5],
                       num_frames=r[6], status=r[7], source=r[8], success=r[9], tags=tuple(sorted(tags.get(r[0], ()))),
                       notes=r[10], dropped=dict(_json_once(dropped, r[11]) or {}), checkpoint_id=r[12])
            for r in rows
        ]

    def outcome_counts(self, query: EpisodeQuery, *, tag_prefixes: tuple[str, ...] = ()) -> list[tuple]:
        """``(checkpoint_id, tag per prefix..., success, count)`` over the episodes matching ``query``,
        one GROUP BY (no rows loaded): per-checkpoint success rates of any number of rollouts. Each
        ``tag_prefixes`` entry adds the episode's first tag with that prefix (None when it has none)."""
        e = m.Episode
        tag_cols = []
        for prefix in tag_prefixes:
            t = m.EpisodeTag.__table__.alias()
            tag_cols.append(select(sa.func.min(t.c.tag)).where(t.c.episode_id == e.id, t.c.tag.like(
                f"{like_escaped(prefix)}%", escape="\\")).scalar_subquery().label(f"tag{len(tag_cols)}"))
        stmt = (select(e.checkpoint_id, *tag_cols, e.success, sa.func.count()).where(*query.where())
                .group_by(e.checkpoint_id, *tag_cols, e.success))
        with self._read() as s:
            return [tuple(r) for r in s.execute(stmt).all()]

    def count_episodes(self, query: EpisodeQuery) -> int:
        """How many episodes match ``query`` (one indexed COUNT, no rows loaded)."""
        with self._read() as s:
            return int(s.scalar(count_statement(query)) or 0)

    def episode_ids(self, query: EpisodeQuery) -> list[int]:
        """The ids of every episode matching ``query``, ascending (no rows loaded)."""
        with self._read() as s:
            return list(s.scalars(page_statement(query, m.Episode.id)))

    def episode(self, episode_id: int | str) -> EpisodeInfo:
        with self._read() as s:
            return self._ep_info(self._get_ep(s, episode_id))

    def episodes_by_id(self, ids: list[int]) -> dict[int, EpisodeInfo]:
        """The full records of these episode ids (those that exist), from a few plain indexed queries:
        what :meth:`episode` gives, without an ORM load per episode (thumbnails of a screenful of rows)."""
        ids = [int(i) for i in ids]
        if not ids:
            return {}
        with self._read() as s:
            return self._ep_infos(s, ids)

    def _get_ep(self, s: Session, episode_id: int | str) -> m.Episode:
        q = self._ep_query()
        q = (
            q.where(m.Episode.uuid == episode_id)
            if isinstance(episode_id, str)
            else q.where(m.Episode.id == int(episode_id))
        )
        ep = s.scalar(q)
        if ep is None:
            raise StoreError(f"episode {episode_id!r} is not in {self.index_path}")
        return ep

    def update_episode(
        self,
        episode_id: int | str,
        *,
        task: str = _UNSET,
        success: bool | None = _UNSET,
        tags: Iterable[str] = _UNSET,
        notes: str = _UNSET,
        status: str = _UNSET,
        dataset: str = _UNSET,
    ) -> EpisodeInfo:
        """Edit labels of a stored episode.

        ``status="trashed"`` hides it and remembers the status it had (``restore_episode`` returns it there);
        setting any other status forgets that."""
        with self._write() as s:
            ep = self._get_ep(s, episode_id)
            _refuse_deleting(ep, self.root)
            old_ds = ep.dataset
            if task is not _UNSET:
                ep.task = str(task)
            if success is not _UNSET:
                ep.success = None if success is None else bool(success)
            if notes is not _UNSET:
                ep.notes = str(notes)
            if tags is not _UNSET:
                want = set(_as_list(tags))
                ep.tag_rows = [t for t in ep.tag_rows if t.tag in want]
                have = {t.tag for t in ep.tag_rows}
                ep.tag_rows.extend(m.EpisodeTag(tag=t) for t in sorted(want - have))
            if status is not _UNSET:
                if status not in STATUSES or status == "recording":
                    raise ValueError(f"status must be one of {STATUSES[1:]}, not {status!r}")
                if ep.status == "recording":
                    raise StoreError(f"episode {ep.id} is still recording; finish or discard it first")
                if status == "trashed":
                    if ep.status != "trashed":
                        ep.status_before_trash = ep.status
                else:
                    ep.status_before_trash = None
                ep.status = status
            if dataset is not _UNSET and dataset != old_ds.name:
                ds = s.scalar(select(m.Dataset).where(m.Dataset.name == dataset))
                if ds is None:
                    ds = m.Dataset(name=dataset, features=old_ds.features, version=0)
                    s.add(ds)
                ep.dataset = ds
                ds.version += 1
            old_ds.version += 1
            s.flush()
            info = self._ep_info(ep)
        self._update_meta(info)
        return info

    def restore_episode(self, episode_id: int | str) -> EpisodeInfo:
        """Take a trashed episode out of the trash, back to exactly the status it had before."""
        with self._write() as s:
            ep = self._get_ep(s, episode_id)
            _refuse_deleting(ep, self.root)
            if ep.status != "trashed":
                raise StoreError(
                    f"episode {ep.id} is not in the trash (status {ep.status}); only trashed episodes can be restored"
                )
            ep.status = ep.status_before_trash or "complete"  # rows trashed by an older vla-studio: complete
            ep.status_before_trash = None
            ep.dataset.version += 1
            s.flush()
            info = self._ep_info(ep)
        self._update_meta(info)
        return info

    def delete_episode(self, episode_id: int | str) -> None:
        """Delete an episode for good: its folder, its index row, its stream and tag rows.

        Crash-safe order: the row is first marked ``deleting`` (hidden from lists, meta.json says so too),
        then the files go (meta.json last), then the row is deleted. A crash in between leaves a
        ``deleting`` row or folder that ``vla-studio store check --repair`` finishes deleting.
        An episode still recording is refused."""
        with self._write() as s:
            ep = self._get_ep(s, episode_id)
            folder = self.episode_dir(ep.uuid)
            if ep.status == "recording":
                raise StoreError(
                    f"episode {ep.id} ({folder}) is still recording; stop the recording (finish or discard) "
                    "before deleting it"
                )
            eid = ep.id
            if ep.status != DELETING:
                ep.status = DELETING
                ep.dataset.version += 1
        _mark_meta_deleting(folder)
        try:
            remove_episode_folder(folder)
        except OSError as err:
            raise StoreError(
                f"could not delete {err.filename or folder} ({err.strerror or err}); fix its permissions, then "
                f"run '{_fix_hint(self.root)}' to finish deleting episode {eid}"
            ) from None
        with self._write() as s:
            ep = s.get(m.Episode, eid)
            if ep is not None:
                s.delete(ep)  # streams and tags go with it (ON DELETE CASCADE)

    def _update_meta(self, info: EpisodeInfo) -> None:
        path = info.path / META_FILE
        if not path.is_file():
            return
        try:
            meta = json.loads(path.read_text())
        except (OSError, ValueError):
            return
        meta.update(
            task=info.task,
            success=info.success,
            notes=info.notes,
            tags=list(info.tags),
            status=info.status,
            dataset=info.dataset,
            num_frames=info.num_frames,
            dropped=info.dropped,
            segments=list(info.segments),
            status_before_trash=info.status_before_trash,
        )
        try:
            write_json_atomic(path, meta)
        except OSError as err:  # the index row is the commit point; meta.json is its mirror for a rebuild
            path.with_name(path.name + ".tmp").unlink(missing_ok=True)
            if not is_disk_full(err, self.root):
                raise
            log.warning("could not update %s (disk full); the index holds the episode's labels", path)

    def open_episode(self, episode_id: int | str | EpisodeInfo) -> EpisodeReader:
        """A reader of the episode; given an :class:`EpisodeInfo` (from ``episodes()``), no index query is made."""
        info = episode_id if isinstance(episode_id, EpisodeInfo) else self.episode(episode_id)
        if info.status == "recording":
            raise StoreError(f"episode {info.id} is still recording; read it after finish()")
        if info.num_frames == 0:
            raise StoreError(f"episode {info.id} has no frames (status {info.status})")
        return EpisodeReader(info)

    # -- statistics --------------------------------------------------------------------------
    def dataset_stats(self, name: str) -> dict[str, dict[str, list[float]]]:
        """Per-dimension min/max/mean/std/q01/q99 of every float low-dim stream over the usable episodes."""
        with self._read() as s:
            ds = s.scalar(select(m.Dataset).where(m.Dataset.name == name))
            if ds is None:
                raise DatasetError(f"no dataset named {name!r} in {self.root}")
            if ds.stats is not None and ds.stats_version == ds.version:
                return ds.stats
            version = ds.version
        eps = self.episodes(dataset=name)
        if not eps:
            raise DatasetError(f"dataset {name!r} has no complete episodes to compute statistics from")
        cols: dict[str, list[np.ndarray]] = {}
        for info in eps:
            with EpisodeReader(info) as r:
                data = r.lowdim()
            for key, spec in info.lowdim.items():
                if np.dtype(spec.dtype).kind == "f" and key in data:
                    cols.setdefault(key, []).append(data[key].reshape(len(data[key]), -1).astype(np.float64))
        stats = {}
        for key, parts in cols.items():
            st = feature_stats(np.concatenate(parts))
            stats[key] = {k: v.tolist() for k, v in st.items() if k != "count"} | {"count": int(st["count"][0])}
        with self._write() as s:
            ds = s.scalar(select(m.Dataset).where(m.Dataset.name == name))
            if ds.version == version:
                ds.stats = stats
                ds.stats_version = version
        return stats

    # -- fine-tune bookkeeping ---------------------------------------------------------------
    def add_run(
        self,
        run_id: str,
        dataset: str | None,
        model: str,
        config: dict,
        path: str | os.PathLike[str] | None = None,
    ) -> RunInfo:
        """Register a fine-tune run (again on resume: the row is updated and set running)."""
        path = Path(path) if path is not None else self.root / RUNS_DIR / run_id
        with self._write() as s:
            ds = None
            if dataset is not None:
                ds = s.scalar(select(m.Dataset).where(m.Dataset.name == dataset))
                if ds is None:
                    ds = m.Dataset(name=dataset, version=0)
                    s.add(ds)
            run = s.scalar(select(m.FinetuneRun).where(m.FinetuneRun.run_id == run_id))
            if run is None:
                run = m.FinetuneRun(run_id=run_id)
                s.add(run)
            run.dataset = ds
            run.model = str(model)
            run.config = to_json(config)
            run.path = _rel(path, self.root)
            run.status = "running"
            run.finished_at = None
            s.flush()
            return self._run_info(run)

    def _get_run(self, s: Session, run_id: str) -> m.FinetuneRun:
        run = s.scalar(select(m.FinetuneRun).where(m.FinetuneRun.run_id == run_id))
        if run is None:
            raise StoreError(f"fine-tune run {run_id!r} is not in {self.index_path}")
        return run

    def update_run(
        self,
        run_id: str,
        *,
        status: str = _UNSET,
        best_metric: float | None = _UNSET,
        finished_at: datetime | None = _UNSET,
    ) -> RunInfo:
        with self._write() as s:
            run = self._get_run(s, run_id)
            if status is not _UNSET:
                run.status = str(status)
            if best_metric is not _UNSET:
                run.best_metric = None if best_metric is None else float(best_metric)
            if finished_at is not _UNSET:
                run.finished_at = finished_at
            s.flush()
            return self._run_info(run)

    def runs(self) -> list[RunInfo]:
        with self._read() as s:
            q = (
                select(m.FinetuneRun)
                .options(selectinload(m.FinetuneRun.checkpoints), selectinload(m.FinetuneRun.dataset))
                .order_by(m.FinetuneRun.id)
            )
            return [self._run_info(r) for r in s.scalars(q)]

    def run(self, run_id: str) -> RunInfo:
        with self._read() as s:
            return self._run_info(self._get_run(s, run_id))

    def add_checkpoint(
        self, run_id: str, step: int, path: str | os.PathLike[str], metrics: dict
    ) -> CheckpointInfo:
        """Register (or update) the checkpoint of a run at a step."""
        with self._write() as s:
            run = self._get_run(s, run_id)
            ck = s.scalar(
                select(m.Checkpoint).where(m.Checkpoint.run_id == run.id, m.Checkpoint.step == int(step))
            )
            if ck is None:
                ck = m.Checkpoint(run=run, step=int(step))
                s.add(ck)
            ck.path = _rel(Path(path), self.root)
            ck.metrics = to_json(metrics)
            s.flush()
            return self._ck_info(ck)

    def checkpoints(self, run_id: str | None = None) -> list[CheckpointInfo]:
        with self._read() as s:
            q = select(m.Checkpoint).options(selectinload(m.Checkpoint.run)).join(m.FinetuneRun)
            if run_id is not None:
                q = q.where(m.FinetuneRun.run_id == run_id)
            return [self._ck_info(c) for c in s.scalars(q.order_by(m.FinetuneRun.id, m.Checkpoint.step))]

    def checkpoint(self, checkpoint_id: int) -> CheckpointInfo:
        with self._read() as s:
            ck = s.get(m.Checkpoint, int(checkpoint_id))
            if ck is None:
                raise StoreError(f"checkpoint id {checkpoint_id} is not in {self.index_path}")
            return self._ck_info(ck)

    def find_checkpoint(self, path: str | os.PathLike[str]) -> CheckpointInfo | None:
        """The registered checkpoint whose folder is ``path`` (to link rollout episodes), or None."""
        rel = _rel(Path(path), self.root)
        with self._read() as s:
            ck = s.scalar(select(m.Checkpoint).where(m.Checkpoint.path == rel))
            return None if ck is None else self._ck_info(ck)

    def delete_run(self, run_id: str, delete_files: bool = True) -> None:
        """Forget a run and its checkpoints (rollout episodes keep their data, their link is cleared).

        Its folder is deleted too when it lies inside this store's ``runs/``."""
        with self._write() as s:
            run = self._get_run(s, run_id)
            folder = self.root / run.path
            s.delete(run)
        runs_dir = (self.root / RUNS_DIR).resolve()
        if delete_files and folder.is_dir() and runs_dir in folder.resolve().parents:
            shutil.rmtree(folder)

    # -- recovery ----------------------------------------------------------------------------
    def bulk_import(self, batch_size: int = DEFAULT_BATCH, *, on_commit=None,
                    then: str = "the import again") -> BulkImport:
        """Write many whole episodes, ``batch_size`` per index transaction and one file-system sync per batch;
        a crash loses only the batch in progress (see :mod:`recorder.store.bulk`). ``then``: what the
        one-line error of a full disk tells the person to run again."""
        return BulkImport(self, batch_size, on_commit=on_commit, then=then)

    def recover(self) -> list[EpisodeInfo]:
        """Salvage episodes left ``recording`` by a crash (those with a live writer are left alone) and remove
        the uncommitted batch of a bulk import that crashed."""
        roll_back_interrupted(self)
        with self._read() as s:
            ids = list(s.scalars(select(m.Episode.id).where(m.Episode.status == "recording")))
        out = []
        for eid in ids:
            info = self._salvage(eid)
            if info is not None:
                out.append(info)
                log.warning(
                    "episode %s salvaged after a crash: %s, %d ticks", info.id, info.status, info.num_frames
                )
        return out

    def _salvage(
        self, episode_id: int, lock_held: bool = False, status: str = "recovered"
    ) -> EpisodeInfo | None:
        from recorder.store.recovery import salvage_episode

        info = self.episode(episode_id)
        folder = info.path
        fd = None
        if not lock_held and folder.is_dir():
            fd = try_lock(folder)
            if fd is None:
                return None  # a live writer holds it
        backup = Backup(self.root, folder, episode_id=info.id, num_frames=info.num_frames, status=info.status,
                        reason=f"salvage of episode {info.id} ({info.status})")
        try:  # a crashed recording loses only a cut tail: no backup; a stored episode keeps its originals
            result = salvage_episode(info, backup=None if info.status == "recording" else backup)
        finally:
            release_lock(fd)
        if not backup.used and info.status in ("complete", "recovered") and result.num_frames < info.num_frames:
            backup.save()  # no file rewritten, but the cut of the index row can be undone too
        if backup.folder.is_dir():
            log.info("episode %s: what the repair changed can be undone from %s", info.id, backup.folder)
        if result.num_frames == 0:
            self._set_discarded(episode_id, note=f"nothing usable after a crash: {result.reason}")
            info = self.episode(episode_id)
            self._update_meta(info)
            return info
        success, notes = info.success, info.notes
        if result.finished and info.status == "recording" and result.meta:  # died inside finish()
            success, notes = result.meta.get("success"), str(result.meta.get("notes") or "")
        info = self._commit_episode(
            episode_id,
            num_frames=result.num_frames,
            success=success,
            notes=notes,
            dropped=result.dropped,
            segments=result.segments if result.segments is not None else list(info.segments),
            tags=sorted(set(info.tags) | set((result.meta or {}).get("tags") or [])),
            frames_per_camera=result.frames_per_camera,
            status="complete" if result.finished and info.status == "recording" else status,
        )
        self._update_meta(info)
        return info


def _refuse_deleting(ep: m.Episode, root: Path) -> None:
    if ep.status == DELETING:
        raise StoreError(
            f"episode {ep.id} is being deleted (an earlier delete was interrupted); "
            f"run '{_fix_hint(root)}' to finish it"
        )


def _mark_meta_deleting(folder: Path) -> None:
    """Best effort: meta.json says ``deleting`` so that an index rebuilt from the folders skips it."""
    path = folder / META_FILE
    try:
        meta = json.loads(path.read_text())
        meta["status"] = DELETING
        write_json_atomic(path, meta)
    except (OSError, ValueError, TypeError):
        pass


def remove_episode_folder(folder: Path) -> None:
    """Remove an episode folder, its meta.json last (a half-removed folder still says what it was)."""
    if not folder.is_dir():
        return
    for child in folder.iterdir():
        if child.name == META_FILE:
            continue
        if child.is_dir() and not child.is_symlink():
            shutil.rmtree(child)
        else:
            child.unlink()
    (folder / META_FILE).unlink(missing_ok=True)
    folder.rmdir()


def validate_root(root: Path) -> None:
    """StoreError unless ``root`` is a store, an empty folder or a path that does not exist yet."""
    index = root / INDEX_FILE
    if root.exists() and not root.is_dir():
        raise StoreError(
            f"{root} is a file, not a store folder; pass a folder with --home or $VLA_STUDIO_HOME"
        )
    if index.exists() and not index.is_file():
        raise StoreError(f"{index} is not a file; pass the right store folder with --home")
    if index.exists() or not root.exists():
        return
    entries = {p.name for p in root.iterdir() if not p.name.startswith(".")}
    episodes = root / EPISODES_DIR
    if episodes.is_dir() and any(episodes.iterdir()):
        raise StoreError(
            f"{index} is missing but {episodes} holds episodes; run "
            f"'{_fix_hint(root)}' to rebuild the index from them"
        )
    if _has_runs(root):
        raise StoreError(
            f"{index} is missing but {root / RUNS_DIR} holds fine-tune runs; run "
            f"'{_fix_hint(root)}' to rebuild the index from them"
        )
    if entries - _STORE_ENTRIES:
        raise StoreError(
            f"{root} is not a vla-studio store (no {INDEX_FILE}, other files present); "
            "pass an empty or new folder with --home"
        )


def _jsonable(v: Any) -> Any:
    if isinstance(v, np.ndarray):
        return v.tolist()
    if isinstance(v, np.generic):
        return v.item()
    return str(v)


def to_json(v: Any) -> Any:
    """A plain-JSON copy (numpy arrays and scalars become lists and numbers, anything else a string)."""
    return json.loads(json.dumps(v, default=_jsonable))


def episode_streams(
    fps: float, source: str, cameras: dict[str, CameraSpec | dict] | None, lowdim: dict[str, Any] | None
) -> tuple[dict[str, CameraSpec], dict[str, LowdimSpec], dict]:
    """Check a new episode's arguments; its camera specs, low-dim specs and dataset ``features``."""
    if source not in SOURCES:
        raise ValueError(f"source must be one of {SOURCES}, not {source!r}")
    if not fps or fps <= 0:
        raise ValueError(f"fps must be positive, not {fps!r}")
    cams = {
        str(k): (v if isinstance(v, CameraSpec) else CameraSpec.from_dict(v))
        for k, v in (cameras or {}).items()
    }
    low = {str(k): LowdimSpec.coerce(v) for k, v in (lowdim or {}).items()}
    for name in list(cams) + list(low):
        if not name or "/" in name or is_bookkeeping(name):
            raise ValueError(f"invalid stream name {name!r}")
    features = {
        "fps": float(fps),
        "cameras": {
            c: {"shape": [sp.height, sp.width, 3], "dtype": "uint8", "codec": sp.codec}
            for c, sp in cams.items()
        },
        "lowdim": {k: v.to_dict() for k, v in low.items()},
    }
    return cams, low, features


def episode_meta(*, uuid: str, dataset: str, task: str, fps: float, start: datetime, source: str, rig: dict,
                 cams: dict[str, CameraSpec], low: dict[str, LowdimSpec], checkpoint_id: int | None,
                 checkpoint_path: str | None, tags: Iterable[str], status: str = "recording") -> dict:
    """An episode folder's ``meta.json`` as it starts (the writer adds the counts when it finishes)."""
    return {
        "format": META_FORMAT,
        "uuid": uuid,
        "dataset": dataset,
        "task": task,
        "fps": float(fps),
        "start_time": start.isoformat(),
        "source": source,
        "rig": rig or {},
        "cameras": {c: sp.to_dict() for c, sp in cams.items()},
        "lowdim": {k: v.to_dict() for k, v in low.items()},
        "checkpoint_id": checkpoint_id,
        # the checkpoint's folder (store-relative): links the episode again when the index is rebuilt
        "checkpoint_path": checkpoint_path,
        "status": status,
        "tags": list(tags),
    }


def stream_values(cams: dict[str, CameraSpec], low: dict[str, LowdimSpec], num_frames: int = 0,
                  frames_per_camera: dict[str, int] | None = None) -> list[dict[str, Any]]:
    """The ``streams`` rows of an episode (column values, without ``episode_id``): one per camera, one per
    low-dim stream."""
    fpc = frames_per_camera or {}
    rows = [
        dict(name=c, kind="video", shape=[sp.height, sp.width, 3], dtype="uint8", codec=sp.codec,
             path=f"video/{c}.mp4", num_frames=fpc.get(c, num_frames), options=sp.to_dict())
        for c, sp in cams.items()
    ]
    rows += [
        dict(name=k, kind="lowdim", shape=list(v.shape), dtype=v.dtype, codec="arrow", path=LOWDIM_FILE,
             num_frames=num_frames, options={})
        for k, v in low.items()
    ]
    return rows


def _stream_rows(cams: dict[str, CameraSpec], low: dict[str, LowdimSpec]) -> list[m.Stream]:
    return [m.Stream(**row) for row in stream_values(cams, low)]


def _check_features(dataset: str, have: dict, new: dict) -> None:
    """DatasetError when an episode does not fit the dataset's cameras or state/action shapes."""
    hc, nc = have.get("cameras") or {}, new.get("cameras") or {}
    problems = []
    if hc and set(hc) != set(nc):
        problems.append(f"cameras {sorted(nc)} vs {sorted(hc)}")
    else:
        problems += [
            f"camera {c} {nc[c]['shape']} vs {hc[c]['shape']}"
            for c in hc
            if c in nc and list(hc[c]["shape"]) != list(nc[c]["shape"])
        ]
    hl, nl = have.get("lowdim") or {}, new.get("lowdim") or {}
    for key in ("observation.state", "action"):
        if key in hl and key in nl and list(hl[key]["shape"]) != list(nl[key]["shape"]):
            problems.append(f"{key} shape {nl[key]['shape']} vs {hl[key]['shape']}")
    if problems:
        raise DatasetError(
            f"episode does not fit dataset {dataset!r} ({'; '.join(problems)}); "
            "record into a new dataset name"
        )
