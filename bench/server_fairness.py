"""Policy server under load: per-client latency and fairness with N clients on loopback.

    python bench/server_fairness.py [--clients 1,8,32] [--seconds 4] [--model-ms 5] [--no-append]

The server (``finetune.server.PolicyServer``, token on) runs in this process with a stand-in model that
takes ``--model-ms`` per call (sleeping: the numbers are the server's queueing, not a model's speed). The
clients run as threads of one child process, each a ``RemotePolicy`` sending one 224x224 frame + state
per call, back to back, for ``--seconds`` (and at most ``--max-calls`` calls). Per scenario: throughput,
the median and worst per-client p50 and p99, the spread (max - min) of the per-client p50s, the fewest and
most calls a client got, and "busy" replies (the client retries them). The 1-client row is the same-run
baseline. A last row repeats the largest N with a queue smaller than N, so some requests meet "busy".

Appends a section to docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import multiprocessing as mp
import os
import platform
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench._doc import report  # noqa: E402
from finetune.server import PolicyServer, RemotePolicy  # noqa: E402

TOKEN = "bench-token"


@dataclass
class _Out:
    actions: np.ndarray
    confidence: None
    latency_s: float


class SleepPolicy:
    """A stand-in model: ``model_s`` per call, chunk 8 x 7."""

    camera_names = ["front"]
    action_dim = 7
    chunk_size = 8
    checkpoint_id = None
    checkpoint_label = None  # recorder.policy.Policy: no checkpoint behind it
    checkpoint_dir = None
    action_head = None

    def __init__(self, model_s: float) -> None:
        self.model_s = model_s

    def predict(self, images, state, instruction):
        t0 = time.perf_counter()
        time.sleep(self.model_s)
        return _Out(np.zeros((8, 7), np.float32), None, time.perf_counter() - t0)


def _clients(url: str, n: int, seconds: float, max_calls: int, out_path: str) -> None:
    """Child process: n client threads, results as JSON lines in out_path."""
    img = np.random.default_rng(0).integers(0, 255, (224, 224, 3), dtype=np.uint8)
    state = np.zeros(7, np.float32)
    barrier = threading.Barrier(n)
    results: list[dict] = [{} for _ in range(n)]

    def run(i):
        lat, busy = [], 0
        with RemotePolicy(url, token=TOKEN, timeout=60) as remote:
            barrier.wait()
            end = time.monotonic() + seconds
            while time.monotonic() < end and len(lat) < max_calls:
                out = remote.predict({"front": img}, state, "pick up the red cube")
                lat.append(out.latency_s)
                busy += out.busy_retries
        results[i] = {"lat": lat, "busy": busy}

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    with open(out_path, "w") as fh:
        json.dump(results, fh)


def scenario(n: int, seconds: float, max_calls: int, model_s: float, max_queue: int, tmp: Path) -> dict:
    policy = SleepPolicy(model_s)
    with PolicyServer(policy, port=0, token=TOKEN, max_queue=max_queue) as srv:
        out = tmp / f"clients-{n}-{max_queue}.json"
        proc = mp.get_context("spawn").Process(target=_clients, args=(srv.url, n, seconds, max_calls, str(out)))
        t0 = time.monotonic()
        proc.start()
        proc.join(seconds * 4 + 60)
        wall = time.monotonic() - t0
        if proc.is_alive():
            proc.kill()
            raise SystemExit(f"{n} clients did not finish")
        busy_server = srv.stats["busy"]
    res = json.loads(out.read_text())
    p50 = [float(np.percentile(r["lat"], 50)) * 1000 for r in res]
    p99 = [float(np.percentile(r["lat"], 99)) * 1000 for r in res]
    calls = [len(r["lat"]) for r in res]
    return {"n": n, "max_queue": max_queue, "calls": sum(calls), "per_s": sum(calls) / seconds,
            "p50_med": float(np.median(p50)), "p50_max": max(p50), "p99_med": float(np.median(p99)),
            "p99_max": max(p99), "spread": max(p50) - min(p50), "calls_min": min(calls), "calls_max": max(calls),
            "busy": busy_server, "wall": wall}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--clients", default="1,8,32")
    ap.add_argument("--seconds", type=float, default=4.0)
    ap.add_argument("--max-calls", type=int, default=2000, help="per client")
    ap.add_argument("--model-ms", type=float, default=5.0)
    ap.add_argument("--max-queue", type=int, default=64, help="the server's queue (the serve default)")
    ap.add_argument("--no-append", action="store_true")
    a = ap.parse_args(argv)
    counts = [int(x) for x in a.clients.split(",")]
    import tempfile

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for n in counts:
            rows.append(scenario(n, a.seconds, a.max_calls, a.model_ms / 1000, a.max_queue, Path(tmp)))
        small = max(1, max(counts) // 4)
        rows.append(scenario(max(counts), a.seconds, a.max_calls, a.model_ms / 1000, small, Path(tmp)))
    lines = [f"\n## Policy server under load: per-client latency and fairness (issue 13 item 16, "
             f"{dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC)\n",
             f"- machine: {os.cpu_count()}-core CPU, shared with other engineers' tests while this ran; "
             f"CPython {platform.python_version()}; server and clients on loopback, clients as threads of one "
             "child process",
             f"- command: `python bench/server_fairness.py --clients {a.clients} --seconds {a.seconds:g} "
             f"--model-ms {a.model_ms:g} --max-queue {a.max_queue}`",
             f"- model: a stand-in that sleeps {a.model_ms:g} ms per call (so the ideal p50 with N clients is about "
             f"N x {a.model_ms:g} ms); one 224x224 frame + state per request; token on; 1 client = same-run baseline\n",
             "| clients | queue | calls/s | p50 median / worst client (ms) | p99 median / worst client (ms) | "
             "p50 spread max-min (ms) | calls per client min / max | busy replies |",
             "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['n']} | {r['max_queue']} | {r['per_s']:.0f} | {r['p50_med']:.1f} / {r['p50_max']:.1f} | "
                     f"{r['p99_med']:.1f} / {r['p99_max']:.1f} | {r['spread']:.1f} | {r['calls_min']} / "
                     f"{r['calls_max']} | {r['busy']} |")
    report(lines, append=not a.no_append)
    return 0


if __name__ == "__main__":
    sys.exit(main())
