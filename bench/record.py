"""Record-loop benchmark: three test-pattern cameras 640x480 @ 30 fps + a 12-joint arm for N seconds.

Two writers, each in its own child process (so peak RSS is per mode), in the same run:
- ``store``: the episode store's writer (one encoder thread per camera behind a bounded queue);
- ``sync`` (baseline): the same H.264 settings, encoded on the loop thread inside add_tick.

Reports: ticks run vs. ticks due, % of camera frames recorded, every loss accounted
(encoded + dropped == ticks x cameras; stale = a camera frame repeated because it had not advanced),
late ticks, p99 tick jitter, stop-to-committed latency (finish() wall time), peak RSS.
Appends a section to docs/benchmarks.md.

    .venv/bin/python bench/record.py              # 60 s per mode
    .venv/bin/python bench/record.py --seconds 10 # a shorter run
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


class FakeArm12:
    """A 12-joint arm that follows its goal at once (benchmark double, never used by the product)."""

    def __init__(self) -> None:
        self.joint_names = [f"joint_{i}" for i in range(12)]
        self.joint_limits = (np.full(12, -180.0, np.float32), np.full(12, 180.0, np.float32))
        self.q = np.zeros(12, np.float32)
        self.name = "fake12"

    def get_observation(self):
        return {"observation.state": self.q.copy()}

    def send_action(self, action):
        self.q = np.clip(np.asarray(action, np.float32), *self.joint_limits)
        return self.q


class SineSource:
    def __call__(self, obs, frames, tick):
        from recorder.loop import ActionStep

        return ActionStep(np.sin(np.arange(12, dtype=np.float32) + tick / 30.0) * 45.0)


class BenchRig:
    def __init__(self, width: int, height: int, fps: float) -> None:
        from recorder.devices.configs import TestPatternCameraConfig
        from recorder.devices.test_pattern import TestPatternCamera

        self.robot = FakeArm12()
        self.cameras = {n: TestPatternCamera(TestPatternCameraConfig(width=width, height=height, fps=fps), name=n)
                        for n in ("cam0", "cam1", "cam2")}

    def connect(self):
        for c in self.cameras.values():
            c.connect()

    def disconnect(self):
        for c in self.cameras.values():
            c.disconnect()

    def snapshot(self):
        return {"name": "bench", "cameras": {n: [c.width, c.height] for n, c in self.cameras.items()}}


class SyncWriter:
    """Baseline: encode every frame with PyAV on the calling (loop) thread; low-dim kept and written at finish."""

    def __init__(self, folder: Path, cams: dict, fps: float) -> None:
        import av

        from recorder.store.types import CameraSpec

        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)
        spec = CameraSpec(width=640, height=480)
        self._out = {}
        for name, (w, h) in cams.items():
            c = av.open(str(folder / f"{name}.mp4"), "w", options={"movflags": "frag_keyframe+empty_moov"})
            s = c.add_stream("libx264", rate=int(fps))
            s.width, s.height, s.pix_fmt = w, h, "yuv420p"
            s.options = {"preset": spec.effective_preset, "crf": str(spec.effective_crf)}
            s.codec_context.gop_size = spec.gop
            self._out[name] = (c, s)
        self.rows: list[dict] = []
        self.frames_written = {n: 0 for n in cams}

    class _Stats:
        def __init__(self, w):
            self.frames_dropped = {n: 0 for n in w._out}
            self.frames_written = w.frames_written
            self.ticks = len(w.rows)

    @property
    def stats(self):
        return SyncWriter._Stats(self)

    def add_tick(self, t, frames, timestamps, values, stale=None):
        import av

        for name, img in frames.items():
            c, s = self._out[name]
            for pkt in s.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                c.mux(pkt)
            self.frames_written[name] += 1
        self.rows.append({"t": t, **{f"ts.{k}": v for k, v in timestamps.items()},
                          **{k: np.asarray(v).tolist() for k, v in values.items()}})

    def mark_segment(self, *a, **k):
        pass

    def finish(self, **_):
        import pyarrow as pa
        import pyarrow.feather as feather

        for c, s in self._out.values():
            for pkt in s.encode():
                c.mux(pkt)
            c.close()
        feather.write_feather(pa.Table.from_pylist(self.rows), str(self.folder / "lowdim.arrow"))


def run_mode(mode: str, seconds: float, width: int, height: int, fps: float) -> dict:
    from recorder.loop import LoopConfig, lowdim_spec, run_episode
    from recorder.store import CameraSpec, Store

    rig = BenchRig(width, height, fps)
    rig.connect()
    tmp = Path(tempfile.mkdtemp(prefix=f"bench-record-{mode}-"))
    store = None
    try:
        if mode == "store":
            store = Store.open(tmp / "home")
            writer = store.begin_episode(
                dataset="bench", task="bench", fps=fps, rig=rig.snapshot(), source="teleop",
                cameras={n: CameraSpec(width=width, height=height) for n in rig.cameras}, lowdim=lowdim_spec(rig),
            )
        else:
            writer = SyncWriter(tmp / "sync", {n: (width, height) for n in rig.cameras}, fps)
        time.sleep(0.5)
        stop = threading.Event()
        timer = threading.Timer(seconds, stop.set)  # a wall-clock window: a loop that falls behind records fewer ticks
        timer.start()
        res = run_episode(rig, SineSource(), writer, LoopConfig(fps=fps), stop, None)
        t_stop = time.monotonic()
        stats = writer.stats
        writer.finish(notes="bench")
        latency = time.monotonic() - t_stop
        written = dict(stats.frames_written) if mode == "sync" else None
        if mode == "store":
            (info,) = store.episodes(dataset="bench")
            with store.open_episode(info.id) as r:
                low = r.lowdim()
                written = {n: int(info.num_frames - low[f"dropped.{n}"].sum()) for n in rig.cameras}
                stored_ticks = len(low["t"])
            dropped = dict(info.dropped)
        else:
            stored_ticks = len(writer.rows)
            dropped = {n: 0 for n in rig.cameras}
    finally:
        rig.disconnect()
        if store is not None:
            store.close()
        shutil.rmtree(tmp, ignore_errors=True)
    due = int(seconds * fps) + 1  # ticks at t = 0, 1/fps, ... within the window
    cams = len(rig.cameras)
    return {
        "mode": mode, "seconds": seconds, "due_ticks": due, "ticks": res.ticks, "stored_ticks": stored_ticks,
        "frames_written": sum(written.values()), "frames_dropped": sum(dropped.values()),
        "frames_stale": sum(res.stale.values()), "frames_due": due * cams,
        "accounted": sum(written.values()) + sum(dropped.values()) == stored_ticks * cams,
        "frames_expected": stored_ticks * cams,
        "late_ticks": res.late_ticks, "jitter_p99_ms": res.jitter_p99_ms, "jitter_max_ms": res.jitter_max_ms,
        "tick_mean_ms": res.timings_mean_ms["tick"], "write_p99_ms": res.timings_p99_ms["write"],
        "stop_to_committed_s": latency, "achieved_hz": res.ticks / max(1e-9, res.duration_s),
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0,
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--width", type=int, default=640)
    ap.add_argument("--height", type=int, default=480)
    ap.add_argument("--fps", type=float, default=30.0)
    ap.add_argument("--mode", choices=["store", "sync"], help=argparse.SUPPRESS)
    ap.add_argument("--no-append", action="store_true", help="print only, do not append to docs/benchmarks.md")
    args = ap.parse_args()
    if args.mode:
        print(json.dumps(run_mode(args.mode, args.seconds, args.width, args.height, args.fps)))
        return 0
    rows = []
    for mode in ("store", "sync"):
        cmd = [sys.executable, __file__, "--mode", mode, "--seconds", str(args.seconds), "--width", str(args.width),
               "--height", str(args.height), "--fps", str(args.fps)]
        out = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})
        if out.returncode != 0:
            print(out.stderr, file=sys.stderr)
            return 1
        rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
    head = ("| writer | ticks recorded / due | loop Hz | frames encoded / ticks x cams | dropped (counted) "
            "| stale repeats (counted) | all accounted | late ticks | p99 jitter ms | stop-to-committed s | peak RSS MB |")
    lines = [head, "|" + "---|" * 11]
    for r in rows:
        pct_t = 100.0 * r["stored_ticks"] / max(1, r["due_ticks"])
        pct_f = 100.0 * r["frames_written"] / max(1, r["frames_expected"])
        lines.append(
            f"| {'store (encoder threads, bounded queues)' if r['mode'] == 'store' else 'baseline: sync encode on loop thread'} "
            f"| {r['stored_ticks']} / {r['due_ticks']} ({pct_t:.2f}%) | {r['achieved_hz']:.1f} "
            f"| {r['frames_written']} / {r['frames_expected']} ({pct_f:.2f}%) "
            f"| {r['frames_dropped']} | {r['frames_stale']} | {'yes' if r['accounted'] else 'NO'} | {r['late_ticks']} "
            f"| {r['jitter_p99_ms']:.1f} | {r['stop_to_committed_s']:.2f} | {r['peak_rss_mb']:.0f} |")
    table = "\n".join(lines)
    print(table)
    if not args.no_append:
        cmd = " ".join(["python bench/record.py"] + ([f"--seconds {args.seconds:g}"] if args.seconds != 60 else []))
        section = (
            f"\n## Record loop: 3 cameras {args.width}x{args.height} @ {args.fps:g} fps + 12-float state/action "
            f"({dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC)\n\n"
            f"Machine: 2-core CPU, shared (other helpers were running builds/tests while this ran). "
            f"Command: `{cmd}`. {args.seconds:g} s per writer, each in its own process.\n"
            "The loop runs for a fixed wall-clock window; \"ticks recorded / due\" is stored low-dim rows out of "
            "window x fps (a loop that falls behind records fewer). A dropped frame (encoder queue full) is counted and "
            "marked in the low-dim table; a stale repeat is a tick whose camera had no new frame yet (the camera's own "
            "capture thread was starved), counted and stored as `stale.<cam>` segments.\n\n"
            f"{table}\n"
        )
        with open(ROOT / "docs" / "benchmarks.md", "a", encoding="utf-8") as f:
            f.write(section)
    return 0


if __name__ == "__main__":
    sys.exit(main())
