"""Where a small model's fine-tune step time goes (issue 15's budget): the data loader alone, the GPU step alone,
and the recipe's real loop, per head and batch size, in one process, on synthetic in-memory episodes.

    python3 bench/train_speed.py --heads chunk,flow,fast,tokens --batches 128,512 --steps 60 --out $OUT

Each row builds a ``finetune.recipe.FinetuneRecipe`` exactly as bench/sim_heads.py does (the `small` random-init
model, 2 cameras at 112 px from memory, proprio, LoRA r=32 on every linear layer, fp32 + TF32), then measures
(1) ``loader``: batches/s of the recipe's own DataLoader with nothing else running; (2) ``gpu step``: forward +
backward + AdamW on ONE batch already on the device, repeated, synchronised only at the end (the ceiling without
input or host syncs); (3) ``recipe``: ``recipe.train()`` for ``--steps`` steps (what a run gets). Frames and
actions are random: speed only, nothing is learned that matters.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

DATASET = "speed"
INSTRUCTIONS = ("pick up the red cube", "push the red cube onto the green square")


def build_store(home: Path, episodes: int, ticks: int, seed: int = 0) -> list[int]:
    from recorder.store import Store

    rng = np.random.default_rng(seed)
    ids = []
    with Store.open(home) as store:
        for i in range(episodes):
            w = store.begin_episode(dataset=DATASET, task=INSTRUCTIONS[i % 2], fps=30.0, source="scripted",
                                    rig={"name": "sim", "bench": "train_speed", "realtime": False},
                                    lowdim={"observation.state": (6,), "action": (6,)})
            walk = np.cumsum(rng.normal(0, 1, (ticks, 6)), 0).astype(np.float32)
            for t in range(ticks):
                w.add_tick(t=t / 30.0, values={"observation.state": walk[t], "action": walk[t] + 0.5})
            ids.append(w.finish(success=True).id)
    return ids


def config(args, head: str, batch: int, steps: int, model: str, targets: str):
    from finetune.run_config import FinetuneConfig

    return FinetuneConfig(
        dataset=DATASET, cameras=list(args.cameras), val_fraction=0.0, augment=False, use_state=True,
        num_workers=args.loader_workers, model=model, action_head=head, chunk_size=args.chunk, lora_rank=32,
        lora_alpha=32, lora_targets=targets, steps=steps, batch_size=batch, lr=1e-3, warmup_steps=5,
        eval_every=0, save_every=10**9, log_every=max(1, steps // 4), seed=7, dtype="fp32")


def measure(args, home: Path, work: Path, head: str, batch: int) -> dict:
    import torch

    from bench.sim_learning_model import prepare_small_model
    from finetune.recipe import FinetuneRecipe, _to_device

    model, targets = prepare_small_model(work, "small", action_head=head, chunk=args.chunk, action_dim=6,
                                         n_images=len(args.cameras), state_dim=6)
    out: dict = {"head": head, "batch": batch}
    t0 = time.perf_counter()
    rec = FinetuneRecipe(config(args, head, batch, args.steps, str(model), targets), home,
                         run_id=f"{head}-{batch}", install_signal_handlers=False)
    rec.setup()
    out["setup_s"] = time.perf_counter() - t0
    # (1) the loader alone
    it = iter(rec.train_loader)
    next(it)
    t0 = time.perf_counter()
    n = 0
    while time.perf_counter() - t0 < args.seconds:
        batch_, _ = next(it)
        n += 1
    out["loader_samples_per_s"] = n * batch / (time.perf_counter() - t0)
    del it
    # (2) the GPU step alone, one batch on the device, no host sync until the end
    model_ = rec.train_model
    model_.train()
    b = _to_device(batch_, rec.device)
    opt = rec.optimizer

    def step():
        loss = model_(**b).loss
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        return loss

    for _ in range(3):
        step()
    sync = torch.cuda.synchronize if rec.device.type == "cuda" else (lambda: None)
    sync()
    t0 = time.perf_counter()
    k = 0
    while time.perf_counter() - t0 < args.seconds:
        for _ in range(5):
            loss = step()
        k += 5
        sync()
    dt = time.perf_counter() - t0
    out["gpu_step_ms"] = 1000 * dt / k
    out["gpu_samples_per_s"] = k * batch / dt
    loss.item()
    # (3) the recipe's real loop (a fresh recipe: its optimizer and loader untouched by the above)
    rec.cleanup()
    rec2 = FinetuneRecipe(config(args, head, batch, args.steps, str(model), targets), home,
                          run_id=f"{head}-{batch}-run", install_signal_handlers=False)
    t0 = time.perf_counter()
    rec2.run()
    rows = [json.loads(x) for x in (rec2.path / "metrics.jsonl").read_text().splitlines()]
    sps = [r["samples_per_s"] for r in rows if r.get("event") == "train"]
    out["recipe_samples_per_s"] = float(np.median(sps[1:] or sps))
    out["recipe_total_s"] = time.perf_counter() - t0
    out["gpu_mem_gb"] = max([r.get("gpu_mem_gb", 0) for r in rows if r.get("event") == "train"] or [0])
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--work", default="/tmp/train_speed")
    p.add_argument("--out", default=None)
    p.add_argument("--heads", default="chunk,flow,fast,tokens")
    p.add_argument("--batches", default="128,512")
    p.add_argument("--steps", type=int, default=60, help="steps of the recipe row")
    p.add_argument("--seconds", type=float, default=6.0, help="seconds of the loader and the gpu-step rows")
    p.add_argument("--episodes", type=int, default=120)
    p.add_argument("--ticks", type=int, default=90)
    p.add_argument("--chunk", type=int, default=8)
    p.add_argument("--loader-workers", type=int, default=3)
    p.add_argument("--threads", type=int, default=1, help="torch threads of this process")
    p.add_argument("--cameras", default="front,wrist")
    args = p.parse_args(argv)
    args.cameras = args.cameras.split(",")
    import multiprocessing as mp
    import shutil

    import torch

    from bench.sim_learning import install_memory_frames

    mp.set_start_method("fork", force=True)
    torch.set_num_threads(args.threads)
    if torch.cuda.is_available():
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    work = Path(args.work)
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    home = work / "home"
    ids = build_store(home, args.episodes, args.ticks)
    rng = np.random.default_rng(1)
    frames = {c: rng.integers(0, 255, (len(ids) * args.ticks, 112, 112, 3), dtype=np.uint8) for c in args.cameras}
    offsets = {eid: (i * args.ticks, (i + 1) * args.ticks) for i, eid in enumerate(ids)}
    install_memory_frames(lambda eid: {c: frames[c][offsets[eid][0]:offsets[eid][1]] for c in frames},
                          args.cameras)
    rows = []
    for head in args.heads.split(","):
        for batch in [int(b) for b in args.batches.split(",")]:
            r = measure(args, home, work, head, batch)
            rows.append(r)
            print(json.dumps(r), flush=True)
    lines = ["| head | batch | loader samples/s | GPU step ms | GPU-step samples/s | recipe samples/s | set-up s |",
             "|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['head']} | {r['batch']} | {r['loader_samples_per_s']:.0f} | {r['gpu_step_ms']:.1f} | "
                     f"{r['gpu_samples_per_s']:.0f} | {r['recipe_samples_per_s']:.0f} | {r['setup_s']:.1f} |")
    text = "\n".join(lines)
    print(text)
    if args.out:
        Path(args.out).mkdir(parents=True, exist_ok=True)
        (Path(args.out) / "train_speed.json").write_text(json.dumps(rows, indent=1))
        (Path(args.out) / "train_speed.md").write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
