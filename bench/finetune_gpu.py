"""LoRA fine-tuning throughput and peak memory on a GPU: an OpenVLA-7B-shaped model (random weights, the
real sizes), LoRA r=32, 224 px, 30 text tokens (22 prompt + 7 action tokens + EOS), bf16.

baseline ("plain transformers + peft", measured in the same run): LoRA on every Linear but lm_head (the vision
towers too, as OpenVLA's ``all-linear``), the Prismatic forward (vision with autograd, full-vocabulary logits
and transformers' own loss via ``labels``, an attention mask), transformers' activation checkpointing.

ours: LoRA on the LLM + projector Linears, frozen vision towers run under no_grad (not checkpointed), our
layer loop with SDPA causal attention (no mask: flash kernels), logits only at the 8 label positions, and
activation checkpointing of all or the first N LLM layers.

    python bench/finetune_gpu.py [--configs ...] [--steps 5] [--out FILE]
"""

from __future__ import annotations

import argparse
import gc
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch  # noqa: E402

from bench._gpu_common import append_section, table  # noqa: E402

GiB = 1024**3
DEFAULT = ("plain:8:hf,plain:12:hf,plain:16:hf,ours:8:none,ours:8:all,ours:16:all,ours:24:all,ours:32:all,"
           "ours:8:12,ours:12:20,ours:16:24")


def make_batch(vla, bs: int, gen: torch.Generator):
    n_text = 30
    ids = torch.randint(3, vla.action_tokenizer.first_token, (bs, n_text), generator=gen)
    ids[:, 0] = vla.bos_token_id
    ids[:, 21] = vla.space_token_id or 29871
    act = torch.randint(vla.action_tokenizer.first_token, vla.action_tokenizer.last_token + 1, (bs, 7), generator=gen)
    ids[:, 22:29] = act
    ids[:, 29] = vla.eos_token_id
    labels = torch.full_like(ids, -100)
    labels[:, 22:] = ids[:, 22:]
    s = vla.image_size
    pv = torch.randint(0, 256, (bs, 1, 3, s, s), generator=gen, dtype=torch.uint8)
    return {"pixel_values": pv.cuda(), "input_ids": ids.cuda(), "attention_mask": torch.ones_like(ids).cuda(),
            "labels": labels.cuda()}


def plain_loss(vla, batch):
    """OpenVLA's Prismatic forward through transformers: full logits, HF loss, attention mask."""
    img = vla.embed_images(batch["pixel_values"])
    text = vla.embed_tokens(batch["input_ids"])
    B, P = img.shape[:2]
    embeds = torch.cat([text[:, :1], img.to(text.dtype), text[:, 1:]], 1)
    att = batch["attention_mask"]
    att = torch.cat([att[:, :1], att.new_ones(B, P), att[:, 1:]], 1)
    lab = batch["labels"]
    lab = torch.cat([lab[:, :1], lab.new_full((B, P), -100), lab[:, 1:]], 1)
    return vla.language_model(inputs_embeds=embeds, attention_mask=att, labels=lab).loss


def run_config(vla, mode: str, bs: int, ckpt: str, steps: int, warmup: int):
    from peft import LoraConfig, get_peft_model

    targets = vla.lora_target_modules(include_vision=(mode == "plain"))
    # plain: peft's defaults (adapter weights upcast to fp32, bf16 autocast); ours: bf16 adapters like the base
    # weights (as OpenVLA's recipe had them), no autocast, so no per-layer fp32/bf16 activation copies
    model = get_peft_model(vla, LoraConfig(r=32, lora_alpha=16, lora_dropout=0.0, target_modules=targets),
                           autocast_adapter_dtype=(mode == "plain"))
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    lm = vla.language_model
    if mode == "plain":
        vla.checkpoint_layers = None
        if ckpt == "hf":
            lm.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    else:
        vla.checkpoint_layers = None if ckpt == "none" else ("all" if ckpt == "all" else int(ckpt))
    model.train()
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4, fused=True)
    gen = torch.Generator().manual_seed(0)
    batches = [make_batch(vla, bs, gen) for _ in range(2)]
    torch.cuda.synchronize()
    gc.collect()
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats()
    err = None
    times = []
    try:
        for i in range(warmup + steps):
            b = batches[i % 2]
            torch.cuda.synchronize()
            t0 = time.perf_counter()
            if mode == "plain":
                with torch.autocast("cuda", dtype=torch.bfloat16):
                    loss = plain_loss(vla, b)
            else:
                loss = model(**b).loss
            loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)
            torch.cuda.synchronize()
            if i >= warmup:
                times.append(time.perf_counter() - t0)
    except torch.OutOfMemoryError:
        err = "OOM"
    peak = torch.cuda.max_memory_allocated() / GiB
    reserved = torch.cuda.max_memory_reserved() / GiB
    # unwind
    del opt
    if mode == "plain" and ckpt == "hf":
        lm.gradient_checkpointing_disable()
    vla.checkpoint_layers = None
    model.unload()  # removes the LoRA layers, the VLA is plain again
    for p in vla.parameters():
        p.requires_grad_(False)
    gc.collect()
    torch.cuda.empty_cache()
    if err:
        return {"err": err, "peak": peak, "reserved": reserved, "trainable": trainable}
    step = sorted(times)[len(times) // 2]
    return {"step_s": step, "sps": bs / step, "peak": peak, "reserved": reserved, "trainable": trainable,
            "loss": loss.item()}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--configs", default=DEFAULT, help="mode:batch:ckpt,... mode plain|ours; ckpt hf|all|none|N")
    ap.add_argument("--size", default="7b")
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--out", default=None, help="append the section to this file instead of docs/benchmarks.md")
    ap.add_argument("--no-append", action="store_true")
    args = ap.parse_args(argv)
    if not torch.cuda.is_available():
        print("needs a CUDA GPU")
        return 1
    from finetune.models.tiny import build_random_openvla

    torch.backends.cuda.matmul.allow_tf32 = True
    vla = build_random_openvla(args.size, device="cuda", dtype=torch.bfloat16)
    n_params = sum(p.numel() for p in vla.parameters())
    base_mem = torch.cuda.memory_allocated() / GiB
    rows, res_all = [], []
    # one unreported run first: cuBLAS/allocator warm-up would otherwise be charged to the first config
    run_config(vla, "ours", 4, "all", 2, 1)
    run_config(vla, "plain", 4, "hf", 2, 1)
    for spec in args.configs.split(","):
        mode, bs, ckpt = spec.split(":")
        r = run_config(vla, mode, int(bs), ckpt, args.steps, args.warmup)
        res_all.append((mode, int(bs), ckpt, r))
        label = {"hf": "transformers (all LLM layers)", "all": "all 32 LLM layers", "none": "none"}.get(ckpt, f"first {ckpt} LLM layers")
        if "err" in r:
            rows.append([mode, bs, label, f"{r['trainable'] / 1e6:.1f}M", r["err"], "-", "-", f"{r['peak']:.1f}"])
        else:
            rows.append([mode, bs, label, f"{r['trainable'] / 1e6:.1f}M", f"{r['step_s']:.3f}", f"{r['sps']:.1f}",
                         f"{r['peak']:.1f}", f"{r['reserved']:.1f}"])
        print(rows[-1], flush=True)
    plain = [r for m, b, c, r in res_all if m == "plain" and "sps" in r and r["peak"] <= 23.5]
    ours_fit = [(b, c, r) for m, b, c, r in res_all if m == "ours" and "sps" in r and r["peak"] <= 22.0 and b >= 8]
    summary = ""
    if plain and ours_fit:
        best_plain = max(r["sps"] for r in plain)
        b, c, r = max(ours_fit, key=lambda x: x[2]["sps"])
        summary = (f"Best ours under 22 GiB at batch >= 8: batch {b}, checkpointing {c}: {r['sps']:.1f} samples/s at "
                   f"{r['peak']:.1f} GiB = {r['sps'] / best_plain:.2f}x the best plain run under the same cap "
                   f"({best_plain:.1f} samples/s).")
    body = (f"Model: OpenVLA-7B architecture, random weights, bf16 weights, {n_params / 1e9:.2f}B params "
            f"({base_mem:.1f} GiB resident); LoRA r=32 alpha 16, AdamW (fused); adapter weights fp32 + bf16 autocast (plain, peft's default) or bf16 (ours); 224 px, "
            f"30 text tokens + 256 image tokens per sample; median of {args.steps} steps after {args.warmup} warm-up.\n\n"
            + table(["mode", "batch", "checkpointing", "trainable", "s/step", "samples/s", "peak alloc GiB",
                     "peak reserved GiB"], rows)
            + f"\n\n{summary}\nGoal: <= 22 GiB at batch >= 8 and >= 2x the plain baseline's samples/s.\n")
    print(body)
    if not args.no_append:
        append_section("LoRA fine-tune throughput on GPU (bench/finetune_gpu.py)",
                       "python bench/finetune_gpu.py " + " ".join(argv or sys.argv[1:]), body,
                       path=Path(args.out) if args.out else None)
    return 0


if __name__ == "__main__":
    sys.exit(main())
