"""``vla-studio store check``: compare the index with the files; ``--repair`` fixes what it can.

Without repair nothing is written (the index is opened read-only) except ``.last-check.json``: after a
check that found nothing wrong it records when that check started, and the next check (unless
``full=True``; the CLI's default is incremental, ``--full`` checks all) skips the episodes whose index
row and files have not changed since. Repair never deletes an episode's
files, except to finish a ``delete_episode`` that a crash interrupted (row status or meta.json
``deleting``): a missing folder marks its row ``discarded``; a cut video or low-dim file is salvaged (status
``recovered``, fewer ticks); a folder missing from the index is imported from its ``meta.json``; an
unreadable index is moved aside (``index.sqlite.corrupt-<time>``) and rebuilt from the folders.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import numpy as np
from sqlalchemy import select

from recorder.errors import StoreError
from recorder.fsutil import JsonObjectError, load_json_object, write_json_atomic
from recorder.paths import resolve_home
from recorder.store import models as m
from recorder.store.backups import Backup, list_backups
from recorder.store.faults import MIN_FREE_BYTES, DiskReadError, IndexCorruptError, require_free
from recorder.store.lowdim import FILENAME as LOWDIM_FILE
from recorder.store.lowdim import read_lowdim
from recorder.store.recovery import usable_ticks
from recorder.store.store import (
    EPISODES_DIR,
    INDEX_FILE,
    RUNS_DIR,
    Store,
    _has_store_data,
    _refuse_foreign,
    _rel,
    _stream_rows,
    check_schema_version,
    make_engine,
    probe_index,
    remove_episode_folder,
    sql_errors,
    validate_root,
)
from recorder.store.types import DELETING, CameraSpec, LowdimSpec
from recorder.store.video import scan_video
from recorder.store.writer import LOCK_FILE, META_FILE, release_lock, try_lock


@dataclass
class Issue:
    kind: str  # index-missing, index-corrupt, schema-old, crashed, folder-missing, meta-missing,
    # lowdim-truncated, video-truncated, video-missing, orphan-folder, live, deleting
    message: str
    episode_id: int | None = None
    path: Path | None = None
    fixable: bool = True
    fixed: bool = False


@dataclass
class CheckReport:
    root: Path
    episodes_checked: int = 0
    episodes_skipped: int = 0  # unchanged since the last clean check (incremental check)
    since: datetime | None = None  # start of that last clean check; None: everything was checked
    issues: list[Issue] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not any(i.fixable and not i.fixed for i in self.issues if i.kind not in NOTES)

    @property
    def problems(self) -> list[Issue]:
        return [i for i in self.issues if i.kind not in NOTES]


#: issue kinds that are notes, not problems
NOTES = ("live", "schema-old", "backup")


def _episode_problems(
    folder: Path, ep_id: int | None, num_frames: int, fps: float, cameras: list[str]
) -> list[Issue]:
    out: list[Issue] = []
    if not folder.is_dir():
        return [Issue("folder-missing", f"episode {ep_id}: folder {folder} is missing", ep_id, folder)]
    if not (folder / META_FILE).is_file():
        out.append(
            Issue(
                "meta-missing", f"episode {ep_id}: {folder / META_FILE} is missing", ep_id, folder / META_FILE
            )
        )
    else:
        try:
            read_meta(folder)
        except StoreError as err:
            out.append(Issue("meta-bad", f"episode {ep_id}: {err}; repair rewrites it from the index", ep_id,
                             folder / META_FILE))
    try:
        data, _ = read_lowdim(folder / LOWDIM_FILE)
    except DiskReadError:
        raise  # the disk failed, not the file: nothing to repair
    except StoreError as err:
        return out + [Issue("lowdim-truncated", f"episode {ep_id}: {err}", ep_id, folder / LOWDIM_FILE)]
    n_rows = len(data["index"])
    if n_rows < num_frames:
        out.append(
            Issue(
                "lowdim-truncated",
                f"episode {ep_id}: {folder / LOWDIM_FILE} has {n_rows} of {num_frames} rows",
                ep_id,
                folder / LOWDIM_FILE,
            )
        )
    n = min(n_rows, num_frames)
    for cam in cameras:
        path = folder / "video" / f"{cam}.mp4"
        try:
            idx = scan_video(path, fps)
        except DiskReadError:
            raise
        except StoreError as err:
            out.append(Issue("video-missing", f"episode {ep_id}: {err}", ep_id, path))
            continue
        good = usable_ticks(n, data.get(f"dropped.{cam}", np.zeros(n, bool)), idx)
        if good < n or idx.truncated:
            out.append(
                Issue(
                    "video-truncated",
                    f"episode {ep_id}: {path} is truncated (usable ticks {good} of {num_frames})",
                    ep_id,
                    path,
                )
            )
    return out


LAST_CHECK_FILE = ".last-check.json"


def _last_clean_check(root: Path) -> float | None:
    try:
        return float(json.loads((root / LAST_CHECK_FILE).read_text())["started"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _unchanged_since(folder: Path, cameras: list[str], since: float) -> bool:
    """True when the episode's folder and every file the check reads are older than ``since``."""
    paths = [folder, folder / META_FILE, folder / LOWDIM_FILE]
    if cameras:
        paths.append(folder / "video")
        paths += [folder / "video" / f"{c}.mp4" for c in cameras]
    for p in paths:
        try:
            st = os.stat(p)
        except OSError:
            return False
        if max(st.st_mtime, st.st_ctime) >= since:
            return False
    return True


def check_store(
    root: str | os.PathLike[str] | None, repair: bool = False, reindex_runs=None, full: bool = True
) -> CheckReport:
    """Compare the index with the files; ``repair`` fixes what it can.

    ``full=False`` (the CLI's default): skip the episodes whose row and files are unchanged since the
    last check that found nothing wrong (``.last-check.json``).

    ``reindex_runs(store) -> list[run_id]`` (the fine-tune side's ``finetune.run_config.reindex_runs``) puts
    ``runs/`` folders the index lacks back in; a repair calls it before re-importing episode folders so that
    rollout episodes find their checkpoints again."""
    started = time.time()
    root = resolve_home(root).absolute()
    index = root / INDEX_FILE
    report = CheckReport(root)
    since = None if full or repair else _last_clean_check(root)
    if since is not None:
        report.since = datetime.fromtimestamp(since).astimezone()
    try:
        validate_root(root)
    except StoreError:
        if not _has_store_data(root) or index.exists():
            raise
        report.issues.append(
            Issue(
                "index-missing",
                f"{index} is missing; repair rebuilds it from {root / EPISODES_DIR} and {root / RUNS_DIR}",
                path=index,
            )
        )
    if not root.is_dir():
        raise StoreError(f"{root} does not exist; pass the store folder with --home")
    known_uuids: set[str] = set()
    known_runs: set[str] = set()
    if index.is_file():
        with sql_errors(root, f"'vla-studio --home {root} store check' again"):
            _check_index(root, index, report, known_uuids, known_runs, since)
    eps_dir = root / EPISODES_DIR
    if eps_dir.is_dir() and not any(i.kind == "index-corrupt" for i in report.issues):
        for folder in sorted(eps_dir.iterdir()):
            if folder.is_dir() and folder.name not in known_uuids:
                if _meta_status(folder) == DELETING:
                    report.issues.append(_leftover_issue(folder))
                    continue
                try:
                    read_meta(folder)
                    why = ""
                except StoreError as err:
                    why = f" and cannot be rebuilt: {err}"
                report.issues.append(
                    Issue("orphan-folder", f"{folder} is not in the index{why}", path=folder, fixable=not why)
                )
    if eps_dir.is_dir():
        report.issues.extend(_stray_files(eps_dir))
    if not any(i.kind == "index-corrupt" for i in report.issues):
        report.issues.extend(_missing_runs(root, index, known_runs))
    for b in list_backups(root):
        report.issues.append(
            Issue(
                "backup",
                f"backup {b['name']}: episode {b.get('episode_id')} as it was before a repair "
                f"({b.get('num_frames')} ticks, {b.get('status')}"
                + (f"; originals of {', '.join(b['files'])}" if b.get("files") else "")
                + f"); undo with "
                f"'vla-studio --home {root} store restore {b['name']}'",
                b.get("episode_id"),
                Path(b["path"]),
                fixable=False,
            )
        )
    if repair and report.problems:
        require_free(root, _repair_needs(root, report), f"'vla-studio --home {root} store check --repair' again")
        _repair(root, report, reindex_runs)
    if all(i.fixed or i.kind == "backup" for i in report.problems):  # a clean check: the next one can skip
        try:
            write_json_atomic(root / LAST_CHECK_FILE, {"started": started, "episodes": report.episodes_checked
                                                       + report.episodes_skipped})
        except OSError:
            pass  # a read-only store: the next check is a full one
    return report


#: left behind by a writer or a repair that was interrupted (the real file is written, then renamed over)
_STRAY_SUFFIXES = (META_FILE + ".tmp", ".arrows.tmp", ".salvage.mp4")


def _mark_runs(store: Store, report: CheckReport, added: list[str]) -> None:
    listed = {i.path.name: i for i in report.issues if i.kind == "run-missing"}
    for run_id in added:
        run = store.run(run_id)
        issue = listed.get(run_id)
        if issue is None:
            issue = Issue("run-missing", f"fine-tune run {run_id} ({run.path}) was not in the index", path=run.path)
            report.issues.append(issue)
        issue.fixed = True
        issue.message += f" -> re-indexed ({run.status}, {run.num_checkpoints} checkpoints)"


def _run_ids(engine) -> set[str]:
    from sqlalchemy.orm import Session

    with Session(engine) as s:
        return set(s.scalars(select(m.FinetuneRun.run_id)))


def _missing_runs(root: Path, index: Path, known: set[str]) -> list[Issue]:
    """Run folders (``runs/<id>/config.json``) the index does not list; the fine-tune side re-indexes them."""
    runs = root / RUNS_DIR
    if not runs.is_dir():
        return []
    return [
        Issue("run-missing", f"fine-tune run {p.name} ({p}) is not in {index}; repair re-indexes it and its "
                             "checkpoints", path=p)
        for p in sorted(runs.iterdir())
        if p.is_dir() and p.name not in known and (p / "config.json").is_file()
    ]


def _stray_files(eps_dir: Path) -> list[Issue]:
    out = []
    for folder in sorted(eps_dir.iterdir()):
        if not folder.is_dir():
            continue
        if (folder / LOCK_FILE).exists():
            fd = try_lock(folder)
            if fd is None:
                continue  # a live writer: its temp files are about to be renamed
            release_lock(fd)
        for p in [*folder.iterdir(), *((folder / "video").iterdir() if (folder / "video").is_dir() else [])]:
            if p.is_file() and p.name.endswith(_STRAY_SUFFIXES):
                out.append(Issue("stray-temp", f"{p} is left over from an interrupted write; repair removes it",
                                 path=p))
    return out


def _repair_needs(root: Path, report: CheckReport) -> int:
    """Bytes a repair may write: the index (rebuilt or migrated) and a copy of every file it rewrites."""
    need = MIN_FREE_BYTES
    index = root / INDEX_FILE
    if index.is_file():
        need += index.stat().st_size
    for issue in report.issues:
        if issue.kind in ("video-truncated", "lowdim-truncated") and issue.path is not None and issue.path.is_file():
            need += issue.path.stat().st_size
    return need


def _check_index(root: Path, index: Path, report: CheckReport, known_uuids: set[str], known_runs: set[str],
                 since: float | None = None) -> None:
    engine = make_engine(index, read_only=True)
    try:
        try:
            uv, rev, tables = probe_index(index)
        except IndexCorruptError as err:  # a full disk, a lock, an I/O error: raised as they are
            report.issues.append(Issue("index-corrupt", str(err), path=index))
            return
        _refuse_foreign(index, uv, rev, tables)
        if check_schema_version(index, uv, rev):
            report.issues.append(
                Issue("schema-old", f"{index} has an older schema; it is migrated on the next open", path=index)
            )
        if rev is not None:
            _check_rows(engine, root, report, known_uuids, since)
            known_runs |= _run_ids(engine)
    finally:
        engine.dispose()


def _meta_status(folder: Path) -> str | None:
    try:
        return json.loads((folder / META_FILE).read_text()).get("status")
    except (OSError, ValueError, AttributeError):
        return None


def _leftover_issue(folder: Path) -> Issue:
    return Issue(
        "deleting", f"{folder} is left over from an interrupted delete; repair removes it", path=folder
    )


def _check_rows(engine, root: Path, report: CheckReport, known: set[str], since: float | None = None) -> None:
    from sqlalchemy.orm import Session, selectinload

    with Session(engine) as s:
        eps = s.scalars(
            select(m.Episode).options(selectinload(m.Episode.streams)).order_by(m.Episode.id)
        ).all()
        for ep in eps:
            known.add(ep.uuid)
            folder = root / EPISODES_DIR / ep.uuid
            if ep.status == "discarded":
                continue
            if ep.status == DELETING:
                report.issues.append(
                    Issue(
                        "deleting",
                        f"episode {ep.id} was being deleted when it was interrupted; repair finishes "
                        f"deleting {folder} and its index row",
                        ep.id,
                        folder,
                    )
                )
                continue
            report.episodes_checked += 1
            if ep.status == "recording":
                fd = try_lock(folder) if folder.is_dir() else None
                if folder.is_dir() and fd is None:
                    report.issues.append(
                        Issue("live", f"episode {ep.id} is being recorded now", ep.id, folder, fixable=False)
                    )
                else:
                    release_lock(fd)
                    report.issues.append(
                        Issue(
                            "crashed",
                            f"episode {ep.id} was left 'recording' by a crash; repair salvages it",
                            ep.id,
                            folder,
                        )
                    )
                continue
            cams = [st.name for st in ep.streams if st.kind == "video"]
            if since is not None and ep.updated_at.timestamp() < since and _unchanged_since(folder, cams, since):
                report.episodes_checked -= 1
                report.episodes_skipped += 1
                continue
            report.issues.extend(_episode_problems(folder, ep.id, ep.num_frames, ep.fps, cams))


def _move_aside(index: Path) -> Path:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    dest = index.with_name(f"{index.name}.corrupt-{stamp}")
    for suffix in ("", "-wal", "-shm"):
        p = Path(str(index) + suffix)
        if p.exists():
            os.replace(p, Path(str(dest) + suffix))
    return dest


def _repair(root: Path, report: CheckReport, reindex_runs=None) -> None:
    index = root / INDEX_FILE
    for issue in report.issues:
        if issue.kind == "index-corrupt":
            dest = _move_aside(index)
            issue.fixed = True
            issue.message += f" -> moved to {dest.name}, rebuilt from the episode folders"
    rebuild = any(i.kind in ("index-corrupt", "index-missing") for i in report.issues)
    store = Store._open_unchecked(root) if rebuild else Store.open(root)
    try:
        if reindex_runs is not None:
            _mark_runs(store, report, reindex_runs(store))
        salvaged = {info.id for info in store.recovered}
        known = {e.uuid for e in store.episodes(status=None)}
        salvaged_now: set[int] = set()
        for issue in report.issues:
            if issue.kind == "crashed" and issue.episode_id in salvaged:
                issue.fixed = True
            elif issue.kind == "deleting":
                if issue.episode_id is not None:
                    store.delete_episode(issue.episode_id)
                else:
                    remove_episode_folder(issue.path)
                issue.fixed = True
            elif issue.kind == "folder-missing":
                store._set_discarded(issue.episode_id, note="folder missing (store check --repair)")
                issue.fixed = True
            elif issue.kind in ("lowdim-truncated", "video-truncated", "video-missing"):
                if issue.episode_id in salvaged_now:
                    issue.fixed = True
                    continue
                new = store._salvage(issue.episode_id)
                issue.fixed = new is not None
                if new is not None:
                    salvaged_now.add(issue.episode_id)
                    issue.message += f" -> {new.status}, {new.num_frames} ticks"
            elif issue.kind in ("meta-missing", "meta-bad"):
                info = store.episode(issue.episode_id)
                if issue.kind == "meta-bad":
                    backup = Backup(root, info.path, episode_id=info.id, num_frames=info.num_frames,
                                    status=info.status, reason=f"unreadable meta.json of episode {info.id}")
                    backup.keep(info.path / META_FILE)
                meta = _meta_from_info(info)
                if info.checkpoint_id is not None:
                    meta["checkpoint_path"] = _rel(store.checkpoint(info.checkpoint_id).path, root)
                write_json_atomic(info.path / META_FILE, meta)
                issue.fixed = True
            elif issue.kind == "stray-temp":
                issue.path.unlink(missing_ok=True)
                issue.fixed = True
        orphans = [i for i in report.issues if i.kind == "orphan-folder" and i.fixable]
        if rebuild:
            eps_dir = root / EPISODES_DIR
            listed = {i.path for i in orphans}
            leftovers = [
                f
                for f in sorted(eps_dir.iterdir())
                if f.is_dir() and f.name not in known and f not in listed and _meta_status(f) == DELETING
            ]
            for f in leftovers:
                remove_episode_folder(f)
                issue = _leftover_issue(f)
                issue.fixed = True
                report.issues.append(issue)
            orphans += [
                Issue("orphan-folder", f"{f} rebuilt into the index", path=f)
                for f in sorted(eps_dir.iterdir())
                if f.is_dir() and f.name not in known and (f / META_FILE).is_file() and f not in listed
            ]
        seen = set()
        for issue in orphans:
            if issue.path.name in seen or issue.path.name in known:
                issue.fixed = issue.path.name in known
                continue
            seen.add(issue.path.name)
            info = import_folder(store, issue.path)
            if info is not None:
                issue.fixed = True
                issue.message += f" -> imported as episode {info.id} ({info.status}, {info.num_frames} ticks)"
        if rebuild:
            for i in report.issues:
                if i.kind == "index-missing":
                    i.fixed = True
            report.issues.extend(i for i in orphans if i not in report.issues)
    finally:
        store.close()


def _meta_from_info(info) -> dict:
    return {
        "format": 1,
        "uuid": info.uuid,
        "dataset": info.dataset,
        "task": info.task,
        "fps": info.fps,
        "start_time": info.start_time.isoformat(),
        "source": info.source,
        "rig": info.rig,
        "cameras": {c: sp.to_dict() for c, sp in info.cameras.items()},
        "lowdim": {k: v.to_dict() for k, v in info.lowdim.items()},
        "checkpoint_id": info.checkpoint_id,
        "status": info.status,
        "tags": list(info.tags),
        "num_frames": info.num_frames,
        "success": info.success,
        "notes": info.notes,
        "dropped": info.dropped,
        "segments": list(info.segments),
        "status_before_trash": info.status_before_trash,
    }


def read_meta(folder: Path) -> tuple[dict, dict[str, CameraSpec], dict[str, LowdimSpec], float]:
    """meta.json of an episode folder with what a rebuild needs from it; StoreError saying what is wrong."""
    path = folder / META_FILE
    try:
        meta = load_json_object(path)
    except JsonObjectError as err:
        if err.problem == "missing":
            raise StoreError(f"{path} is missing") from None
        if err.problem == "unreadable":
            raise StoreError(f"{path} cannot be read ({err.cause.strerror or err.cause})") from None
        if err.problem == "not-object":
            raise StoreError(f"{path} is not an episode's meta.json (a {err.found}, not an object)") from None
        raise StoreError(f"{path} is not valid JSON ({str(err.cause or err).splitlines()[0][:80]})") from None
    try:
        cams = {str(c): CameraSpec.from_dict(d) for c, d in meta["cameras"].items()}
        low = {str(k): LowdimSpec.coerce(v) for k, v in meta["lowdim"].items()}
        fps = float(meta["fps"])
        if not fps > 0 or fps != fps or fps == float("inf"):
            raise ValueError(f"fps {meta['fps']!r}")
    except KeyError as err:
        raise StoreError(f"{path} lacks {err} (needed to rebuild the episode's index row)") from None
    except (AttributeError, TypeError, ValueError) as err:
        raise StoreError(f"{path} is not an episode's meta.json ({str(err)[:80]})") from None
    return meta, cams, low, fps


def import_folder(store: Store, folder: Path):
    """Add an episode folder that the index does not know, from its meta.json, then salvage-check it."""
    try:
        meta, cams, low, fps = read_meta(folder)
    except StoreError:
        return None
    try:
        start = datetime.fromisoformat(meta.get("start_time"))
    except (TypeError, ValueError):
        start = datetime.fromtimestamp(folder.stat().st_mtime).astimezone()
    with store._write() as s:
        ds_name = str(meta.get("dataset") or "imported")
        ds = s.scalar(select(m.Dataset).where(m.Dataset.name == ds_name))
        if ds is None:
            ds = m.Dataset(
                name=ds_name,
                version=0,
                features={
                    "fps": fps,
                    "cameras": {
                        c: {"shape": [sp.height, sp.width, 3], "dtype": "uint8", "codec": sp.codec}
                        for c, sp in cams.items()
                    },
                    "lowdim": {k: v.to_dict() for k, v in low.items()},
                },
            )
            s.add(ds)
        ck = meta.get("checkpoint_id")
        if meta.get("checkpoint_path"):  # ids change when an index is rebuilt; the folder does not
            ck = s.scalar(select(m.Checkpoint.id).where(m.Checkpoint.path == str(meta["checkpoint_path"])))
        elif ck is not None and s.get(m.Checkpoint, ck) is None:
            ck = None
        ep = m.Episode(
            uuid=folder.name,
            dataset=ds,
            task=str(meta.get("task", "")),
            rig=meta.get("rig") or {},
            fps=fps,
            start_time=start,
            duration_s=0.0,
            num_frames=0,
            status="recording",
            source=str(meta.get("source", "teleop")),
            success=meta.get("success"),
            notes=str(meta.get("notes") or ""),
            dropped={c: 0 for c in cams},
            segments=list(meta.get("segments") or []),
            checkpoint_id=ck,
        )
        ep.streams = _stream_rows(cams, low)
        ep.tag_rows = [m.EpisodeTag(tag=t) for t in sorted(set(meta.get("tags") or []))]
        s.add(ep)
        s.flush()
        eid = ep.id
    trashed = meta.get("status") == "trashed"
    complete = (meta.get("status_before_trash") if trashed else meta.get("status")) == "complete"
    info = store._salvage(eid, status="recovered")
    if (
        info is not None
        and complete
        and info.status == "recovered"
        and info.num_frames == meta.get("num_frames")
    ):
        info = store.update_episode(eid, status="complete")
    if info is not None and trashed and info.status in ("complete", "recovered"):
        info = store.update_episode(eid, status="trashed")  # back in the trash, remembering its status
    return info


def restore_backup(root: str | os.PathLike[str] | None, name: str):
    """Undo a repair: put the originals kept in backup ``name`` back and the episode's index row as it was."""
    from recorder.store.backups import find_backup, put_back

    root = resolve_home(root).absolute()
    backup = find_backup(root, name)
    with Store.open(root, recover=False) as store:
        info = store.episode(str(backup["uuid"]))
        put_back(backup, info.path)
        with store._write() as s:
            ep = s.get(m.Episode, info.id)
            if backup.get("num_frames"):
                ep.num_frames = int(backup["num_frames"])
                ep.duration_s = ep.num_frames / ep.fps
                for st in ep.streams:
                    st.num_frames = ep.num_frames
            if backup.get("status") in ("complete", "recovered"):
                ep.status = backup["status"]
            ep.dataset.version += 1
        info = store.episode(info.id)
        store._update_meta(info)
        return info
