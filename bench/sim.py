"""Simulated rig speed: physics steps/s, and render fps with two cameras (front + wrist) at 320x240 and
640x480, each camera on its own render thread as in the rig. Also the latency of get_observation while
both cameras render (the record loop must never wait for a render).

Baselines from the same run: bare ``mujoco.mj_step`` on the same model, and a single camera rendering
alone on the main thread (no threads, no pacing).

    python bench/sim.py [--seconds 4] [--no-append]
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import sys
import time
from pathlib import Path

os.environ.setdefault("MUJOCO_GL", "egl")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

from recorder.devices.configs import SimCameraConfig, SimRobotConfig  # noqa: E402
from recorder.devices.sim import SimCamera, SimRobot  # noqa: E402
from recorder.devices.sim.camera import OffscreenRenderer, gl_backend  # noqa: E402


def physics(seconds: float) -> tuple[float, float]:
    import mujoco

    robot = SimRobot(SimRobotConfig(seed=0, realtime=False))
    robot.connect()
    m, d = robot.model, robot.data
    n = 0
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < seconds / 2:
        mujoco.mj_step(m, d, nstep=100)
        n += 100
    bare = n / (time.perf_counter() - t0)
    robot.reset(0)
    rng = np.random.default_rng(0)
    lo, hi = robot.joint_limits
    n = 0
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < seconds / 2:
        robot.get_observation()
        robot.send_action(rng.uniform(lo * 0.3, hi * 0.3))
        robot.step_physics(1 / 30)  # ~17 steps per control tick at 30 Hz
        n += int(round((1 / 30) / robot.model.opt.timestep))
    ours = n / (time.perf_counter() - t0)
    return bare, ours


def render_single(w: int, h: int, seconds: float) -> float:
    robot = SimRobot(SimRobotConfig(seed=0, realtime=False))
    r = OffscreenRenderer(robot.model, w, h)
    try:
        cam = robot.model.camera("front").id
        n = 0
        t0 = time.perf_counter()
        while time.perf_counter() - t0 < seconds:
            r.update_scene(robot.model, robot.data, cam)
            r.render()
            n += 1
        return n / (time.perf_counter() - t0)
    finally:
        r.close()


def render_rig(w: int, h: int, seconds: float, fps: float) -> dict:
    robot = SimRobot(SimRobotConfig(seed=0, realtime=True))
    cams = [
        SimCamera(SimCameraConfig(camera=c, width=w, height=h, fps=fps), robot) for c in ("front", "wrist")
    ]
    robot.connect()
    for c in cams:
        c.connect()
    try:
        time.sleep(0.3)
        start = [c.read_latest().index for c in cams]
        lat = []
        t0 = time.perf_counter()
        while time.perf_counter() - t0 < seconds:
            a = time.perf_counter()
            robot.get_observation()
            lat.append(time.perf_counter() - a)
            time.sleep(1 / 30)
        el = time.perf_counter() - t0
        rates = [(c.read_latest().index - s) / el for c, s in zip(cams, start)]
    finally:
        for c in cams:
            c.disconnect()
        robot.disconnect()
    lat_ms = np.array(lat) * 1000
    return {
        "front": rates[0],
        "wrist": rates[1],
        "obs_p50": float(np.percentile(lat_ms, 50)),
        "obs_p99": float(np.percentile(lat_ms, 99)),
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=4.0)
    ap.add_argument("--no-append", action="store_true")
    args = ap.parse_args()

    bare, ours = physics(args.seconds)
    rows = [("physics steps/s (SimRobot, 30 Hz control)", f"{ours:,.0f}", f"bare mj_step: {bare:,.0f}")]
    for w, h in [(320, 240), (640, 480)]:
        single = render_single(w, h, args.seconds / 2)
        paced = render_rig(w, h, args.seconds, fps=30)
        free = render_rig(w, h, args.seconds, fps=1000)
        rows.append(
            (
                f"{w}x{h}: 2 cameras @30 fps target, fps each",
                f"{paced['front']:.1f} / {paced['wrist']:.1f}",
                f"1 camera alone, unpaced: {single:.1f}",
            )
        )
        rows.append(
            (f"{w}x{h}: 2 cameras unpaced, fps each", f"{free['front']:.1f} / {free['wrist']:.1f}", "")
        )
        rows.append(
            (
                f"{w}x{h}: get_observation p50 / p99 while rendering (ms)",
                f"{paced['obs_p50']:.2f} / {paced['obs_p99']:.2f}",
                "2 cameras @30 fps",
            )
        )

    width = max(len(r[0]) for r in rows)
    lines = [
        f"| {'metric'.ljust(width)} | value | baseline / note |",
        f"|{'-' * (width + 2)}|-------|-----------------|",
    ]
    lines += [f"| {a.ljust(width)} | {b} | {c} |" for a, b, c in rows]
    table = "\n".join(lines)
    print(table)
    if not args.no_append:
        now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
        section = (
            f"\n\n## Simulated rig (`bench/sim.py`, {now})\n\n"
            f"- machine: 2-core CPU, shared (other helpers were running at the same time); "
            f"CPython {platform.python_version()}; MuJoCo offscreen GL: {gl_backend()}; shadows off\n"
            f"- command: `python bench/sim.py --seconds {args.seconds:g}`\n"
            "- physics is stepped by elapsed time inside get_observation/send_action (no physics thread); "
            "each sim camera renders on its own thread at its fps and keeps the latest frame\n\n"
            f"{table}\n"
        )
        path = Path(__file__).resolve().parents[1] / "docs" / "benchmarks.md"
        with path.open("a", encoding="utf-8") as f:
            f.write(section)
        print(f"appended to {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
