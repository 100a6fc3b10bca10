"""Keyframe spacing of our LeRobot export: random-access decode time in lerobot's own loader, and video sizes.

Runs with lerobot 0.6.1's venv (not ours: vla-studio itself never imports lerobot):

    V/bin/python bench/lerobot_gop.py [--episodes 3] [--samples 120] [--no-append]

Records sim episodes with vla-studio's CLI (scripted expert, built-in sim rig, two 320x240 cameras, 30 fps;
VLA_PYTHON names the interpreter that has vla-studio, default /work/main/.venv/bin/python), exports them with
`datasets export --gop 30` (the old spacing: the baseline, same run) and with the default (`--gop 2`, lerobot's),
in h264 and av1, then times `LeRobotDataset[i]` at random frame indices (both cameras decoded) with each of
lerobot's video backends. Appends a table to docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
# this folder's datasets.py would shadow Hugging Face's `datasets`, which lerobot imports
sys.path = [p for p in sys.path if Path(p or ".").resolve() != ROOT / "bench"]
DEFAULT_GOP = 2  # recorder.interop.lerobot.DEFAULT_GOP (this script runs without our packages)
VLA_PYTHON = os.environ.get("VLA_PYTHON", "/work/main/.venv/bin/python")


def vla(home: Path, *args: str) -> str:
    env = dict(os.environ, PYTHONPATH=str(ROOT), MUJOCO_GL=os.environ.get("MUJOCO_GL", "egl"))
    res = subprocess.run([VLA_PYTHON, "-m", "studio.cli", "--home", str(home), *args], env=env,
                         capture_output=True, text=True)
    if res.returncode != 0:
        sys.exit(f"vla-studio {' '.join(args)} failed:\n{res.stdout}\n{res.stderr}")
    return res.stdout.strip()


def open_dataset(root: Path, backend: str):
    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    ds = LeRobotDataset("local/bench", root=root, video_backend=backend)
    ds[0]  # open decoders, caches
    return ds


def time_interleaved(datasets: dict, samples: int, rounds: int = 10, seed: int = 0) -> dict:
    """Per dataset: (median wall ms, median CPU ms) per item at the same random indices; the datasets take turns
    in ``rounds`` rounds so that a change of load on this shared machine hits every one alike."""
    n = min(len(ds) for ds in datasets.values())
    idx = np.random.default_rng(seed).integers(0, n, size=samples)
    wall: dict = {k: [] for k in datasets}
    cpu: dict = {k: [] for k in datasets}
    for chunk in np.array_split(idx, rounds):
        for key, ds in datasets.items():
            for i in chunk:
                t0, c0 = time.perf_counter(), time.process_time()
                item = ds[int(i)]
                wall[key].append((time.perf_counter() - t0) * 1e3)
                cpu[key].append((time.process_time() - c0) * 1e3)
                assert item["observation.images.front"].shape[-2:] == (240, 320)
    return {k: (statistics.median(wall[k]), statistics.median(cpu[k])) for k in datasets}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--episodes", type=int, default=3)
    ap.add_argument("--samples", type=int, default=200)
    ap.add_argument("--gops", default="30,10,2", help="GOPs to export with (2 is the default: no --gop given)")
    ap.add_argument("--no-append", action="store_true")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="lerobot_gop_"))
    home = work / "home"
    print(vla(home, "record", "--rig", "sim", "--dataset", "bench", "--scripted", "--episodes",
              str(args.episodes), "--episode-time", "12", "--seed", "10"))
    sizes, datasets, frames = {}, {}, None
    for codec in ("av1", "h264"):
        for gop in [int(g) for g in args.gops.split(",")]:
            out = work / f"{codec}_{gop}"
            extra = ["--gop", str(gop)] if gop != DEFAULT_GOP else []  # the default: no option
            line = vla(home, "datasets", "export", "bench", "--out", str(out), "--codec", codec, *extra)
            frames = int(line.split(" frames")[0].split()[-1])
            sizes[codec, gop] = sum(p.stat().st_size for p in (out / "videos").rglob("*.mp4"))
            for backend in ("torchcodec", "pyav"):
                datasets[codec, gop, backend] = open_dataset(out, backend)
    times = time_interleaved(datasets, args.samples)
    rows = []
    for (codec, gop, backend), (med, cpu) in times.items():
        rows.append((codec, gop, sizes[codec, gop], backend, med, cpu))
        print(f"{codec} gop {gop:>2} {sizes[codec, gop] / 1e3:8.0f} kB  {backend:10} median {med:6.1f} ms  "
              f"cpu {cpu:6.1f} ms")
    import lerobot

    lines = [
        "",
        f"## LeRobot export keyframe spacing: random access in lerobot's loader ({datetime.now(UTC):%Y-%m-%d %H:%M} UTC)",
        "",
        f"- machine: {platform.machine()}, {os.cpu_count()} cores (shared with other engineers' jobs while measuring), "
        f"lerobot {lerobot.__version__}, Python {platform.python_version()}",
        f"- command: `V/bin/python bench/lerobot_gop.py --episodes {args.episodes} --samples {args.samples} "
        f"--gops {args.gops}` "
        "(V: lerobot 0.6.1's venv)",
        f"- data: {args.episodes} sim episodes recorded by `vla-studio record --rig sim --scripted` ({frames} frames, "
        "2 cameras 320x240, 30 fps), exported with `datasets export --codec C` (default GOP 2) and with `--gop N`; "
        "GOP 30 is the spacing exports had before (the baseline, same run)",
        f"- timed: `LeRobotDataset(root, video_backend=B)[i]` at {args.samples} random indices (seed 0; both cameras "
        "decoded), after one warm-up item; the datasets take turns in 10 rounds (same indices for all); wall and CPU "
        "time (process_time, all threads) per item, medians",
        "",
        "| codec | GOP | videos (both cameras) | backend | median wall ms / item | median CPU ms / item |",
        "|---|---|---|---|---|---|",
    ]
    for codec, gop, size, backend, med, mean in rows:
        lines.append(f"| {codec} | {gop} | {size / 1e3:.0f} kB | {backend} | {med:.1f} | {mean:.1f} |")
    text = "\n".join(lines) + "\n"
    print(text)
    if not args.no_append:
        with open(ROOT / "docs" / "benchmarks.md", "a") as f:
            f.write(text)


if __name__ == "__main__":
    main()
