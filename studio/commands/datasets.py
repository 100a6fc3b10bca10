"""`vla-studio datasets`: list, show, export/import LeRobot folders, stats, split, merge, trash, edit."""

from __future__ import annotations

import argparse
from pathlib import Path

from recorder.errors import DatasetError
from recorder.interop.lerobot import DEFAULT_GOP, SIM_ROBOT_TYPE

SHOW_LIMIT = 500  # `datasets show` prints this many rows unless told: a lab dataset has tens of thousands


def register(sub) -> None:
    p = sub.add_parser("datasets", help="browse and curate datasets; LeRobot import/export")
    dsub = p.add_subparsers(dest="datasets_command", metavar="ACTION")
    p.set_defaults(func=lambda args: _usage(p))

    q = dsub.add_parser("list", help="datasets with episode counts")
    q.set_defaults(func=_list)

    q = dsub.add_parser("show", help="the episodes of one dataset")
    q.add_argument("name")
    _filters(q)
    q.add_argument("--trashed", action="store_true", help="list the trashed episodes instead")
    q.add_argument("--limit", type=int, default=SHOW_LIMIT, metavar="N",
                   help=f"print the first N matching episodes (default {SHOW_LIMIT}; 0: all of them)")
    q.set_defaults(func=_show)

    q = dsub.add_parser(
        "export", help="export to a LeRobotDataset v3.0 folder",
        description="Export a dataset to a LeRobotDataset v3.0 folder that lerobot loads and merges "
                    "(aggregate_datasets) with its own recordings. By default only successful and unlabelled "
                    "episodes are exported; each episode's label goes into the 'success' column of "
                    "meta/episodes.")
    q.add_argument("name")
    q.add_argument("--out", required=True, type=Path, help="folder to create")
    q.add_argument("--codec", choices=("h264", "av1"), default="h264",
                   help="video codec (default h264; av1 is lerobot's own default: use it to merge with "
                        "lerobot-recorded datasets)")
    q.add_argument("--gop", type=int, default=None, metavar="N",
                   help=f"frames between keyframes (default {DEFAULT_GOP}, lerobot's, for fast random access in "
                        "training; larger makes smaller files that seek slower)")
    q.add_argument("--robot-type", default=None,
                   help=f"robot_type written to meta/info.json (default: the rig's robot type; the simulated "
                        f"arm is SO-101-shaped and is exported as {SIM_ROBOT_TYPE!r} so it merges with real "
                        "SO-101 data)")
    q.add_argument("--include-failed", action="store_true",
                   help="export failed episodes too (default: successful and unlabelled ones)")
    q.add_argument("--stale-column", action="store_true",
                   help="also write each camera's per-frame stale flag as a 0/1 column stale.<camera> (1: the "
                        "video holds an older frame than the row's moment); lerobot's own recordings lack it")
    q.add_argument("--force", action="store_true", help="replace --out if it exists")
    _filters(q)
    q.set_defaults(func=_export)

    q = dsub.add_parser("import", help="import a LeRobot v3.0 or v2.1 folder")
    q.add_argument("dir", type=Path)
    q.add_argument("--dataset", default=None, help="dataset to import into (default: the folder name)")
    q.add_argument("--source", choices=("teleop", "policy", "scripted"), default="teleop")
    q.set_defaults(func=_import)

    q = dsub.add_parser("stats", help="per-dimension min/max/mean/std/q01/q99")
    q.add_argument("name")
    q.set_defaults(func=_stats)

    q = dsub.add_parser("split", help="tag episodes split:train / split:val")
    q.add_argument("name")
    q.add_argument("--val", type=float, default=0.1, help="fraction of episodes for validation")
    q.add_argument("--seed", type=int, default=0)
    q.set_defaults(func=_split)

    q = dsub.add_parser("merge", help="move (or --copy) the episodes of several datasets into one")
    q.add_argument("sources", nargs="+")
    q.add_argument("--into", required=True)
    q.add_argument("--copy", action="store_true",
                   help="copy episodes (re-encodes video) and keep the sources; default moves them")
    q.set_defaults(func=_merge)

    for name, helptext in (("trash", "move episodes to the trash"), ("restore", "take episodes out of the trash")):
        q = dsub.add_parser(name, help=helptext)
        q.add_argument("ids", nargs="+", type=int)
        q.set_defaults(func=_trash if name == "trash" else _restore)

    q = dsub.add_parser("purge", help="delete episodes' files for good")
    q.add_argument("ids", nargs="+", type=int)
    q.add_argument("--yes", action="store_true", help="confirm: this cannot be undone")
    q.set_defaults(func=_purge)

    q = dsub.add_parser("edit", help="change task, success, tags or notes of an episode")
    q.add_argument("id", type=int)
    q.add_argument("--task")
    q.add_argument("--success", choices=("yes", "no", "unknown"))
    q.add_argument("--tags", help="comma-separated; replaces the tags")
    q.add_argument("--notes")
    q.set_defaults(func=_edit)


def _usage(p: argparse.ArgumentParser) -> int:
    p.print_help()
    return 1


def _filters(q) -> None:
    q.add_argument("--task", help="exact task text")
    q.add_argument("--success", choices=("yes", "no", "unknown"))
    q.add_argument("--source", choices=("teleop", "policy", "scripted"))
    q.add_argument("--tag", action="append", help="episodes carrying this tag (repeatable: all of them)")


def _open(args):
    from recorder.store import Store

    return Store.open(args.home)


def _success_arg(v: str | None):
    return {"yes": True, "no": False, "unknown": None}.get(v, "any") if v is not None else "any"


def _query(store, name: str, task=None, success="any", source=None, tags=None, status=None):
    """The filters as one SQL query (``recorder.store.query``: every filter is served by an index of the
    store); DatasetError if the dataset does not exist."""
    from recorder.store.query import USABLE, EpisodeQuery

    try:
        store.dataset(name)
    except DatasetError:
        raise DatasetError(f"no dataset named {name!r}: see 'vla-studio datasets list'") from None
    return EpisodeQuery(dataset=name, task=task or None, success=success, source=source or None,
                        tags=tuple(tags or ()), status=USABLE if status is None else tuple(status))


def select(store, name: str, task=None, success="any", source=None, tags=None, status=None) -> list:
    """Episodes of dataset ``name`` matching the filters, by id (DatasetError if the dataset does not exist)."""
    return store.episodes(query=_query(store, name, task, success, source, tags, status))


def _fmt_success(v) -> str:
    return {True: "yes", False: "no", None: "-"}[v]


def _list(args) -> int:
    store = _open(args)
    try:
        rows = store.datasets()
        print(f"{'dataset':24} {'episodes':>8} {'frames':>8}  other")
        for d in sorted(rows, key=lambda d: d.name):
            other = ", ".join(f"{k} {v}" for k, v in sorted((d.counts or {}).items())
                              if k not in ("complete", "recovered") and v)
            print(f"{d.name:24} {d.num_episodes:>8} {d.num_frames:>8}  {other}")
        if not rows:
            print("(no datasets yet: record one, or 'vla-studio datasets import DIR')")
    finally:
        store.close()
    return 0


def _show(args) -> int:
    from recorder.curation import visible_tags

    if args.limit < 0:
        raise DatasetError(f"--limit must be 0 (all) or a positive number of episodes, not {args.limit}")
    store = _open(args)
    try:
        query = _query(store, args.name, args.task, _success_arg(args.success), args.source, args.tag,
                       status=("trashed",) if args.trashed else None)
        eps = store.episode_rows(query, limit=args.limit or None)
        total = store.count_episodes(query) if args.limit and len(eps) == args.limit else len(eps)
        print(f"{'id':>5} {'start (UTC)':19} {'frames':>6} {'dur s':>6} {'source':8} {'ok':3} {'status':9} "
              f"{'tags':20} task")
        for e in eps:
            start = e.start_time.strftime("%Y-%m-%d %H:%M:%S") if e.start_time else "-"
            print(f"{e.id:>5} {start:19} {e.num_frames:>6} {e.duration_s:>6.1f} {e.source:8} "
                  f"{_fmt_success(e.success):3} {e.status:9} {','.join(visible_tags(e.tags))[:20]:20} {e.task}")
        if total > len(eps):
            print(f"{len(eps)} of {total} episodes shown (--limit 0 shows all, --limit N the first N)")
        else:
            print(f"{len(eps)} episodes")
    finally:
        store.close()
    return 0


def _frames_bar():
    """A progress bar over frames on a terminal (nothing without one); its ``update(done, total)`` is the
    progress callback of export, import and merge."""
    from studio.commands.progress import ItemProgress

    return ItemProgress("frames", None)


def _export(args) -> int:
    from recorder.interop.lerobot import export_lerobot, exportable

    store = _open(args)
    try:
        eps = select(store, args.name, args.task, _success_arg(args.success), args.source, args.tag)
        # an explicit --success filter is the user's choice; otherwise failed episodes stay out unless asked
        chosen = eps if args.success is not None else exportable(eps, include_failed=args.include_failed)
        if eps and not chosen:
            raise DatasetError(f"every selected episode of {args.name!r} is marked failed: add --include-failed "
                               "to export them anyway")
        try:
            with _frames_bar() as bar:
                res = export_lerobot(store, args.out, chosen, codec=args.codec, overwrite=args.force,
                                     robot_type=args.robot_type, gop=args.gop, progress=bar.update,
                                     stale_column=args.stale_column)
        except OSError as err:  # the half-written export is removed by export_lerobot
            _raise_if_disk_full(err, args.out, chosen)
            raise
        skipped = len(eps) - len(chosen)
        note = f" (left out {skipped} failed episodes: --include-failed exports them)" if skipped else ""
        print(f"exported {res.episodes} episodes, {res.frames} frames to {res.path} "
              f"({res.frames_per_s:.0f} frames/s){note}")
    finally:
        store.close()
    return 0


def _raise_if_disk_full(err: OSError, out: Path, eps) -> None:
    """DiskFullError (one line: where, how much) when ``err`` is the disk holding ``out`` running full."""
    from recorder.store.faults import MIN_FREE_BYTES, disk_full_error, free_bytes, is_disk_full

    target = Path(out).absolute().parent
    if is_disk_full(err, target) or free_bytes(target) < MIN_FREE_BYTES:
        need = sum(p.stat().st_size for e in eps for p in e.path.rglob("*") if p.is_file())
        raise disk_full_error(target, need, "the export again") from None


def _import(args) -> int:
    from recorder.interop.lerobot import import_lerobot

    store = _open(args)
    try:
        with _frames_bar() as bar:
            eps = import_lerobot(store, args.dir, args.dataset, source=args.source, progress=bar.update)
        print(f"imported {len(eps)} episodes, {sum(e.num_frames for e in eps)} frames into "
              f"{eps[0].dataset!r}")
        if "depth videos" in (eps[0].notes or ""):
            print(f"note: {eps[0].notes.split('; ', 1)[1]}")
    finally:
        store.close()
    return 0


def _stats(args) -> int:
    from recorder.curation import stats_table

    store = _open(args)
    try:
        select(store, args.name)
        rows = stats_table(store, args.name)
        print(f"{'stream':24} {'dim':>3} {'min':>10} {'max':>10} {'mean':>10} {'std':>10} {'q01':>10} {'q99':>10}")
        for key, d, st in rows:
            cells = " ".join(f"{st.get(k, float('nan')):>10.4g}" for k in ("min", "max", "mean", "std", "q01", "q99"))
            print(f"{key:24} {d:>3} {cells}")
    finally:
        store.close()
    return 0


def _split(args) -> int:
    from recorder.curation import split

    store = _open(args)
    try:
        select(store, args.name)
        parts = split(store, args.name, val=args.val, seed=args.seed)
        print(f"{args.name}: {len(parts['train'])} train, {len(parts['val'])} val "
              f"(val ids: {' '.join(map(str, parts['val'])) or '-'})")
    finally:
        store.close()
    return 0


def _merge(args) -> int:
    from recorder.curation import merge

    store = _open(args)
    try:
        with _frames_bar() as bar:
            eps = merge(store, args.sources, args.into, copy=args.copy, progress=bar.update)
        verb = "copied" if args.copy else "moved"
        print(f"{verb} {len(eps)} episodes from {', '.join(args.sources)} into {args.into!r}")
    finally:
        store.close()
    return 0


def _trash(args) -> int:
    from recorder.curation import trash

    store = _open(args)
    try:
        done = trash(store, args.ids)
        print(f"trashed {len(done)} episodes (restore with 'vla-studio datasets restore ID..')")
    finally:
        store.close()
    return 0


def _restore(args) -> int:
    from recorder.curation import restore

    store = _open(args)
    try:
        done = restore(store, args.ids)
        print(f"restored {len(done)} episodes")
    finally:
        store.close()
    return 0


def _purge(args) -> int:
    from recorder.curation import purge

    if not args.yes:
        raise DatasetError(f"purging deletes the files of episodes {' '.join(map(str, args.ids))} for good: "
                           "add --yes to confirm")
    store = _open(args)
    try:
        done = purge(store, args.ids)
        print(f"purged {len(done)} episodes")
    finally:
        store.close()
    return 0


def _edit(args) -> int:
    from recorder.curation import edit_episode, parse_tags, visible_tags

    store = _open(args)
    try:
        success = {"yes": True, "no": False, "unknown": None}[args.success] if args.success else "keep"
        e = edit_episode(store, args.id, task=args.task, success=success, tags=parse_tags(args.tags),
                         notes=args.notes)
        print(f"episode {e.id}: task {e.task!r}, success {_fmt_success(e.success)}, "
              f"tags {','.join(visible_tags(e.tags)) or '-'}, notes {e.notes!r}")
    finally:
        store.close()
    return 0
