"""Rollout plumbing on the CPU: policy-server overhead, a slow policy off the loop thread, e-stop latency.

    python bench/rollout.py [--calls 200] [--seconds 5] [--no-append]

1. ``RemotePolicy`` round trip over loopback vs calling the same policy in-process (a policy that
   returns at once, so the numbers are the transport: msgpack + websocket + copies).
2. A policy that takes 100 ms per chunk (8 actions) driving a 30 Hz loop for N seconds: inference on
   the loop thread (baseline: the loop waits) vs on a worker thread (the loop keeps executing).
3. E-stop: time from ``estop.set()`` to the last command the arm receives, 30 Hz loop, 20 trials.

Appends a section to docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import datetime as dt
import platform
import sys
import threading
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench._doc import report  # noqa: E402
from finetune.server import PolicyServer, RemotePolicy  # noqa: E402
from recorder.loop import LoopConfig, run_episode  # noqa: E402
from recorder.rollout import ChunkConfig, PolicySource  # noqa: E402
from tests.rollout_doubles import FakeRig, FixedChunkPolicy  # noqa: E402


def pct(xs, q):
    return float(np.percentile(np.asarray(xs) * 1000, q))


def bench_server(calls: int):
    rows = []
    rng = np.random.default_rng(0)
    for label, shape, n_cam in [("1 x 224x224", (224, 224, 3), 1), ("2 x 224x224", (224, 224, 3), 2),
                                ("2 x 640x480", (480, 640, 3), 2)]:
        cams = ["front", "wrist"][:n_cam]
        policy = FixedChunkPolicy(chunk_size=8, camera_names=cams)
        imgs = {c: rng.integers(0, 255, shape, dtype=np.uint8) for c in cams}
        state = np.zeros(6, np.float32)
        with PolicyServer(policy, port=0) as srv, RemotePolicy(srv.url) as remote:
            local, rem = [], []
            for _ in range(5):
                remote.predict(imgs, state, "warm up")
            for _ in range(calls):
                t0 = time.perf_counter()
                policy.predict(imgs, state, "pick")
                local.append(time.perf_counter() - t0)
                t0 = time.perf_counter()
                remote.predict(imgs, state, "pick")
                rem.append(time.perf_counter() - t0)
            rows.append((label, pct(local, 50), pct(rem, 50), pct(rem, 99)))
    return rows


def bench_slow_policy(seconds: float, fps: float = 30.0, delay: float = 0.1):
    out = {}
    for mode, asynchronous in [("on the loop thread (baseline)", False), ("worker thread", True)]:
        rig = FakeRig()
        policy = FixedChunkPolicy(chunk_size=8, step=0.1, delay_s=delay)
        src = PolicySource(policy, "x", ChunkConfig(asynchronous=asynchronous), fps=fps)
        res = run_episode(rig, src, None, LoopConfig(fps=fps, max_duration_s=seconds), src.stop)
        src.close()
        out[mode] = dict(rate=res.ticks / res.duration_s, late=res.late_ticks, held=src.held_ticks,
                         ticks=res.ticks, inferences=src.inferences, jitter=res.jitter_p99_ms)
    return out


def bench_estop(trials: int = 20, fps: float = 30.0):
    lat = []
    for i in range(trials):
        rig = FakeRig()
        src = PolicySource(FixedChunkPolicy(chunk_size=8, step=1.0), "x", ChunkConfig(), fps=fps)
        pressed = {}

        def press(_src=src, _p=pressed, _i=i):
            time.sleep(0.3 + 0.007 * _i)  # land at different phases of the tick
            _p["t"] = time.monotonic()
            _src.estop.set()

        th = threading.Thread(target=press)
        th.start()
        run_episode(rig, src, None, LoopConfig(fps=fps, max_duration_s=5), src.stop)
        th.join()
        src.close()
        last = rig.robot.sent[-1][0]
        lat.append(max(0.0, last - pressed["t"]))
    return lat


def main(argv=None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--calls", type=int, default=200)
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--no-append", action="store_true")
    a = ap.parse_args(argv)
    server = bench_server(a.calls)
    slow = bench_slow_policy(a.seconds)
    estop = bench_estop()
    lines = []
    lines.append(f"\n## Rollout: policy server, slow policy off the loop thread, e-stop "
                 f"({dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC)\n")
    lines.append(f"- machine: 2-core CPU, shared (other helpers were running tests while this ran); "
                 f"CPython {platform.python_version()}")
    lines.append(f"- command: `python bench/rollout.py --calls {a.calls} --seconds {a.seconds}`")
    lines.append("- policy: a test double that answers at once (server rows) or after 100 ms (loop rows), chunk 8 x 6\n")
    lines.append("| policy call, images sent | in-process p50 (ms) | RemotePolicy loopback p50 / p99 (ms) |")
    lines.append("|---|---|---|")
    for label, lp50, rp50, rp99 in server:
        lines.append(f"| {label} | {lp50:.3f} | {rp50:.2f} / {rp99:.2f} |")
    lines.append("")
    lines.append(f"| 30 Hz loop, 100 ms policy, {a.seconds:.0f} s | achieved Hz | late ticks | held ticks | "
                 "chunks | p99 jitter (ms) |")
    lines.append("|---|---|---|---|---|---|")
    for mode, r in slow.items():
        lines.append(f"| inference {mode} | {r['rate']:.1f} | {r['late']} | {r['held']} | {r['inferences']} | "
                     f"{r['jitter']:.1f} |")
    lines.append("")
    lines.append(f"- e-stop to last command received by the arm, 30 Hz, {len(estop)} trials: "
                 f"p50 {pct(estop, 50):.1f} ms, max {pct(estop, 100):.1f} ms (one tick = 33.3 ms)")
    report(lines, append=not a.no_append)
    return 0


if __name__ == "__main__":
    sys.exit(main())
