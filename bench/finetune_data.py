"""Training dataloader throughput: samples/s at 224 px from the episode store (CPU).

    .venv/bin/python bench/finetune_data.py [--episodes 12] [--frames 100] [--size 320x240] [--samples 600] [--no-append]

Each sample = one camera frame decoded from the store by exact seek, OpenVLA augmentation (random
resized crop 0.9 + colour jitter), resized to 224x224, plus an 8-step normalized action chunk,
batched by 8 through a torch DataLoader. Measured in the same run:

- baseline: a naive dataset that opens the store and the episode for every sample (no reader cache);
- ours, full shuffle, 0 and 2 workers (each worker keeps its own store and readers open);
- ours, block shuffle (``--decode-block 8`` / ``16``: batches walk 8 blocks of consecutive ticks forward).
"""

from __future__ import annotations

import argparse
import itertools
import platform
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from finetune.data import EpisodeDataset, StreamBatchSampler, StreamSampler, build_datasets  # noqa: E402
from recorder.store import CameraSpec, Store  # noqa: E402

BATCH = 8


def write_store(home: Path, episodes: int, frames: int, w: int, h: int) -> None:
    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:h, 0:w]
    with Store.open(home) as store:
        for e in range(episodes):
            wr = store.begin_episode(dataset="bench", task="pick up the red cube", fps=30.0, source="scripted",
                                     cameras={"front": CameraSpec(width=w, height=h, queue_size=4096)},
                                     lowdim={"observation.state": (6,), "action": (6,)})
            for t in range(frames):
                img = np.empty((h, w, 3), np.uint8)
                img[..., 0] = (x + 3 * t + 17 * e) % 256
                img[..., 1] = (y + 2 * t) % 256
                img[..., 2] = ((x + y) // 2 + t) % 256
                img ^= rng.integers(0, 24, (h, w, 3), dtype=np.uint8)
                a = np.sin(0.1 * t + np.arange(6) + e).astype(np.float32) * 40
                wr.add_tick(t=t / 30, frames={"front": img}, values={"observation.state": a, "action": a})
            wr.finish(success=True)


class NaiveDataset(EpisodeDataset):
    """Baseline: open the store and the episode for every sample (what a first implementation does)."""

    def _reader(self, episode_id: int, tick: int = 0):
        for r, _last in self._readers.values():
            r.close()
        self._readers.clear()
        if self._store is not None:
            self._store.close()
        self._store = Store.open(self.home)
        reader = self._store.open_episode(episode_id)
        self._readers[(episode_id, 0)] = (reader, tick)
        return reader


def collate(items):
    return np.stack([it["images"][0] for it in items]), np.stack([it["actions"] for it in items])


def measure(dataset, *, workers: int, block: int, samples: int) -> float:
    from torch.utils.data import DataLoader

    sampler = StreamBatchSampler(StreamSampler(len(dataset), 0, block=block, interleave=BATCH, lanes=max(1, workers)),
                                 BATCH)
    kw = {"num_workers": workers, "collate_fn": collate}
    if workers:
        kw["prefetch_factor"] = 4
    it = iter(DataLoader(dataset, batch_sampler=sampler, **kw))
    next(it)  # workers started, first readers open
    t0 = time.perf_counter()
    n = 0
    for images, _ in itertools.islice(it, max(1, samples // BATCH)):
        assert images.shape[1:] == (224, 224, 3)
        n += len(images)
    dt = time.perf_counter() - t0
    del it
    return n / dt


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--episodes", type=int, default=12)
    ap.add_argument("--frames", type=int, default=100)
    ap.add_argument("--size", default="320x240")
    ap.add_argument("--samples", type=int, default=600)
    ap.add_argument("--no-append", action="store_true")
    args = ap.parse_args()
    w, h = (int(v) for v in args.size.split("x"))
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp) / "home"
        t0 = time.perf_counter()
        write_store(home, args.episodes, args.frames, w, h)
        t_write = time.perf_counter() - t0
        data = build_datasets(home, "bench", cameras=["front"], n_images=1, image_size=224, chunk_size=8,
                              val_fraction=0.0, seed=0, augment=True, use_state=False)
        ds = data.train
        naive = NaiveDataset(home, ds.episodes, ds.cameras, 224, 8, data.norm_stats, "bench", augment=True)
        rows = [
            ("baseline: reopen store + episode per sample, 2 workers", measure(naive, workers=2, block=1,
                                                                                samples=args.samples // 2)),
            ("ours: full shuffle, 0 workers", measure(ds, workers=0, block=1, samples=args.samples // 2)),
            ("ours: full shuffle, 2 workers", measure(ds, workers=2, block=1, samples=args.samples)),
            ("ours: --decode-block 8, 2 workers", measure(ds, workers=2, block=8, samples=args.samples)),
            ("ours: --decode-block 16, 2 workers", measure(ds, workers=2, block=16, samples=args.samples)),
        ]
    base = rows[0][1]
    lines = [f"| {name:<56} | {sps:8.1f} | {sps / base:5.2f}x |" for name, sps in rows]
    table = "\n".join([f"| {'configuration':<56} | samples/s | vs baseline |", f"|{'-' * 58}|----------|-------|",
                       *lines])
    print(table)
    if not args.no_append:
        stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
        section = (
            f"\n## Fine-tune dataloader: samples/s at 224 px from the store ({stamp})\n\n"
            f"- machine: 2-core CPU, shared (other helpers were running tests at the same time); "
            f"CPython {platform.python_version()}\n"
            f"- command: `python bench/finetune_data.py --episodes {args.episodes} --frames {args.frames} "
            f"--size {args.size} --samples {args.samples}`\n"
            f"- data: {args.episodes} episodes x {args.frames} ticks, 1 camera {args.size} h264 (store defaults, "
            f"keyframe every 10 ticks), written in {t_write:.1f} s; sample = 1 frame random-crop 0.9 + colour "
            f"jitter -> 224x224 + 8x6 action chunk; batch {BATCH}; goal >= 300 samples/s\n\n{table}\n")
        with open(ROOT / "docs" / "benchmarks.md", "a") as fh:
            fh.write(section)
    return 0


if __name__ == "__main__":
    sys.exit(main())
