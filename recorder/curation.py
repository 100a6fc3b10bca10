"""Curation on top of the store's public API: edit labels, trash/restore/purge, train/val split, merge.

Everything here goes through ``recorder.store.Store`` (``episodes``, ``update_episode``, ``restore_episode``,
``delete_episode``, ``open_episode``, ``begin_episode``); no file is touched here directly.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence

import numpy as np

from recorder.errors import DatasetError
from recorder.store.lowdim import is_bookkeeping

SPLIT_PREFIX = "split:"
TRAIN_TAG = "split:train"
VAL_TAG = "split:val"
LIVE = ("complete", "recovered")


def visible_tags(tags: Iterable[str]) -> list[str]:
    """Tags a person sees (without bookkeeping tags: ``_was:*`` of stores before schema 0002)."""
    return [t for t in tags if not t.startswith("_was:")]


def parse_tags(text: str | Iterable[str] | None) -> list[str] | None:
    """'a, b ,c' -> ['a', 'b', 'c'] (duplicates removed, order kept); None stays None."""
    if text is None:
        return None
    items = text.split(",") if isinstance(text, str) else list(text)
    out: list[str] = []
    for t in (s.strip() for s in items):
        if t and t not in out:
            out.append(t)
    return out


def _episode(store, episode_id: int):
    return store.episode(int(episode_id))


# --------------------------------------------------------------------------------------------- edits
def edit_episode(store, episode_id: int, *, task: str | None = None, success: bool | None | str = "keep",
                 tags: Iterable[str] | None = None, notes: str | None = None):
    """Change labels of one episode; arguments left at their default are kept. Returns the new EpisodeInfo.

    ``success`` takes True/False/None (None clears the label); the default "keep" leaves it alone.
    """
    kwargs: dict = {}
    if task is not None:
        task = task.strip()
        if not task:
            raise DatasetError(f"episode {episode_id}: the task text cannot be empty")
        kwargs["task"] = task
    if success != "keep":
        kwargs["success"] = success
    if tags is not None:
        kwargs["tags"] = list(dict.fromkeys(tags))
    if notes is not None:
        kwargs["notes"] = notes
    if kwargs:
        store.update_episode(int(episode_id), **kwargs)
    return _episode(store, episode_id)


def add_tags(store, episode_ids: Iterable[int], tags: Iterable[str]) -> None:
    for eid in episode_ids:
        info = _episode(store, eid)
        store.update_episode(int(eid), tags=list(dict.fromkeys(list(info.tags) + list(tags))))


def remove_tags(store, episode_ids: Iterable[int], tags: Iterable[str]) -> None:
    drop = set(tags)
    for eid in episode_ids:
        info = _episode(store, eid)
        store.update_episode(int(eid), tags=[t for t in info.tags if t not in drop])


def set_success(store, episode_ids: Iterable[int], success: bool | None) -> None:
    for eid in episode_ids:
        store.update_episode(int(eid), success=success)


# --------------------------------------------------------------------------------------------- trash
def trash(store, episode_ids: Iterable[int]) -> list[int]:
    """Move episodes to the trash (hidden from lists and training, files kept). Returns the ids trashed."""
    done = []
    for eid in episode_ids:
        info = _episode(store, eid)
        if info.status == "trashed":
            continue
        if info.status not in LIVE:
            raise DatasetError(f"episode {eid} is {info.status}: only complete or recovered episodes can be trashed")
        store.update_episode(int(eid), status="trashed")  # the store remembers the status it had
        done.append(int(eid))
    return done


def restore(store, episode_ids: Iterable[int]) -> list[int]:
    """Take episodes out of the trash, back to the status they had."""
    done = []
    for eid in episode_ids:
        info = _episode(store, eid)
        if info.status != "trashed":
            raise DatasetError(f"episode {eid} is not in the trash (status {info.status})")
        store.restore_episode(int(eid))
        done.append(int(eid))
    return done


def purge(store, episode_ids: Iterable[int]) -> list[int]:
    """Delete episodes for good: their files and their index rows (``Store.delete_episode``). Cannot be undone."""
    done = []
    for eid in episode_ids:
        info = _episode(store, eid)
        if info.status == "recording":
            raise DatasetError(f"episode {eid} is still recording: stop it before purging")
        store.delete_episode(int(eid))
        done.append(int(eid))
    return done


# --------------------------------------------------------------------------------------------- split
def split(store, dataset: str, val: float = 0.1, seed: int = 0) -> dict[str, list[int]]:
    """Tag each live episode of ``dataset`` ``split:train`` or ``split:val`` (by episode, seeded).

    Returns {"train": ids, "val": ids}. Re-running with the same seed gives the same split.
    """
    if not 0.0 <= val < 1.0:
        raise DatasetError(f"--val must be in [0, 1), not {val}")
    eps = sorted(store.episodes(dataset=dataset), key=lambda e: e.id)
    if not eps:
        raise DatasetError(f"dataset {dataset!r} has no episodes to split")
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(eps))
    n_val = int(round(val * len(eps)))
    if val > 0 and n_val == 0 and len(eps) >= 2:
        n_val = 1
    val_set = {eps[i].id for i in order[:n_val]}
    out: dict[str, list[int]] = {"train": [], "val": []}
    for e in eps:
        part = "val" if e.id in val_set else "train"
        tags = [t for t in e.tags if not t.startswith(SPLIT_PREFIX)] + [SPLIT_PREFIX + part]
        store.update_episode(e.id, tags=tags)
        out[part].append(e.id)
    return out


# --------------------------------------------------------------------------------------------- merge
def _signature(info) -> dict:
    return {
        "fps": float(info.fps),
        "cameras": {name: (int(s.width), int(s.height)) for name, s in info.cameras.items()},
        "lowdim": {k: tuple(s.shape) for k, s in (info.lowdim or {}).items() if not is_bookkeeping(k)},
    }


def describe_difference(a_name: str, a: dict, b_name: str, b: dict) -> str | None:
    """One line naming the first feature that differs between two signatures; None when equal."""
    if a["fps"] != b["fps"]:
        return f"fps {a['fps']:g} in {a_name}, {b['fps']:g} in {b_name}"
    for cam in sorted(set(a["cameras"]) | set(b["cameras"])):
        if cam not in b["cameras"]:
            return f"camera {cam!r} only in {a_name}"
        if cam not in a["cameras"]:
            return f"camera {cam!r} only in {b_name}"
        if a["cameras"][cam] != b["cameras"][cam]:
            wa, ha = a["cameras"][cam]
            wb, hb = b["cameras"][cam]
            return f"camera {cam!r} is {wa}x{ha} in {a_name}, {wb}x{hb} in {b_name}"
    for key in sorted(set(a["lowdim"]) | set(b["lowdim"])):
        if key not in b["lowdim"]:
            return f"stream {key!r} only in {a_name}"
        if key not in a["lowdim"]:
            return f"stream {key!r} only in {b_name}"
        if a["lowdim"][key] != b["lowdim"][key]:
            return f"stream {key!r} has shape {a['lowdim'][key]} in {a_name}, {b['lowdim'][key]} in {b_name}"
    return None


def check_same_features(named_episodes: dict[str, Sequence]) -> None:
    """DatasetError naming what differs when the datasets' episodes do not share features."""
    ref_name, ref = None, None
    for name, eps in named_episodes.items():
        for e in eps:
            sig = _signature(e)
            if ref is None:
                ref_name, ref = f"{name} (episode {e.id})", sig
                continue
            diff = describe_difference(ref_name, ref, f"{name} (episode {e.id})", sig)
            if diff:
                raise DatasetError(f"cannot merge: {diff}; merge only datasets with the same features")


def copy_episode(store, info, dataset: str, progress: Callable[[], None] | None = None):
    """Write a copy of one episode into ``dataset`` (video re-encoded, labels and segments kept)."""
    from recorder.store.types import CameraSpec

    reader = store.open_episode(info.id)
    try:
        lowdim = reader.lowdim()
        n = int(reader.num_frames)
        cams = {name: CameraSpec(width=s.width, height=s.height, codec=s.codec, gop=s.gop,
                                 queue_size=max(64, s.queue_size))
                for name, s in reader.cameras.items()}
        values = {k: np.asarray(v) for k, v in lowdim.items() if not is_bookkeeping(k)}
        shapes = {k: tuple(v.shape[1:]) or (1,) for k, v in values.items()}
        w = store.begin_episode(dataset=dataset, task=info.task, fps=info.fps, rig=dict(info.rig or {}),
                                source=info.source, cameras=cams, lowdim=shapes,
                                checkpoint_id=info.checkpoint_id)
        try:
            t = np.asarray(lowdim.get("t", np.arange(n) / info.fps), dtype=np.float64)
            for i in range(n):
                frames = {cam: reader.frame(cam, i) for cam in cams}
                ts = {cam: float(lowdim.get(f"ts.{cam}", t)[i]) for cam in cams}
                _wait_for_room(w)
                w.add_tick(t=float(t[i]), frames=frames, timestamps=ts,
                           values={k: v[i].reshape(shapes[k]) for k, v in values.items()},
                           stale={cam: bool(lowdim[f"stale.{cam}"][i]) for cam in cams})
                if progress is not None:
                    progress()
            for seg in info.segments or ():
                seg = dict(seg)
                try:
                    kind = seg.pop("kind")
                    start = int(seg.pop("start_tick", seg.pop("start", 0)))
                    end = int(seg.pop("end_tick", seg.pop("end", n - 1)))
                except (KeyError, TypeError, ValueError):
                    continue
                w.mark_segment(kind, start, end, **seg)
            new = w.finish(success=info.success, notes=info.notes, tags=list(info.tags))
        except BaseException:
            w.discard()
            raise
    finally:
        reader.close()
    return new


def _wait_for_room(writer, limit: int = 16, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        depth = getattr(writer.stats, "queue_depth", {}) or {}
        if not depth or max(depth.values()) < limit or time.monotonic() > deadline:
            return
        time.sleep(0.002)


def merge(store, sources: Sequence[str], into: str, *, copy: bool = False,
          progress: Callable[[int, int], None] | None = None) -> list:
    """Bring every episode of the ``sources`` datasets into dataset ``into``.

    By default episodes are moved (index change only: fast and lossless; the sources end up empty).
    ``copy=True`` writes copies instead (video re-encoded) and leaves the sources as they are.
    Raises DatasetError naming the difference when the datasets do not share cameras, streams and fps.
    """
    sources = list(dict.fromkeys(sources))
    if into in sources:
        raise DatasetError(f"merge target {into!r} is also a source: pick a new dataset name for --into")
    known = {d.name for d in store.datasets()}
    named = {}
    for name in sources:
        if name not in known:
            raise DatasetError(f"no dataset named {name!r}: see 'vla-studio datasets list'")
        eps = sorted(store.episodes(dataset=name, status=None), key=lambda e: e.id)
        eps = [e for e in eps if e.status not in ("recording", "discarded")]
        if not eps:
            raise DatasetError(f"dataset {name!r} has no episodes to merge")
        named[name] = eps
    existing = store.episodes(dataset=into) if into in known else []
    check_same_features({into: existing, **named} if existing else named)
    total = sum(e.num_frames for eps in named.values() for e in eps)
    done = 0

    def tick():
        nonlocal done
        done += 1
        if progress is not None and done % 32 == 0:
            progress(done, total)

    out = []
    for eps in named.values():
        for e in eps:
            if copy:
                if e.status == "trashed":
                    continue
                out.append(copy_episode(store, e, into, progress=tick))
            else:
                out.append(store.update_episode(e.id, dataset=into))
                done += e.num_frames
    if progress is not None:
        progress(total, total)
    return out


# --------------------------------------------------------------------------------------------- stats
def stats_table(store, dataset: str) -> list[tuple[str, int, dict[str, float]]]:
    """Rows (stream, dim, {min,max,mean,std,q01,q99}) from the store's cached dataset statistics."""
    stats = store.dataset_stats(dataset)
    rows = []
    for key in sorted(stats):
        st = stats[key]
        dims = len(np.atleast_1d(np.asarray(st["mean"])))
        for d in range(dims):
            rows.append((key, d, {k: float(np.atleast_1d(np.asarray(st[k]))[d])
                                  for k in ("min", "max", "mean", "std", "q01", "q99") if k in st}))
    return rows
