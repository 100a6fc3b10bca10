"""Meta-World rendering throughput: what one frame costs with 1..N processes rendering at once, per setting.

Why: bench/metaworld.py records and evaluates in many processes, each rendering corner2 every step. On the H200
one process drew a 112 px frame in 3.1 ms, but 16 at once took 43.6 ms each (hardware EGL, NVIDIA's vendor
library): the GPU's graphics work is shared, so the aggregate frame rate, not the per-process one, sizes a run.

    python3 bench/metaworld_render.py --procs 1,4,16 --settings shadows,shadows-1024,no-shadows --seconds 3

Settings: ``shadows`` = MuJoCo's defaults (what LeRobot's images have: shadow maps of
``model.vis.quality.shadowsize`` = 4096 px), ``shadows-<N>`` = shadows from N px maps, ``no-shadows``. Every
process builds one env and one renderer per setting, steps the sim between frames (as recording does) and renders
for ``--seconds`` while the others do the same; a barrier starts them together. Prints a table and writes
``--out``/render.json.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != HERE]  # keep `import metaworld` the package
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
os.environ.setdefault("MUJOCO_GL", "egl")


def _shadow_size(setting: str) -> int | None:
    """None: no shadows; 0: the model's own shadow map size; N: N px shadow maps."""
    if setting == "no-shadows":
        return None
    if setting == "shadows":
        return 0
    if setting.startswith("shadows-") and setting[8:].isdigit():
        return int(setting[8:])
    raise SystemExit(f"metaworld_render: unknown setting {setting!r} (shadows, shadows-<px>, no-shadows)")


def _worker(rank: int, args, barrier, results) -> None:
    from recorder.devices.metaworld.env import MetaWorldSim, SceneRenderer

    sim = MetaWorldSim([args.task])
    sim.reset(rank)
    default = int(sim.model.vis.quality.shadowsize)
    renderers = {}
    for setting in args.settings:
        size = _shadow_size(setting)
        r = SceneRenderer(args.size, args.size, shadows=size is not None, shadow_size=size or 0)
        r.render(sim.model, sim.data, "corner2")
        renderers[setting] = r
    info = next(iter(renderers.values())).gl_info()
    for setting in args.settings:
        r = renderers[setting]
        for n in args.procs:
            barrier.wait()
            if rank < n:
                r._gl.make_current()  # one GL context per renderer: draw with this setting's
                r.render(sim.model, sim.data, "corner2")
                frames, t0 = 0, time.perf_counter()
                while time.perf_counter() - t0 < args.seconds:
                    if sim.step(sim.expert_action()) or sim.done:
                        sim.reset(rank + frames)
                    r.render(sim.model, sim.data, "corner2")
                    frames += 1
                dt = time.perf_counter() - t0
                results.put({"setting": setting, "procs": n, "rank": rank, "frames": frames, "s": dt,
                             "gl": info.describe(), "software": info.software, "default_shadowsize": default})
            barrier.wait()


def main(argv=None) -> int:
    import multiprocessing as mp

    import numpy as np

    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--procs", default="1,4,16", help="process counts to measure, comma-separated")
    p.add_argument("--settings", default="shadows,shadows-1024,no-shadows")
    p.add_argument("--seconds", type=float, default=3.0, help="render time per measurement")
    p.add_argument("--size", type=int, default=112, help="frame size (px)")
    p.add_argument("--task", default="pick-place-v3")
    p.add_argument("--out", default=None, help="also write render.json here")
    args = p.parse_args(argv)
    args.procs = sorted({int(x) for x in args.procs.split(",")})
    args.settings = [s.strip() for s in args.settings.split(",") if s.strip()]
    for s in args.settings:
        _shadow_size(s)
    ctx = mp.get_context("spawn")
    top = max(args.procs)
    barrier, results = ctx.Barrier(top), ctx.Queue()
    procs = [ctx.Process(target=_worker, args=(i, args, barrier, results)) for i in range(top)]
    t0 = time.perf_counter()
    for pr in procs:
        pr.start()
    expected = sum(n for n in args.procs) * len(args.settings)
    got = [results.get(timeout=600) for _ in range(expected)]
    for pr in procs:
        pr.join(timeout=60)
    rows = []
    for setting in args.settings:
        for n in args.procs:
            mine = [g for g in got if g["setting"] == setting and g["procs"] == n]
            ms = [1000 * g["s"] / max(1, g["frames"]) for g in mine]
            rows.append({"setting": setting, "procs": n, "ms_per_frame_median": float(np.median(ms)),
                         "frames_per_s_total": float(sum(g["frames"] / g["s"] for g in mine))})
    out = {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "gl": got[0]["gl"],
           "software": got[0]["software"], "size": args.size, "task": args.task,
           "default_shadowsize": got[0]["default_shadowsize"], "rows": rows, "total_s": time.perf_counter() - t0,
           "command": "bench/metaworld_render.py " + " ".join(argv if argv is not None else sys.argv[1:])}
    print(f"renderer: {out['gl']}; {args.size} px, {args.task}, sim stepped between frames")
    print("| setting | processes | ms per frame (median process) | frames/s, all processes |")
    print("|---|---|---|---|")
    for r in rows:
        print(f"| {r['setting']} | {r['procs']} | {r['ms_per_frame_median']:.2f} | {r['frames_per_s_total']:.0f} |")
    if args.out:
        Path(args.out).mkdir(parents=True, exist_ok=True)
        (Path(args.out) / "render.json").write_text(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
