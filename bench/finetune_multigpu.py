"""Data-parallel scaling of the LoRA fine-tuning engine: samples/s with 1 GPU and with N GPUs, measured in the
same run on the same machine, on the OpenVLA-7B-shaped model of bench/finetune_gpu.py (random weights built
directly on each GPU in bf16; our lean recipe: bf16 adapters, frozen vision towers under no_grad, LoRA r=32 on
the LLM + projector Linears, activation checkpointing of all LLM layers, fused AdamW), synthetic batches.

One torchrun launch measures both: first the 1-GPU baseline (rank 0 trains the plain, un-wrapped model exactly
as ``vla-studio finetune --gpus 1`` does, the other ranks wait at a barrier), then every rank trains through
DDP as ``finetune/recipe.py`` wraps it (``DDP(model, device_ids=[i])``) and, optionally, a tuned DDP
(``gradient_as_bucket_view``, bucket size; ``static_graph`` left out: with our checkpointed layer loop the
adapters drifted apart across ranks in the CPU/gloo check). Only one model is built per process.

    torchrun --standalone --nproc_per_node 2 bench/finetune_multigpu.py --batch 32 --steps 5
    torchrun --standalone --nproc_per_node 2 bench/finetune_multigpu.py --tiny --steps 2   # CPU, gloo check
"""

from __future__ import annotations

import argparse
import gc
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch  # noqa: E402
import torch.distributed as dist  # noqa: E402

from finetune import distributed as dist_util  # noqa: E402

GiB = 1024**3


def make_batch(vla, bs: int, gen: torch.Generator, device: torch.device) -> dict:
    """One synthetic OpenVLA training batch: 22 prompt tokens, 7 action tokens, EOS; a uint8 image."""
    n_text = 30
    first, last = vla.action_tokenizer.first_token, vla.action_tokenizer.last_token
    ids = torch.randint(3, first, (bs, n_text), generator=gen)
    ids[:, 0] = vla.bos_token_id
    sp = vla.space_token_id or (29871 if first > 29871 else 3)
    ids[:, 21] = sp
    ids[:, 22:29] = torch.randint(first, last + 1, (bs, 7), generator=gen)
    ids[:, 29] = vla.eos_token_id
    labels = torch.full_like(ids, -100)
    labels[:, 22:] = ids[:, 22:]
    s = int(vla.image_size)
    pv = torch.randint(0, 256, (bs, 1, 3, s, s), generator=gen, dtype=torch.uint8)
    return {"pixel_values": pv.to(device), "input_ids": ids.to(device),
            "attention_mask": torch.ones_like(ids).to(device), "labels": labels.to(device)}


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _reset_mem(device: torch.device) -> None:
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)


def _peak(device: torch.device) -> float:
    return torch.cuda.max_memory_allocated(device) / GiB if device.type == "cuda" else 0.0


def train_steps(train_model, params, batches, device, warmup: int, steps: int) -> dict:
    """warm-up + timed steps; returns this rank's step times (s), peak memory (GiB) and last loss."""
    opt = torch.optim.AdamW(params, lr=1e-4, **({"fused": True} if device.type == "cuda" else {}))
    _reset_mem(device)
    times, loss = [], None
    err = None
    try:
        for i in range(warmup + steps):
            b = batches[i % len(batches)]
            _sync(device)
            t0 = time.perf_counter()
            loss = train_model(**b).loss
            loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)
            _sync(device)
            if i >= warmup:
                times.append(time.perf_counter() - t0)
    except torch.OutOfMemoryError:
        err = "OOM"
    out = {"times": times, "peak": _peak(device), "loss": float(loss.item()) if loss is not None else None,
           "err": err}
    del opt
    _reset_mem(device)
    return out


def summarize(name: str, world: int, bs: int, per_rank: list[dict]) -> dict:
    """Global samples/s from the median over steps of the slowest rank's step time."""
    errs = [r["err"] for r in per_rank if r and r.get("err")]
    peaks = [r["peak"] for r in per_rank if r]
    if errs:
        return {"name": name, "world": world, "batch": bs, "err": errs[0], "peaks": peaks}
    steps = [max(ts) for ts in zip(*[r["times"] for r in per_rank if r])]
    step = sorted(steps)[len(steps) // 2]
    return {"name": name, "world": world, "batch": bs, "step_s": step, "sps": world * bs / step,
            "peaks": peaks, "loss": per_rank[0]["loss"]}


def gather(obj, info: dist_util.DistInfo) -> list:
    if not info.enabled:
        return [obj]
    out = [None] * info.world
    dist.all_gather_object(out, obj)
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--batch", default="32", help="per-GPU batch sizes, comma separated (e.g. 32,16)")
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--tiny", action="store_true", help="the tiny OpenVLA on the CPU (gloo): a quick check")
    ap.add_argument("--ddp", default="recipe,tuned", help="DDP setups to measure: recipe (our recipe's "
                    "DDP(model, device_ids)), tuned (gradient_as_bucket_view + --bucket-mb); static (static_graph too: "
                    "on the CPU check its adapters drifted apart across ranks, so it is not in tuned)")
    ap.add_argument("--bucket-mb", type=int, default=50)
    ap.add_argument("--md-out", default=None, help="also write the markdown section to this file")
    ap.add_argument("--append", action="store_true", help="append the section to docs/benchmarks.md")
    args = ap.parse_args(argv)

    use_cuda = torch.cuda.is_available() and not args.tiny
    info = dist_util.init_from_env("cuda" if use_cuda else "cpu")
    device = torch.device("cuda", info.local_rank) if use_cuda else torch.device("cpu")
    if use_cuda:
        torch.cuda.set_device(device)
        torch.backends.cuda.matmul.allow_tf32 = True
    main_rank = info.is_main

    def log(*a):
        if main_rank:
            print(*a, flush=True)

    from peft import LoraConfig, get_peft_model

    from finetune.models.tiny import build_random_openvla

    t0 = time.perf_counter()
    vla = build_random_openvla("tiny" if args.tiny else "7b", device=device,
                               dtype=torch.float32 if args.tiny else torch.bfloat16)
    n_params = sum(p.numel() for p in vla.parameters())
    model = get_peft_model(vla, LoraConfig(r=32, lora_alpha=16, lora_dropout=0.0,
                                           target_modules=vla.lora_target_modules(include_vision=False)),
                           autocast_adapter_dtype=False)
    vla.checkpoint_layers = "all"
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    n_train = sum(p.numel() for p in params)
    build_s = time.perf_counter() - t0
    log(f"world {info.world}: model built in {build_s:.0f} s: {n_params / 1e9:.2f}B params, "
        f"{n_train / 1e6:.1f}M trainable ({'fp32' if args.tiny else 'bf16'})")

    results = []
    for bs in [int(b) for b in args.batch.split(",")]:
        gen = torch.Generator().manual_seed(1000 + info.rank)  # each rank its own samples
        batches = [make_batch(vla, bs, gen, device) for _ in range(2)]
        # -- 1 GPU: rank 0 alone, the plain model (what --gpus 1 runs); the others wait
        if main_rank:
            r = train_steps(model, params, batches, device, args.warmup, args.steps)
            results.append(summarize("1 GPU (no DDP)", 1, bs, [r]))
            log(results[-1])
        dist_util.barrier(info)
        if not info.enabled:
            continue
        # -- N GPUs through DDP
        from torch.nn.parallel import DistributedDataParallel as DDP

        ids = [device.index] if device.type == "cuda" else None
        for kind in args.ddp.split(","):
            if kind == "recipe":
                ddp = DDP(model, device_ids=ids)
            elif kind in ("tuned", "static", "view"):
                ddp = DDP(model, device_ids=ids, static_graph=kind == "static",
                          gradient_as_bucket_view=kind in ("tuned", "view"), bucket_cap_mb=args.bucket_mb)
            else:
                raise SystemExit(f"--ddp: unknown setup {kind!r} (recipe, tuned, static, view)")
            r = train_steps(ddp, params, batches, device, args.warmup, args.steps)
            del ddp  # its reducer removes its gradient hooks, so the next wrapper starts clean
            gc.collect()
            res = summarize(f"{info.world} GPUs, DDP {kind}", info.world, bs, gather(r, info))
            # the adapters must stay identical on every rank (gradients averaged once, the same steps applied)
            sums = gather(float(sum(p.detach().double().sum() for p in params)), info)
            res["ranks_agree"] = max(sums) - min(sums) <= 1e-6 * max(1.0, abs(sums[0]))
            results.append(res)
            log(res)
            dist_util.barrier(info)
        del batches

    if main_rank:
        body = report(results, info.world, args, n_params, n_train, build_s, int(vla.image_size))
        print(body, flush=True)
        if args.md_out:
            Path(args.md_out).write_text(body)
        cmd = (f"torchrun --standalone --nproc_per_node {info.world} bench/finetune_multigpu.py "
               + " ".join(argv if argv is not None else sys.argv[1:]))
        if args.append:
            from bench._gpu_common import append_section

            append_section(f"LoRA fine-tune, data-parallel scaling (bench/finetune_multigpu.py, {info.world} GPUs)",
                           cmd, body)
        (Path(args.md_out).with_suffix(".json").write_text(json.dumps(results, indent=1)) if args.md_out else None)
    dist_util.destroy(info)
    return 0


def report(results: list[dict], world: int, args, n_params: int, n_train: int, build_s: float, px: int) -> str:
    from bench._gpu_common import table

    rows, lines = [], []
    base = {r["batch"]: r for r in results if r["world"] == 1 and "sps" in r}
    for r in results:
        b = base.get(r["batch"])
        peaks = "/".join(f"{p:.1f}" for p in r["peaks"])
        if "err" in r:
            rows.append([r["name"], r["batch"], r["world"] * r["batch"], r["err"], "-", "-", peaks, "-"])
            continue
        ratio = f"{r['sps'] / b['sps']:.2f}x" if b else "-"
        rows.append([r["name"], r["batch"], r["world"] * r["batch"], f"{r['step_s']:.3f}", f"{r['sps']:.1f}",
                     ratio, peaks, {True: "yes", False: "NO"}.get(r.get("ranks_agree"), "-")])
        if r["world"] > 1 and b:
            eff = r["sps"] / (b["sps"] * r["world"])
            lines.append(f"- batch {r['batch']}/GPU, {r['name']}: {r['sps'] / b['sps']:.2f}x the 1-GPU samples/s "
                         f"({eff * 100:.0f}% scaling efficiency); goal >= 1.8x with 2 GPUs: "
                         f"{'met' if r['sps'] / b['sps'] >= 1.8 else 'MISSED'}")
    dev = torch.cuda.get_device_name() if torch.cuda.is_available() and not args.tiny else "CPU (gloo)"
    body = (f"Model: {'tiny OpenVLA' if args.tiny else 'OpenVLA-7B architecture'}, random weights, "
            f"{n_params / 1e9:.2f}B params, built on each rank in {build_s:.0f} s; LoRA r=32 on LLM + projector "
            f"({n_train / 1e6:.1f}M trainable, {'fp32' if args.tiny else 'bf16'} adapters), frozen towers under no_grad, activation checkpointing "
            f"of all LLM layers, fused AdamW; synthetic batches ({px} px, 30 text + 256 image tokens); device "
            f"{dev} x {world}; median of {args.steps} steps (slowest rank per step) after {args.warmup} warm-up. "
            f"The 1-GPU row is rank 0 alone on the plain model in the same launch. DDP recipe = "
            f"`DDP(model, device_ids=[i])` as finetune/recipe.py wraps it; tuned = "
            f"gradient_as_bucket_view, bucket_cap_mb={args.bucket_mb} (no static_graph: with it the adapters drifted "
            f"apart across ranks in the CPU check).\n\n"
            + table(["setup", "batch/GPU", "global batch", "s/step", "samples/s (global)", "vs 1 GPU",
                     "peak alloc GiB per rank", "adapters equal on all ranks"], rows)
            + "\n\n" + "\n".join(lines) + "\n")
    return body


if __name__ == "__main__":
    sys.exit(main())
