"""Episode store benchmark: write throughput, stop-to-committed latency, random-frame read latency.

    .venv/bin/python bench/store.py                       # 20 episodes x 300 frames x 2 cameras 640x480
    .venv/bin/python bench/store.py --episodes 2 --frames 60 --no-append   # quick look

Baseline from the same run: one episode encoded the usual way *after* recording stops (a plain,
non-fragmented MP4 with the encoder's default keyframe spacing): its stop-to-file latency and its
random-frame read latency, next to the store's fragmented, GOP-10 files encoded while recording.
"""

from __future__ import annotations

import argparse
import datetime as dt
import platform
import shlex
import sys
import tempfile
import time
from fractions import Fraction
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from recorder.store import CameraSpec, Store  # noqa: E402
from recorder.store.video import VideoDecoder  # noqa: E402

CAMS = ("front", "wrist")


def make_frames(n: int, h: int, w: int, k: int) -> list[np.ndarray]:
    """Camera-like content: a smooth background, a moving block and mild sensor noise."""
    rng = np.random.default_rng(k)
    y, x = np.mgrid[0:h, 0:w]
    out = []
    for i in range(n):
        img = np.dstack(
            [(x * 160 // w + 2 * i) % 256, (y * 160 // h + 40 * k) % 256, np.full_like(x, 90 + 30 * k)]
        ).astype(np.int16)
        cx, cy = (w // 4 + 5 * i) % (w - 80), (h // 3 + 3 * i) % (h - 80)
        img[cy : cy + 80, cx : cx + 80] = (200, 40, 40)
        img += rng.integers(-3, 4, size=img.shape, dtype=np.int16)
        out.append(np.clip(img, 0, 255).astype(np.uint8))
    return out


def pct(a, q) -> float:
    return float(np.percentile(np.asarray(a), q))


def baseline_after_stop(path: Path, frames: list[np.ndarray], n: int, fps: int, preset: str) -> float:
    """Encode n frames into a plain MP4 with default GOP after the fact; return the wall time."""
    import av

    t0 = time.perf_counter()
    with av.open(str(path), "w", format="mp4") as c:
        s = c.add_stream("libx264", rate=fps, options={"preset": preset, "crf": "23"})
        s.width, s.height, s.pix_fmt = frames[0].shape[1], frames[0].shape[0], "yuv420p"
        s.time_base = Fraction(1, fps)
        for i in range(n):
            f = av.VideoFrame.from_ndarray(frames[i % len(frames)], format="rgb24").reformat(format="yuv420p")
            f.pts = i
            for p in s.encode(f):
                c.mux(p)
        for p in s.encode():
            c.mux(p)
    return time.perf_counter() - t0


def random_reads(decoders: list[VideoDecoder], n_ticks: int, count: int, rng) -> list[float]:
    times = []
    for _ in range(count):
        dec = decoders[int(rng.integers(len(decoders)))]
        i = int(rng.integers(n_ticks))
        t0 = time.perf_counter()
        dec.frame(i)
        times.append(time.perf_counter() - t0)
    return times


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--episodes", type=int, default=20)
    ap.add_argument("--frames", type=int, default=300)
    ap.add_argument("--width", type=int, default=640)
    ap.add_argument("--height", type=int, default=480)
    ap.add_argument("--fps", type=int, default=30)
    ap.add_argument("--codec", default="h264", choices=("h264", "av1"))
    ap.add_argument("--preset", default=None, help="encoder preset (default: the CameraSpec default)")
    ap.add_argument("--reads", type=int, default=300, help="random frame reads per variant")
    ap.add_argument("--home", type=Path, default=None, help="store root (default: a temporary folder)")
    ap.add_argument("--no-append", action="store_true", help="do not append to docs/benchmarks.md")
    args = ap.parse_args(argv)

    tmp = tempfile.TemporaryDirectory(prefix="bench-store-")
    home = args.home or Path(tmp.name) / "store"
    frames = {c: make_frames(60, args.height, args.width, k) for k, c in enumerate(CAMS)}
    spec = CameraSpec(
        width=args.width, height=args.height, codec=args.codec, preset=args.preset, queue_size=64
    )
    preset = spec.effective_preset
    rng = np.random.default_rng(0)

    store = Store.open(home)
    add_tick_s, finish_s, ep_ids, dropped = [], [], [], 0
    t_write0 = time.perf_counter()
    for _ in range(args.episodes):
        w = store.begin_episode(
            dataset="bench",
            task="bench",
            fps=float(args.fps),
            rig={},
            cameras={c: spec for c in CAMS},
            lowdim={"observation.state": (12,), "action": (12,)},
        )
        for i in range(args.frames):
            # sustained throughput: let the encoders keep up (a paced loop never waits)
            while max(w.stats.queue_depth.values()) >= spec.queue_size - 2:
                time.sleep(0.001)
            vals = {
                "observation.state": rng.standard_normal(12).astype(np.float32),
                "action": rng.standard_normal(12).astype(np.float32),
            }
            t0 = time.perf_counter()
            w.add_tick(frames={c: frames[c][i % 60] for c in CAMS}, values=vals)
            add_tick_s.append(time.perf_counter() - t0)
        while max(w.stats.queue_depth.values()) > 1:  # as in a paced loop, where the encoders keep up
            time.sleep(0.001)
        t0 = time.perf_counter()
        info = w.finish(success=True)
        finish_s.append(time.perf_counter() - t0)
        ep_ids.append(info.id)
        dropped += sum(info.dropped.values())
    write_wall = time.perf_counter() - t_write0
    ticks = args.episodes * args.frames
    write_fps = ticks / write_wall

    eps = store.episodes(dataset="bench")
    decoders = [VideoDecoder(e.path / "video" / f"{c}.mp4", e.fps) for e in eps for c in CAMS]
    store_reads = random_reads(decoders, args.frames, args.reads, rng)
    size_mb = sum(p.stat().st_size for e in eps for p in (e.path / "video").iterdir()) / 1e6
    for d in decoders:
        d.close()
    store.close()

    base_path = Path(tmp.name) / "baseline.mp4"
    base_stop = baseline_after_stop(base_path, frames["front"], args.frames, args.fps, preset)
    base_dec = VideoDecoder(base_path, args.fps)
    base_gop = (
        int(np.diff(np.flatnonzero(base_dec.index.key)).max())
        if base_dec.index.key.sum() > 1
        else args.frames
    )
    base_reads = random_reads([base_dec], args.frames, max(30, args.reads // 5), rng)
    base_dec.close()
    tmp.cleanup()

    rows = [
        (
            "write throughput (ticks/s, 2 cameras + 2x12 floats)",
            f"{write_fps:.1f}",
            f"= {2 * write_fps:.0f} frames/s",
        ),
        ("add_tick p50 / p99 (ms)", f"{1e3 * pct(add_tick_s, 50):.2f} / {1e3 * pct(add_tick_s, 99):.2f}", ""),
        (
            "stop-to-committed: finish() p50 / max (s)",
            f"{pct(finish_s, 50):.3f} / {max(finish_s):.3f}",
            f"baseline encode-after-stop, 1 camera: {base_stop:.2f}",
        ),
        (
            "random frame read p50 / p99 (ms)",
            f"{1e3 * pct(store_reads, 50):.1f} / {1e3 * pct(store_reads, 99):.1f}",
            f"baseline default GOP ({base_gop}): {1e3 * pct(base_reads, 50):.1f} / {1e3 * pct(base_reads, 99):.1f}",
        ),
        ("dropped frames", str(dropped), ""),
        (
            "video size (MB per camera-minute)",
            f"{size_mb / (len(eps) * 2 * args.frames / args.fps / 60):.1f}",
            "",
        ),
    ]
    w0 = max(len(r[0]) for r in rows)
    table = [
        f"| {'metric':<{w0}} | store | baseline / note |",
        f"|{'-' * (w0 + 2)}|-------|-----------------|",
    ]
    table += [f"| {a:<{w0}} | {b} | {c} |" for a, b, c in rows]
    cmd = "python bench/store.py " + " ".join(
        shlex.quote(a) for a in (argv if argv is not None else sys.argv[1:])
    )
    print("\n".join(table))
    if not args.no_append:
        doc = Path(__file__).resolve().parents[1] / "docs" / "benchmarks.md"
        section = [
            "",
            f"## Episode store ({dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC)",
            "",
            f"- machine: 2-core CPU, shared (other helpers were running tests at the same time); "
            f"{platform.python_implementation()} {platform.python_version()}",
            f"- command: `{cmd.strip()}`",
            f"- {args.episodes} episodes x {args.frames} ticks x 2 cameras {args.width}x{args.height} "
            f"{args.codec} preset {preset} GOP {spec.gop}, fragmented MP4; encoding runs while recording",
            "",
            *table,
            "",
        ]
        with open(doc, "a") as f:
            f.write("\n".join(section) + "\n")
        print(f"appended to {doc}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
