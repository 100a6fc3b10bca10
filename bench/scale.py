"""Scale benchmark: a lab-sized store (1k, 10k, ... small synthetic episodes) in the CLI and the GUI.

    .venv/bin/python bench/scale.py                          # 1k and 10k, stores cached in --cache
    .venv/bin/python bench/scale.py --sizes 1000 --no-append # quick look

Stores are built once through the public store API (``Store.begin_episode`` / ``add_tick`` / ``finish``;
30 ticks, one 64x48 camera, 5 datasets, 3 tasks, mixed labels) and reused from ``--cache``; a bigger
store starts as a copy of the next smaller one and only the missing episodes are written.

Each measurement runs in a fresh Python process (so its peak memory, ``ru_maxrss``, is its own):
``datasets list``, ``datasets show`` (one dataset: a fifth of the store), a filtered query (task +
success + date), ``store check`` (and the incremental one, if there), the main window with the
Datasets tab (longest GUI event-loop pass, from a 1 ms QTimer in the GUI thread, and that pass's
GUI-thread CPU time, ``time.thread_time``, which a machine shared by other jobs inflates far less;
"open" lasts until every tab is built, for a window that builds them after it shows), scrolling the
episode table to its end, one episode into the viewer, and the fine-tune data set-up
(``finetune.data.build_datasets``) over the largest dataset. Same-run baselines: a process that only
imports (memory floor) and ``Store.episodes`` of every usable episode at once (what the Datasets tab did
on its GUI thread before it paged).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shlex
import shutil
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

DATASETS = 5
TASKS = ("pick up the red cube", "push the blue cube", "open the drawer")
TICKS = 30
BATCH = 256  # episodes per bulk-import transaction


# ------------------------------------------------------------------------------------------- building
def build(root: Path, n: int, smaller: Path | None, datasets: int = DATASETS, per_episode: bool = False,
          workers: int = 1, rgb: bool = False) -> float:
    """Make ``root`` hold ``n`` episodes in ``datasets`` datasets (reusing what is there); seconds spent writing.

    ``Store.bulk_import`` by default; ``per_episode``: ``begin_episode`` / ``add_tick`` / ``finish`` per episode
    (the record loop's path, the baseline of the build rate). ``workers`` > 1: that many processes write
    side by side (a bulk import each)."""
    from recorder.store import Store

    done = root / f".built-{n}"
    if done.exists():
        return 0.0
    spread = root.parent / f"store-{n}"
    if datasets != DATASETS and not (root / "index.sqlite").exists() and (spread / f".built-{n}").exists():
        # the same episodes in fewer datasets: copy the usual store and move episodes (Store.update_episode)
        shutil.copytree(spread, root, dirs_exist_ok=True, ignore=shutil.ignore_patterns(".built-*"))
        t0 = time.perf_counter()
        with Store.open(root) as store:
            for e in store.episode_rows(_q(status=None)):
                want = f"ds{int(e.dataset[2:]) % datasets}"
                if e.dataset != want:
                    store.update_episode(e.id, dataset=want)
        done.touch()
        return time.perf_counter() - t0
    if not (root / "index.sqlite").exists() and smaller is not None and smaller.exists():
        shutil.copytree(smaller, root, dirs_exist_ok=True, ignore=shutil.ignore_patterns(".built-*"))
    t0 = time.perf_counter()
    with Store.open(root) as store:  # (rolls back the uncommitted batch of an interrupted build)
        have = store.count_episodes(_q(status=None))
    if workers > 1 and not per_episode and n - have >= 2 * BATCH * workers:
        # processes importing side by side into one store (each its own staging folder and batches)
        cuts = [have + (n - have) * k // workers for k in range(workers + 1)]
        env = dict(os.environ, PYTHONPATH=str(ROOT))
        procs = [subprocess.Popen([sys.executable, __file__, "--build-part", f"{a}:{b}", "--home", str(root),
                                   "--datasets", str(datasets)], env=env) for a, b in zip(cuts, cuts[1:])]
        if any(p.wait() for p in procs):
            raise SystemExit(f"a build worker failed; run the same command again to top up {root}")
    else:
        build_part(root, have, n, datasets, per_episode, rgb)
    done.touch()
    return time.perf_counter() - t0


def build_part(root: Path, start: int, stop: int, datasets: int = DATASETS, per_episode: bool = False,
               rgb: bool = False) -> None:
    """Write synthetic episodes ``start`` .. ``stop - 1`` into the store at ``root``. The bulk import gets its
    frames as yuv420p ``av.VideoFrame`` objects, as the LeRobot importer hands over decoded frames (``rgb``:
    RGB arrays, as a camera gives them; the record loop's path always gets those)."""
    import numpy as np

    from recorder.store import CameraSpec, Store

    t0 = time.perf_counter()
    cam = CameraSpec(width=64, height=48, preset="ultrafast")
    frames = [np.full((48, 64, 3), (7 * t) % 255, np.uint8) for t in range(TICKS)]
    if not (per_episode or rgb):
        import av

        frames = [av.VideoFrame.from_ndarray(f, format="rgb24").reformat(format="yuv420p") for f in frames]
    with Store.open(root) as store:
        if per_episode:  # the record loop's path: a writer per episode, its own transaction and fsyncs
            for i in range(start, stop):
                w = store.begin_episode(**_episode_args(i, datasets, cam), flush_s=60.0)
                _write_ticks(w, i, frames)
                w.finish(**_episode_end(i))
                _progress(i, stop, t0)
        else:  # Store.bulk_import: BATCH episodes per transaction, one file-system sync per batch
            with store.bulk_import(batch_size=BATCH) as imp:
                for i in range(start, stop):
                    w = imp.begin_episode(**_episode_args(i, datasets, cam))
                    _write_ticks(w, i, frames)
                    w.finish(**_episode_end(i))
                    _progress(i, stop, t0)


def _episode_args(i: int, datasets: int, cam) -> dict:
    return dict(dataset=f"ds{i % datasets}", task=TASKS[i % 3], fps=30.0,
                source=("teleop", "policy", "scripted")[(i // 3) % 3],
                cameras={"front": cam}, lowdim={"observation.state": (6,), "action": (6,)},
                tags=("good",) if i % 10 == 0 else ())


def _write_ticks(w, i: int, frames) -> None:
    import numpy as np

    for t in range(TICKS):
        v = np.full(6, i + t / TICKS, np.float32)
        w.add_tick(t=t / 30, frames={"front": frames[t]}, values={"observation.state": v, "action": v})


def _episode_end(i: int) -> dict:
    return dict(success=(True, False, None)[i % 3] if i % 7 else True)


def _progress(i: int, n: int, t0: float) -> None:
    if (i + 1) % 1000 == 0:
        print(f"  built {i + 1}/{n} ({time.perf_counter() - t0:.0f} s)", file=sys.stderr, flush=True)


def _q(**kw):
    from recorder.store.query import EpisodeQuery

    return EpisodeQuery(**kw)


# ------------------------------------------------------------------------------------------- measuring
def _quiet_cli(args: list[str]) -> int:
    import contextlib
    import io

    from studio.cli import main

    with contextlib.redirect_stdout(io.StringIO()):
        return main(args)


def _gui(home: Path) -> dict:
    """Main window + Datasets tab: longest event-loop pass; scroll the table to its end; open one episode."""
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    os.environ.setdefault("MUJOCO_GL", "egl")
    from PyQt6.QtCore import QEventLoop, QTimer

    from widgets.gui_gc import gui_app

    app = gui_app()  # as run_gui: cyclic garbage collected on the GUI thread's timer
    gaps: list[float] = []  # wall seconds between two beats: one event-loop pass (and the wait for the CPU)
    cpu_gaps: list[float] = []  # the GUI thread's own CPU seconds in that pass (what a busy machine cannot inflate)
    last = [time.perf_counter(), time.thread_time()]

    def tick() -> None:
        now, cpu = time.perf_counter(), time.thread_time()
        gaps.append(now - last[0])
        cpu_gaps.append(cpu - last[1])
        last[0], last[1] = now, cpu

    def reset() -> None:
        gaps.clear()
        cpu_gaps.clear()
        last[0], last[1] = time.perf_counter(), time.thread_time()

    def cpu_max() -> float:
        return max(cpu_gaps, default=0.0)

    beat = QTimer()
    beat.setInterval(1)
    beat.timeout.connect(tick)
    beat.start()

    def spin(seconds: float, until=None) -> float:
        t0 = time.perf_counter()
        while time.perf_counter() - t0 < seconds:
            app.processEvents(QEventLoop.ProcessEventsFlag.AllEvents, 20)
            if until is not None and until():
                break
        return time.perf_counter() - t0

    def phase(fn, done=lambda: True) -> tuple[float, float]:
        """Run ``fn`` inside the event loop (from a 0 ms timer) and wait for ``done()``; (seconds until both,
        longest pass meanwhile and 0.3 s after)."""
        reset()
        out = {}
        t0 = time.perf_counter()
        QTimer.singleShot(0, lambda: out.setdefault("t", _timed(fn)))
        spin(60, lambda: "t" in out and done())
        t = time.perf_counter() - t0
        spin(0.3)
        return t, max(gaps, default=0.0)  # cpu_max() has the same pass's CPU seconds until the next reset()

    from studio.app import MainWindow
    from studio.context import AppContext

    ctx = AppContext(home)
    holder = {}
    shown = {}

    def open_window():
        holder["w"] = _show(MainWindow(ctx))
        shown["t"] = time.perf_counter()

    # the window is up when MainWindow() + show() return; "open" lasts until every tab is built (a window
    # that builds its tabs after showing, studio.app.MainWindow.all_tabs_built, does so in later passes)
    t0 = time.perf_counter()
    t_open, pass_open = phase(open_window, lambda: getattr(holder.get("w"), "all_tabs_built", True))
    cpu_open = cpu_max()
    t_shown = shown["t"] - t0
    window = holder["w"]
    from studio.app import freeze_startup_heap

    freeze_startup_heap()  # as run_gui does once the window is up
    tab = window.tab_widgets["Datasets"]
    t_tab, pass_tab = phase(lambda: window.tabs.setCurrentWidget(tab))
    cpu_tab = cpu_max()
    rows_before = tab.model.rowCount()
    # the Datasets tab alone, its modules already imported (what opening it costs the GUI thread)
    from studio.datasets.tab import DatasetsTab

    # (until its rows are in: a tab that reads them in a thread has `loaded` false until then)
    t_build, pass_build = phase(lambda: holder.setdefault("t", DatasetsTab(ctx)),
                                lambda: "t" in holder and getattr(holder["t"], "loaded", True))
    cpu_build = cpu_max()
    holder["t"].shutdown()
    holder["t"].deleteLater()
    _, pass_refresh = phase(tab.refresh, lambda: getattr(tab, "loaded", True))  # what every store change costs
    cpu_refresh = cpu_max()

    # scroll to the end: each step is one event-loop pass, as a person dragging the bar to the bottom
    bar = tab.table.verticalScrollBar()
    reset()
    t0 = time.perf_counter()
    while tab.model.canFetchMore():
        bar.setValue(bar.maximum())
        spin(0.002)
    t_scroll = time.perf_counter() - t0
    pass_scroll, cpu_scroll = max(gaps, default=0.0), cpu_max()
    rows_after = tab.model.rowCount()

    eid = tab.model.episode(rows_after // 2).id
    shown = {}
    tab.viewer_ctl.frame_shown.connect(lambda i: shown.setdefault("t", time.perf_counter()))
    reset()
    t0 = time.perf_counter()
    tab.select_episode(eid)
    spin(30, lambda: "t" in shown)
    t_view = shown.get("t", float("nan")) - t0
    pass_view, cpu_view = max(gaps, default=0.0), cpu_max()
    beat.stop()
    window.close()
    return {"shown_s": t_shown, "open_s": t_open, "open_pass_s": pass_open, "tab_pass_s": pass_tab, "rows_loaded": rows_before,
            "tab_build_s": t_build, "tab_build_pass_s": pass_build, "refresh_pass_s": pass_refresh,
            "scroll_s": t_scroll, "scroll_pass_s": pass_scroll, "rows_after_scroll": rows_after,
            "viewer_s": t_view, "viewer_pass_s": pass_view,
            "open_cpu_s": cpu_open, "tab_cpu_s": cpu_tab, "tab_build_cpu_s": cpu_build, "refresh_cpu_s": cpu_refresh,
            "scroll_cpu_s": cpu_scroll, "viewer_cpu_s": cpu_view}


def _show(w):
    w.show()
    return w


def _timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def measure(name: str, home: Path) -> dict:
    """One measurement in this process; seconds and what it found."""
    from recorder.store import Store

    out: dict = {}
    t0 = time.perf_counter()
    if name == "imports only":
        import PyQt6.QtWidgets  # noqa: F401

        import studio.app  # noqa: F401
    elif name == "datasets list":
        assert _quiet_cli(["--home", str(home), "datasets", "list"]) == 0
    elif name == "datasets show":
        assert _quiet_cli(["--home", str(home), "datasets", "show", "ds0"]) == 0
    elif name == "filtered query":
        with Store.open(home) as store:
            since = datetime.now(UTC) - timedelta(days=365)
            q = _q(task=TASKS[0], success=True, since=since)
            t1 = time.perf_counter()  # what a listing shows first: the count and one page of 100
            out["page_count"] = store.count_episodes(q)
            out["page_rows"] = len(store.episode_rows(q, limit=100))
            out["page_s"] = time.perf_counter() - t1
            t0 = time.perf_counter()
            out["episodes"] = len(store.episode_rows(q))
    elif name == "all episodes at once (old tab)":
        with Store.open(home) as store:
            t0 = time.perf_counter()
            out["episodes"] = len(store.episodes())
    elif name == "store check":
        rc = _quiet_cli(["--home", str(home), "store", "check", "--full"])
        out["rc"] = rc
    elif name == "store check (again)":  # incremental: right after the full one, nothing changed
        rc = _quiet_cli(["--home", str(home), "store", "check"])
        out["rc"] = rc
    elif name == "GUI":
        out.update(_gui(home))
        t0 = time.perf_counter() - out["open_s"]
    elif name == "fine-tune set-up":
        from finetune.data import build_datasets

        t0 = time.perf_counter()
        data = build_datasets(home, "ds0", cameras=["front"], n_images=1, image_size=32, chunk_size=1,
                              val_fraction=0.05, seed=0, augment=False, use_state=False)
        out["episodes"] = len(data.train_episode_ids) + len(data.val_episode_ids)
    else:
        raise SystemExit(f"unknown measurement {name!r}")
    out["s"] = time.perf_counter() - t0
    out["peak_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return out


MEASUREMENTS = ("imports only", "datasets list", "datasets show", "filtered query", "all episodes at once (old tab)",
                "store check", "store check (again)", "GUI", "fine-tune set-up")


def run_child(name: str, home: Path) -> dict:
    env = dict(os.environ, PYTHONPATH=str(ROOT), QT_QPA_PLATFORM="offscreen", MUJOCO_GL="egl")
    p = subprocess.run([sys.executable, __file__, "--measure", name, "--home", str(home)], env=env,
                       capture_output=True, text=True, timeout=1800)
    if p.returncode != 0:
        return {"error": (p.stderr.strip().splitlines() or ["?"])[-1]}
    return json.loads(p.stdout.strip().splitlines()[-1])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="1000,10000", help="store sizes, comma-separated")
    ap.add_argument("--cache", type=Path, default=ROOT.parent / f"{ROOT.name}-scale-stores",
                    help="where the built stores are kept between runs")
    ap.add_argument("--no-append", action="store_true", help="print only; do not append to docs/benchmarks.md")
    ap.add_argument("--build-only", action="store_true", help="build (or top up) the stores, measure nothing")
    ap.add_argument("--datasets", type=int, default=DATASETS,
                    help="datasets the episodes are spread over (1: the fine-tune set-up covers the whole store)")
    ap.add_argument("--only", action="append", choices=MEASUREMENTS, help="run only these measurements")
    ap.add_argument("--build-rate", type=int, metavar="N",
                    help="only time writing N episodes into fresh stores: per episode (the record loop's path) vs "
                         "Store.bulk_import, alternating, same run")
    ap.add_argument("--rate-modes", action="append", choices=RATE_MODES,
                    help="with --build-rate: only these write paths (a tree without bulk_import: 'per episode')")
    ap.add_argument("--build-workers", type=int, default=1,
                    help="processes that write a store side by side (each a Store.bulk_import)")
    ap.add_argument("--build-part", help=argparse.SUPPRESS)
    ap.add_argument("--measure", help=argparse.SUPPRESS)
    ap.add_argument("--home", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.build_part:
        a, b = (int(x) for x in args.build_part.split(":"))
        build_part(args.home, a, b, args.datasets)
        return 0
    if args.measure:
        print(json.dumps(measure(args.measure, args.home)))
        return 0

    args.cache.mkdir(parents=True, exist_ok=True)
    if args.build_rate:
        return build_rate(args.cache, args.build_rate, modes=args.rate_modes or RATE_MODES)
    sizes = sorted(int(s) for s in args.sizes.split(","))
    load = os.getloadavg()
    results: dict[int, dict] = {}
    built: dict[int, float] = {}
    prev = None
    for n in sizes:
        home = args.cache / (f"store-{n}" if args.datasets == DATASETS else f"store-{n}-ds{args.datasets}")
        built[n] = build(home, n, prev, args.datasets, workers=args.build_workers)
        prev = home
        if args.build_only:
            continue
        results[n] = {}
        for name in args.only or MEASUREMENTS:
            results[n][name] = r = run_child(name, home)
            print(f"{n:>7} {name:34} {json.dumps(r)}", flush=True)
    if args.build_only:
        return 0
    text = report(sizes, results, built, load, os.getloadavg(), args.datasets)
    print(text)
    if not args.no_append:
        with open(ROOT / "docs" / "benchmarks.md", "a") as f:
            f.write("\n" + text)
    return 0


RATE_MODES = ("per episode", "bulk_import, RGB arrays", "bulk_import, yuv frames")


def build_rate(cache: Path, n: int, rounds: int = 2, modes=RATE_MODES) -> int:
    """ms per episode of the write paths, alternating (``rounds`` each) into fresh stores under ``cache``."""
    load = os.getloadavg()[0]
    times: dict[str, list[tuple[float, float]]] = {m: [] for m in modes}
    for r in range(rounds):
        for mode in times:
            root = cache / f"rate-{RATE_MODES.index(mode)}-{r}"
            shutil.rmtree(root, ignore_errors=True)
            cpu0 = _cpu_s()
            wall = build(root, n, None, per_episode=mode == "per episode", rgb="RGB" in mode)
            times[mode].append((wall / n * 1000, (_cpu_s() - cpu0) / n * 1000))
            shutil.rmtree(root, ignore_errors=True)
    for mode, ms in times.items():
        print(f"{mode:24} {n} episodes: wall " + ", ".join(f"{w:.1f}" for w, _ in ms) + " ms/episode; CPU "
              + ", ".join(f"{c:.1f}" for _, c in ms) + " ms/episode")
    print(f"load average {load:.1f} -> {os.getloadavg()[0]:.1f}")
    return 0


def _cpu_s() -> float:
    """CPU seconds of this process so far (all its threads: the encoders too)."""
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


def _cell(r: dict, key: str = "s", fmt: str = "{:.2f}") -> str:
    if "error" in r:
        return "error"
    v = r.get(key)
    return "-" if v is None else fmt.format(v)


def report(sizes, results, built, load0, load1, datasets: int = DATASETS) -> str:
    cmd = "python bench/scale.py " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    now = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    lines = [
        f"## Scale: a lab-sized store in the CLI and the GUI (bench/scale.py, {now})",
        "",
        f"Machine: {platform.machine()}, {os.cpu_count()} cores shared with other engineers (load average "
        f"{load0[0]:.1f} at the start, {load1[0]:.1f} at the end), Python {platform.python_version()}. "
        f"Command: `{cmd}`. Episodes: {TICKS} ticks, one 64x48 camera, {datasets} datasets; each measurement "
        "in its own process, peak memory = that process's max RSS (imports included).",
        "",
        "| measurement | " + " | ".join(f"{n:,} episodes" for n in sizes) + " |",
        "|---|" + "---|" * len(sizes),
    ]

    def row(title, name, key="s", fmt="{:.2f} s"):
        if not all(name in results[n] for n in sizes):  # not measured this run (--only)
            return
        lines.append(f"| {title} | " + " | ".join(_cell(results[n][name], key, fmt) for n in sizes) + " |")

    row("`datasets list`", "datasets list")
    row("`datasets show ds0` (a fifth of the store)", "datasets show")
    row("filtered query: task + success + date (`Store.episode_rows`, every match)", "filtered query")
    row("  episodes it returns", "filtered query", "episodes", "{:.0f}")
    row("  the same filter: its count + the first page of 100 rows", "filtered query", "page_s", "{:.3f} s")
    row("baseline: every usable episode at once (the old tab's GUI-thread load)", "all episodes at once (old tab)")
    row("`store check --full`", "store check")
    row("`store check` (incremental) right after, nothing changed", "store check (again)")
    row("main window: shown (`MainWindow()` + `show()` returned)", "GUI", "shown_s")
    row("main window: every tab built", "GUI", "open_s")
    row("  longest event-loop pass while opening", "GUI", "open_pass_s", "{:.3f} s")
    row("    its GUI-thread CPU time", "GUI", "open_cpu_s", "{:.3f} s")
    row("  longest pass switching to the Datasets tab", "GUI", "tab_pass_s", "{:.3f} s")
    row("    its GUI-thread CPU time", "GUI", "tab_cpu_s", "{:.3f} s")
    row("  Datasets tab alone (modules imported): longest pass building it", "GUI", "tab_build_pass_s", "{:.3f} s")
    row("    its GUI-thread CPU time", "GUI", "tab_build_cpu_s", "{:.3f} s")
    row("  longest pass of a refresh (after any store change)", "GUI", "refresh_pass_s", "{:.3f} s")
    row("    its GUI-thread CPU time", "GUI", "refresh_cpu_s", "{:.3f} s")
    row("  rows loaded before scrolling", "GUI", "rows_loaded", "{:.0f}")
    row("scroll the episode table end to end", "GUI", "scroll_s")
    row("  longest event-loop pass while scrolling", "GUI", "scroll_pass_s", "{:.3f} s")
    row("    its GUI-thread CPU time", "GUI", "scroll_cpu_s", "{:.3f} s")
    row("one episode into the viewer", "GUI", "viewer_s", "{:.3f} s")
    row("  longest pass meanwhile", "GUI", "viewer_pass_s", "{:.3f} s")
    row("    its GUI-thread CPU time", "GUI", "viewer_cpu_s", "{:.3f} s")
    row("fine-tune data set-up over ds0 (`finetune.data.build_datasets`)", "fine-tune set-up")
    row("  episodes in it", "fine-tune set-up", "episodes", "{:.0f}")
    for title, name in (("imports only (floor)", "imports only"), ("datasets list", "datasets list"),
                        ("datasets show", "datasets show"), ("filtered query", "filtered query"),
                        ("store check", "store check"), ("GUI (all of it)", "GUI"),
                        ("fine-tune set-up", "fine-tune set-up")):
        row(f"peak memory: {title}", name, "peak_mb", "{:.0f} MB")
    lines.append("| store build through the public API (this run; 0 = reused) | "
                 + " | ".join(f"{built[n]:.0f} s" for n in sizes) + " |")
    lines.append("")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    raise SystemExit(main())
