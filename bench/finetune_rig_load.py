"""How much does a connected, idle sim rig slow a local CPU fine-tune (issue 12, item 9)?

The same tiny `vla-studio finetune` child (the CLI, as the Fine-tune tab starts it) is timed three ways in
one run, on one synthetic dataset:

- ``no rig``: nothing else runs;
- ``idle rig``: the built-in sim rig connected (two 320x240 sim cameras at 30 fps) with an idle record
  session (the Record tab's: teleop loop at 30 Hz, nothing recorded), as before the fix;
- ``idle rig, yielding``: the same with ``RecordSession.set_yield(True)`` (what the Record tab does while a
  local run trains): cameras at IDLE_YIELD_CAMERA_FPS, the idle loop at IDLE_YIELD_LOOP_FPS.

The GUI's own preview repaints are not included (headless). Prints a table; ``--doc`` appends it to
docs/benchmarks.md.

    PYTHONPATH=. MUJOCO_GL=egl python bench/finetune_rig_load.py --steps 12
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def _finetune(home: Path, run_id: str, steps: int, batch: int) -> tuple[float, float | None]:
    cmd = [sys.executable, "-m", "studio.cli", "--home", str(home), "finetune", "--dataset", "toy", "--model",
           "tiny", "--steps", str(steps), "--batch", str(batch), "--lr", "0.01", "--lora-rank", "4",
           "--eval-every", "0", "--save-every", "0", "--val-fraction", "0", "--run-id", run_id]
    t0 = time.perf_counter()
    out = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})
    wall = time.perf_counter() - t0
    if out.returncode != 0:
        raise SystemExit(f"finetune failed:\n{out.stderr[-2000:]}")
    events = [json.loads(x) for x in out.stdout.splitlines() if x.startswith("{")]
    sps = [e["samples_per_s"] for e in events if e.get("event") == "train" and e.get("samples_per_s")]
    return wall, (sorted(sps)[len(sps) // 2] if sps else None)


def _cpu_self() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def _with_rig(home: Path, yielding: bool, fn):
    from recorder.devices.rig import load_rig
    from recorder.session import make_record_session
    from recorder.store import Store

    rig = load_rig("sim", home=home)
    rig.connect()
    store = Store.open(home)
    session = make_record_session(store, rig, dataset="bench-rig", task="pick up the red cube", seed=None)
    session.start_thread()
    session.set_yield(yielding)
    time.sleep(1.0)
    frames0 = {n: c.read_latest().index for n, c in rig.cameras.items()}
    t0, c0 = time.monotonic(), _cpu_self()
    try:
        result = fn()
    finally:
        dt = time.monotonic() - t0
        fps = {n: (c.read_latest().index - frames0[n]) / dt for n, c in rig.cameras.items()}
        fps["rig CPU s/s"] = (_cpu_self() - c0) / dt
        session.close()
        rig.disconnect()
        store.close()
    return result, fps


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=12)
    ap.add_argument("--batch", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=2, help="interleaved repeats of the three conditions")
    ap.add_argument("--doc", action="store_true", help="append the table to docs/benchmarks.md")
    args = ap.parse_args()
    os.environ.setdefault("MUJOCO_GL", "egl")
    from recorder.session import IDLE_YIELD_CAMERA_FPS, IDLE_YIELD_LOOP_FPS
    from tests.finetune.synth_store import write_dataset

    home = Path(tempfile.mkdtemp(prefix="bench-rig-load-")) / "home"
    write_dataset(home, "toy", episodes=2, frames=12)
    _finetune(home, "warm", args.steps, args.batch)  # warm the caches; not reported
    runs: dict[str, list] = {"no rig": [], "idle rig, not yielding": [], "idle rig, yielding (set_yield)": []}
    for r in range(args.rounds):  # interleaved, so drifting load from other processes hits every condition
        runs["no rig"].append((*_finetune(home, f"no-rig-{r}", args.steps, args.batch), {}))
        (wall, sps), fps = _with_rig(home, False, lambda r=r: _finetune(home, f"idle-{r}", args.steps, args.batch))
        runs["idle rig, not yielding"].append((wall, sps, fps))
        (wall, sps), fps = _with_rig(home, True, lambda r=r: _finetune(home, f"yield-{r}", args.steps, args.batch))
        runs["idle rig, yielding (set_yield)"].append((wall, sps, fps))

    def med(xs):
        xs = [x for x in xs if x is not None]
        return statistics.median(xs) if xs else float("nan")

    base = med(w for w, _, _ in runs["no rig"])
    lines = ["| condition | fine-tune wall s (median; each round) | x no rig | median samples/s | "
             "camera fps while training | idle rig's own CPU s per s |", "|---|---|---|---|---|---|"]
    for name, rs in runs.items():
        wall = med(w for w, _, _ in rs)
        cams = ", ".join(f"{n} {med(f.get(n) for _, _, f in rs):.1f}" for n in ("front", "wrist") if rs[0][2])
        cpu = med(f.get("rig CPU s/s") for _, _, f in rs) if rs[0][2] else None
        lines.append(f"| {name} | {wall:.1f} ({', '.join(f'{w:.0f}' for w, _, _ in rs)}) | {wall / base:.2f} | "
                     f"{med(s for _, s, _ in rs):.2f} | {cams or '-'} | {'-' if cpu is None else f'{cpu:.2f}'} |")
    table = "\n".join(lines)
    print(table)
    if args.doc:
        cmd = (f"PYTHONPATH=. MUJOCO_GL=egl python bench/finetune_rig_load.py --steps {args.steps} "
               f"--batch {args.batch} --rounds {args.rounds} --doc")
        text = (f"\n\n## A connected idle sim rig vs a local CPU fine-tune (issue 12, item 9)\n\n"
                f"- date: {datetime.now(UTC):%Y-%m-%d %H:%M} UTC\n"
                f"- machine: {platform.machine()}, {os.cpu_count()} cores (shared with other helpers while measuring)\n"
                f"- command: `{cmd}`\n"
                f"- the tiny model, {args.steps} steps at batch {args.batch}, as a `vla-studio finetune` child; the rig is "
                f"the built-in sim (2 cameras 320x240 @ 30 fps) with an idle record session; yielding: cameras "
                f"{IDLE_YIELD_CAMERA_FPS:g} fps, idle loop {IDLE_YIELD_LOOP_FPS:g} Hz; the GUI's preview repaints "
                f"are not included\n\n{table}\n")
        with open(ROOT / "docs" / "benchmarks.md", "a") as f:
            f.write(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
