"""`vla-studio store info | check [--repair]`: what the store holds and whether index and files agree."""

from __future__ import annotations

import json


def register(sub) -> None:
    p = sub.add_parser("store", help="inspect and repair the episode store")
    ssub = p.add_subparsers(dest="store_command", metavar="ACTION")
    info = ssub.add_parser("info", help="datasets, episode counts and runs in the store")
    info.add_argument("--json", action="store_true", help="print one JSON object")
    info.set_defaults(func=_info)
    check = ssub.add_parser("check", help="verify the index against the files (changes nothing)")
    check.add_argument(
        "--repair",
        action="store_true",
        help="fix what can be fixed: salvage cut files, re-index folders, rebuild a bad index",
    )
    check.add_argument(
        "--full",
        action="store_true",
        help="check every episode (default: only those changed since the last check that found nothing wrong)",
    )
    check.set_defaults(func=_check)
    restore = ssub.add_parser("restore", help="undo a repair: put back the originals kept in a backup")
    restore.add_argument("backup", help="backup name, as 'store check' lists it")
    restore.set_defaults(func=_restore)
    p.set_defaults(func=_info)


def _info(args) -> int:
    from finetune.run_config import effective_status
    from recorder.store import Store

    with Store.open(args.home) as store:
        datasets = store.datasets()
        runs = store.runs()
        if getattr(args, "json", False):
            print(
                json.dumps(
                    {
                        "root": str(store.root),
                        "datasets": [
                            {
                                "name": d.name,
                                "episodes": d.num_episodes,
                                "frames": d.num_frames,
                                "counts": d.counts,
                            }
                            for d in datasets
                        ],
                        "runs": [
                            {"run_id": r.run_id, "status": effective_status(r.status, r.path),
                             "checkpoints": r.num_checkpoints}
                            for r in runs
                        ],
                    }
                )
            )
            return 0
        print(f"store {store.root}")
        for rec in store.recovered:
            print(f"  salvaged after a crash: episode {rec.id} -> {rec.status} ({rec.num_frames} ticks)")
        if not datasets:
            print("  no datasets yet")
        for d in datasets:
            other = ", ".join(
                f"{k} {v}" for k, v in sorted(d.counts.items()) if k not in ("complete", "recovered")
            )
            print(
                f"  dataset {d.name}: {d.num_episodes} episodes, {d.num_frames} frames"
                + (f" ({other})" if other else "")
            )
        for r in runs:
            print(f"  run {r.run_id}: {effective_status(r.status, r.path)}, {r.num_checkpoints} checkpoints")
    return 0


def _check(args) -> int:
    from finetune.run_config import reindex_runs
    from recorder.store.check import NOTES, check_store

    report = check_store(args.home, repair=args.repair, reindex_runs=reindex_runs, full=args.full)
    skipped = ""
    if report.episodes_skipped:
        skipped = (f", {report.episodes_skipped} unchanged since the last clean check "
                   f"({report.since:%Y-%m-%d %H:%M}) skipped: --full checks them too")
    print(f"store {report.root}: {report.episodes_checked} episodes checked{skipped}")
    for issue in report.issues:
        if issue.fixed:
            mark = "fixed"
        elif issue.kind in NOTES:
            mark = "note"
        else:
            mark = "problem" if issue.fixable else "problem (not fixable)"
        print(f"  {mark}: {issue.message}")
    if report.ok:
        print("  ok" if not report.problems else "  all problems fixed")
        return 0
    if not args.repair:
        print("  run 'vla-studio store check --repair' to fix what can be fixed")
    return 1


def _restore(args) -> int:
    from recorder.store.check import restore_backup

    info = restore_backup(args.home, args.backup)
    print(f"restored backup {args.backup}: episode {info.id} back to {info.status}, {info.num_frames} ticks")
    return 0
