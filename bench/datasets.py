"""Datasets benchmarks: viewer random-seek latency (two cameras) and LeRobot export speed.

    .venv/bin/python bench/datasets.py [--frames 300] [--episodes 4] [--size 320x240] [--no-append]

Seek: the viewer's decode path (``EpisodeReader.frame`` per camera, as ``FrameDecodeWorker`` calls it)
at random ticks, against a baseline in the same run that decodes each camera's video from the start
up to the tick (what a player without a packet index does).
Export: ``export_lerobot`` in frames/s (one frame = one tick, all cameras), against the two halves of
the work measured alone in the same run: decoding the stored frames, and encoding them with the
export's encoder settings.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from recorder.interop.lerobot import _CODECS, export_lerobot  # noqa: E402
from recorder.store import CameraSpec, EpisodeReader, Store  # noqa: E402

CAMERAS = ("front", "wrist")


def synthetic_frame(i: int, cam: int, w: int, h: int, rng: np.random.Generator) -> np.ndarray:
    """A moving gradient plus noise: content that costs a realistic amount to encode."""
    y, x = np.mgrid[0:h, 0:w]
    img = np.empty((h, w, 3), np.uint8)
    img[..., 0] = (x + 3 * i + 40 * cam) % 256
    img[..., 1] = (y + 2 * i) % 256
    img[..., 2] = ((x + y) // 2 + i) % 256
    noise = rng.integers(0, 12, size=(h, w, 1), dtype=np.uint8)
    return img + noise


def record(store: Store, dataset: str, n: int, w: int, h: int, seed: int):
    rng = np.random.default_rng(seed)
    writer = store.begin_episode(
        dataset=dataset, task="pick up the red cube", fps=30.0, source="scripted",
        cameras={c: CameraSpec(width=w, height=h, queue_size=n + 1) for c in CAMERAS},
        lowdim={"observation.state": (6,), "action": (6,)})
    for i in range(n):
        frames = {c: synthetic_frame(i, k, w, h, rng) for k, c in enumerate(CAMERAS)}
        s = rng.normal(size=6).astype(np.float32)
        writer.add_tick(t=i / 30, frames=frames, timestamps={c: i / 30 for c in CAMERAS},
                        values={"observation.state": s, "action": s})
    return writer.finish(success=True)


def decode_from_start(path: Path, tick: int) -> np.ndarray:
    """Baseline seek: open the file and decode frames from the first one up to ``tick``."""
    with av.open(str(path)) as c:
        for k, frame in enumerate(c.decode(video=0)):
            if k == tick:
                return frame.to_ndarray(format="rgb24")
    raise IndexError(tick)


def pct(xs: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(xs), q))


def bench_seek(info, seeks: int, seed: int) -> dict:
    rng = np.random.default_rng(seed)
    ticks = rng.integers(0, info.num_frames, size=seeks).tolist()
    reader = EpisodeReader(info)
    for c in CAMERAS:  # open decoders (packet index scan) outside the timing, as the viewer does once
        reader.frame(c, 0)
    t_open0 = time.perf_counter()
    EpisodeReader(info).frame(CAMERAS[0], 0)
    open_ms = (time.perf_counter() - t_open0) * 1e3
    ours = []
    for t in ticks:
        t0 = time.perf_counter()
        for c in CAMERAS:
            reader.frame(c, t)
        ours.append((time.perf_counter() - t0) * 1e3)
    base = []
    for t in ticks[: max(5, seeks // 4)]:
        t0 = time.perf_counter()
        for c in CAMERAS:
            decode_from_start(info.path / "video" / f"{c}.mp4", t)
        base.append((time.perf_counter() - t0) * 1e3)
    # playback: step forward one tick at a time
    t0 = time.perf_counter()
    steps = min(120, info.num_frames)
    for t in range(steps):
        for c in CAMERAS:
            reader.frame(c, t)
    step_ms = (time.perf_counter() - t0) * 1e3 / steps
    reader.close()
    return {"ticks": ticks, "ours": ours, "base": base, "step_ms": step_ms, "open_ms": open_ms}


def bench_seek_qt(info, ticks: list[int]) -> list[float]:
    """The same seeks end to end through the viewer's FrameDecodeWorker (its QThread, queued signals)."""
    import os

    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    from PyQt6.QtCore import QCoreApplication

    from studio.datasets.workers import FrameDecodeWorker, WorkerThread

    app = QCoreApplication.instance() or QCoreApplication([])
    worker = FrameDecodeWorker()
    thread = WorkerThread(worker, "bench-decoder")
    got: list[int] = []
    worker.frames_decoded.connect(lambda _eid, tick, _frames: got.append(tick))
    worker.episode_loaded.connect(lambda *_: got.append(-1))

    def wait_for(tick: int) -> None:
        deadline = time.perf_counter() + 10
        while tick not in got and time.perf_counter() < deadline:
            app.processEvents()
            time.sleep(0.0002)

    worker.open_episode(info)
    wait_for(-1)
    worker.request(0)  # open the decoders (packet index scan) outside the timing, as in bench_seek
    wait_for(0)
    out = []
    for t in ticks:
        got.clear()
        t0 = time.perf_counter()
        worker.request(t)
        wait_for(t)
        out.append((time.perf_counter() - t0) * 1e3)
    thread.stop()
    return out


def bench_export(store: Store, episodes: list, out: Path) -> dict:
    frames = sum(e.num_frames for e in episodes)
    t0 = time.perf_counter()
    res = export_lerobot(store, out, episodes)
    export_s = time.perf_counter() - t0
    # the halves alone
    t0 = time.perf_counter()
    decoded = []
    for e in episodes:
        with EpisodeReader(e) as r:
            for c in CAMERAS:
                decoded.append(r.frames(c, range(e.num_frames)))
    decode_s = time.perf_counter() - t0
    encoder, _, options = _CODECS["h264"]
    t0 = time.perf_counter()
    with av.open(str(out.parent / "encode_only.mp4"), "w") as cont:
        h, w = decoded[0].shape[1:3]
        s = cont.add_stream(encoder, rate=30)
        s.width, s.height, s.pix_fmt = w, h, "yuv420p"
        s.options = {**options, "g": "30"}
        k = 0
        for block in decoded:
            for img in block:
                f = av.VideoFrame.from_ndarray(img, format="rgb24")
                f.pts, f.time_base = k, Fraction(1, 30)
                k += 1
                for p in s.encode(f):
                    cont.mux(p)
        for p in s.encode(None):
            cont.mux(p)
    encode_s = time.perf_counter() - t0
    return {"frames": frames, "export_s": export_s, "decode_s": decode_s, "encode_s": encode_s,
            "episodes": res.episodes}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=300, help="ticks per episode (30 fps)")
    ap.add_argument("--episodes", type=int, default=4, help="episodes exported")
    ap.add_argument("--size", default="320x240")
    ap.add_argument("--seeks", type=int, default=60)
    ap.add_argument("--no-append", action="store_true", help="print only, do not append to docs/benchmarks.md")
    args = ap.parse_args(argv)
    w, h = (int(v) for v in args.size.split("x"))

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        store = Store.open(tmp / "home")
        t0 = time.perf_counter()
        eps = [record(store, "bench", args.frames, w, h, seed=i) for i in range(args.episodes)]
        rec_s = time.perf_counter() - t0
        seek = bench_seek(eps[0], args.seeks, seed=0)
        seek["qt"] = bench_seek_qt(eps[0], seek["ticks"])
        exp = bench_export(store, eps, tmp / "export")
        store.close()

    ours_med, base_med = statistics.median(seek["ours"]), statistics.median(seek["base"])
    rows = [
        ("random seek, 2 cameras: indexed decode (viewer)", f"median {ours_med:.1f} ms, p95 "
         f"{pct(seek['ours'], 95):.1f} ms, max {max(seek['ours']):.1f} ms ({len(seek['ours'])} seeks)"),
        ("same seeks through the viewer's decode thread (Qt)", f"median {statistics.median(seek['qt']):.1f} ms, "
         f"p95 {pct(seek['qt'], 95):.1f} ms"),
        ("random seek, 2 cameras: baseline decode from start", f"median {base_med:.1f} ms, p95 "
         f"{pct(seek['base'], 95):.1f} ms ({len(seek['base'])} seeks)  -> {base_med / ours_med:.1f}x slower"),
        ("step forward one tick, 2 cameras (playback)", f"{seek['step_ms']:.1f} ms/tick "
         f"(= {1000 / seek['step_ms']:.0f} ticks/s)"),
        ("open episode + first frame (packet index scan)", f"{seek['open_ms']:.1f} ms"),
        ("LeRobot v3 export (decode + h264 encode + parquet)", f"{exp['frames'] / exp['export_s']:.0f} frames/s "
         f"({exp['frames']} ticks x 2 cameras in {exp['export_s']:.2f} s)"),
        ("baseline: decode the same frames only", f"{exp['frames'] / exp['decode_s']:.0f} frames/s"),
        ("baseline: encode the same frames only (export settings)", f"{exp['frames'] / exp['encode_s']:.0f} "
         "frames/s"),
    ]
    width = max(len(r[0]) for r in rows)
    table = "\n".join(f"| {a:<{width}} | {b} |" for a, b in rows)
    header = f"| {'measure':<{width}} | result |\n|{'-' * (width + 2)}|--------|"
    cmd = "python bench/datasets.py " + " ".join(argv if argv is not None else sys.argv[1:])
    section = (
        f"\n## Datasets: viewer seek and LeRobot export ({datetime.now(UTC):%Y-%m-%d %H:%M} UTC)\n\n"
        f"- machine: 2-core CPU, shared (other helpers were running tests and builds while this ran); "
        f"{platform.python_implementation()} {platform.python_version()}, PyAV {av.__version__}\n"
        f"- command: `{cmd.strip()}`\n"
        f"- data: {args.episodes} episodes x {args.frames} ticks, 2 cameras {w}x{h} h264 (store defaults: "
        f"keyframe every 10 ticks), recorded in {rec_s:.1f} s\n"
        f"- a frame/tick below means one tick of both cameras\n\n{header}\n{table}\n"
    )
    print(section)
    if not args.no_append:
        doc = ROOT / "docs" / "benchmarks.md"
        if not doc.exists():
            doc.write_text("# Benchmarks\n")
        with open(doc, "a") as f:
            f.write(section)
        print(f"appended to {doc}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
