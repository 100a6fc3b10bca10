"""QLoRA on a GPU for consumer cards: loading a 4-bit 7B, fine-tune memory and speed per preset, 4/8-bit inference.

The OpenVLA-7B architecture with random weights, saved as a model folder (bf16 safetensors shards, as a
published checkpoint is), then, in one run:

1. loading: bf16; 4-bit quantized on the GPU while loading (ours: ``load_vla(..., quantize="4bit")``); the
   baseline is the previous path (the whole bf16 model on the GPU first, each weight then sent through the CPU as
   fp16 and quantized back on the GPU). Each load in its own process: wall time, peak host RSS, peak GPU memory.
2. fine-tune rows (the recipe's lean LoRA path of bench/finetune_gpu.py: r=32 on LLM + projector, bf16
   adapters, frozen towers, 224 px, 30 text tokens): 4-bit rows and bf16 rows in the same process; the presets
   ``gpu-8gb``/``gpu-12gb``/``gpu-16gb``/``gpu-24gb`` are the fastest row whose peak *reserved* memory leaves
   ~1 GiB of the card to the desktop.
3. inference (``finetune.runtime.load_policy`` on the folder, CUDA graphs, no torch.compile for all three): one
   action (7 tokens) and a chunk of 8 (chunk head), bf16 vs 4-bit vs 8-bit, with the error against bf16.

    python bench/qlora_gpu.py [--dir /tmp/vla7b] [--steps 5] [--out FILE] [--json FILE]
"""

from __future__ import annotations

import argparse
import gc
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from bench._gpu_common import append_section, cuda_time, table  # noqa: E402

GiB = 1024**3
CARDS = {"gpu-8gb": 8, "gpu-12gb": 12, "gpu-16gb": 16, "gpu-24gb": 24}  # card GiB; 1 GiB left to the desktop
TRAIN = ("4bit:4:all,4bit:6:all,4bit:8:all,4bit:12:all,4bit:16:all,4bit:24:all,4bit:32:all,4bit:16:24,4bit:24:28,"
         "4bit:24:20,4bit:16:16,4bit:8:none,bf16:16:all,bf16:32:all,bf16:16:28")
INSTR = "pick up the red cube"


def make_folder(path: Path) -> None:
    from finetune.models.tiny import build_random_openvla

    vla = build_random_openvla("7b", device="cuda", dtype=torch.bfloat16)
    lo, hi = [-1.0] * 6 + [0.0], [1.0] * 6 + [1.0]
    vla.norm_stats = {"bench": {"action": {"q01": lo, "q99": hi, "mean": [0.0] * 7, "std": [1.0] * 7,
                                           "min": lo, "max": hi, "mask": [True] * 6 + [False]}}}
    vla.save_pretrained(path)
    cfg = json.loads((path / "config.json").read_text())
    cfg["norm_stats"] = vla.norm_stats
    (path / "config.json").write_text(json.dumps(cfg))


def _old_quantize(model) -> None:
    """The previous quantize_llm: every decoder weight to the CPU as fp16, then quantized on its way back."""
    import bitsandbytes as bnb

    for layer in model.decoder.layers:
        for parent in (layer.self_attn, layer.mlp):
            for name, lin in list(parent.named_children()):
                if not isinstance(lin, torch.nn.Linear):
                    continue
                w = lin.weight.data.to("cpu", torch.float16)
                q = bnb.nn.Linear4bit(lin.in_features, lin.out_features, bias=False, compute_dtype=torch.bfloat16,
                                      quant_type="nf4", device="cpu")
                q.weight = bnb.nn.Params4bit(w, requires_grad=False, quant_type="nf4")
                setattr(parent, name, q.to(model.device))
    torch.cuda.empty_cache()


def _rss_anon_gib() -> float:
    for line in open("/proc/self/status"):
        if line.startswith("RssAnon:"):
            return int(line.split()[1]) / 1024**2
    return float("nan")


def load_probe(mode: str, folder: str) -> dict:
    """One load in this process. Host memory: ``ru_maxrss`` counts the memory-mapped safetensors pages too
    (page cache, given back under pressure); the anonymous resident peak (sampled every 5 ms) is what a load
    really takes from the machine."""
    import threading

    from finetune.models import load_vla

    peak_anon = [0.0]
    done = threading.Event()

    def sample():
        while not done.is_set():
            peak_anon[0] = max(peak_anon[0], _rss_anon_gib())
            time.sleep(0.005)

    torch.cuda.init()
    threading.Thread(target=sample, daemon=True).start()
    torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    if mode == "bf16":
        m = load_vla(folder, device="cuda", dtype=torch.bfloat16)
    elif mode == "old-4bit":
        m = load_vla(folder, device="cuda", dtype=torch.bfloat16)
        _old_quantize(m)
    else:
        m = load_vla(folder, device="cuda", dtype=torch.bfloat16, quantize=mode)
    torch.cuda.synchronize()
    dt = time.perf_counter() - t0
    done.set()
    return {"mode": mode, "seconds": dt, "host_peak_gib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2,
            "host_anon_peak_gib": peak_anon[0],
            "gpu_peak_gib": torch.cuda.max_memory_allocated() / GiB, "gpu_resident_gib": torch.cuda.memory_allocated() / GiB,
            "layers": type(m.decoder.layers[0].mlp.down_proj).__name__}


def train_rows(folder: str, specs: str, steps: int, warmup: int) -> list[dict]:
    from bench.finetune_gpu import run_config
    from finetune.models import load_vla

    out = []
    by_q: dict[str, list] = {}
    for spec in specs.split(","):
        q, bs, ck = spec.split(":")
        by_q.setdefault(q, []).append((int(bs), ck))
    for q, rows in by_q.items():
        vla = load_vla(folder, device="cuda", dtype=torch.bfloat16, quantize=None if q == "bf16" else q)
        resident = torch.cuda.memory_allocated() / GiB
        run_config(vla, "ours", 4, "all", 1, 1)  # warm-up (allocator, cuBLAS)
        for bs, ck in rows:
            r = run_config(vla, "ours", bs, ck, steps, warmup)
            r.update(quant=q, batch=bs, ckpt=ck, resident=resident)
            out.append(r)
            print(json.dumps({k: (round(v, 3) if isinstance(v, float) else v) for k, v in r.items()}), flush=True)
        del vla
        gc.collect()
        torch.cuda.empty_cache()
    return out


def infer_rows(folder: str, iters: int) -> tuple[list[list], dict]:
    from finetune.models import load_vla
    from finetune.runtime import Policy, load_policy

    img = np.random.default_rng(0).integers(0, 255, (224, 224, 3), dtype=np.uint8)
    rows, ref, notes = [], {}, {}
    for mode in ("none", "4bit", "8bit"):
        pol = load_policy(folder, device="cuda", quantize=mode, compile_decode=False)
        cams = {pol.camera_names[0]: img}
        with torch.inference_mode():
            act = pol.predict(cams, None, INSTR).actions
            t_tok = cuda_time(lambda p=pol, c=cams: p.predict(c, None, INSTR), iters)[0]
        mem = torch.cuda.memory_allocated() / GiB
        del pol
        gc.collect()
        torch.cuda.empty_cache()
        vla = load_vla(folder, device="cuda", dtype=torch.bfloat16, action_head="chunk", chunk_size=8,
                       quantize=None if mode == "none" else mode)
        vla.use_cuda_graphs = mode != "8bit"
        if vla.use_cuda_graphs:
            vla.fuse_for_inference()
        cp = Policy(vla, vla.norm_stats)
        with torch.inference_mode():
            chunk = cp.predict(cams, None, INSTR).actions
            t_chunk = cuda_time(lambda p=cp, c=cams: p.predict(c, None, INSTR), iters)[0]
        del vla, cp
        gc.collect()
        torch.cuda.empty_cache()
        if mode == "none":
            ref = {"act": act, "chunk": chunk}
            e_act = e_chunk = "-"
        else:
            e_act = f"{np.abs(act - ref['act']).mean():.3f} (max {np.abs(act - ref['act']).max():.3f})"
            e_chunk = f"{np.abs(chunk - ref['chunk']).mean():.3f} (max {np.abs(chunk - ref['chunk']).max():.3f})"
        label = {"none": "bf16", "4bit": "4-bit NF4", "8bit": "8-bit LLM.int8"}[mode]
        rows.append([label, f"{mem:.1f}", f"{t_tok * 1e3:.1f}", e_act, f"{t_chunk * 1e3:.1f}", e_chunk])
        notes[mode] = {"token_ms": t_tok * 1e3, "chunk_ms": t_chunk * 1e3, "gib": mem}
        print(rows[-1], flush=True)
    return rows, notes


def main(argv=None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--dir", default="/tmp/vla7b-random")
    ap.add_argument("--probe", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--train", default=TRAIN)
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--iters", type=int, default=10)
    ap.add_argument("--loads", default="bf16,4bit,old-4bit,8bit", help="load probes to run")
    ap.add_argument("--skip", default="", help="comma list of sections to skip: load,train,infer")
    ap.add_argument("--out", default=None)
    ap.add_argument("--json", default=None, help="write the raw rows here")
    ap.add_argument("--no-append", action="store_true")
    args = ap.parse_args(argv)
    if args.probe:
        print(json.dumps(load_probe(args.probe, args.dir)))
        return 0
    if not torch.cuda.is_available():
        print("needs a CUDA GPU")
        return 1
    torch.backends.cuda.matmul.allow_tf32 = True
    folder = Path(args.dir)
    skip = set(filter(None, args.skip.split(",")))
    t0 = time.perf_counter()
    if not (folder / "config.json").exists():
        make_folder(folder)
        gc.collect()
        torch.cuda.empty_cache()
    print(f"folder ready in {time.perf_counter() - t0:.0f} s", flush=True)
    raw: dict = {}
    sections = []
    if "load" not in skip:
        loads = []
        for mode in args.loads.split(","):
            p = subprocess.run([sys.executable, __file__, "--dir", str(folder), "--probe", mode], capture_output=True,
                               text=True, timeout=600)
            if p.returncode != 0:
                print(p.stderr[-2000:])
                loads.append({"mode": mode, "error": p.stderr.strip().splitlines()[-1] if p.stderr else "failed"})
                continue
            loads.append(json.loads(p.stdout.strip().splitlines()[-1]))
            print(loads[-1], flush=True)
        raw["load"] = loads
        size = sum(f.stat().st_size for f in folder.glob("*.safetensors")) / GiB
        rows = [[r["mode"], f"{r['seconds']:.1f}", f"{r['host_anon_peak_gib']:.1f}", f"{r['host_peak_gib']:.1f}",
                 f"{r['gpu_peak_gib']:.1f}", f"{r['gpu_resident_gib']:.1f}"]
                if "error" not in r else [r["mode"], r["error"], "-", "-", "-", "-"] for r in loads]
        sections.append(f"Loading the {size:.1f} GiB bf16 folder (each in a fresh process; anonymous = the process's "
                        "own memory, max RSS also counts the memory-mapped weight files):\n\n"
                        + table(["load", "seconds", "host anonymous peak GiB", "host max RSS GiB", "GPU peak GiB",
                                 "GPU resident GiB"], rows))
    if "train" not in skip:
        try:
            tr = train_rows(str(folder), args.train, args.steps, args.warmup)
        except Exception:  # noqa: BLE001 - report and go on to the next section
            import traceback

            traceback.print_exc()
            tr = []
        raw["train"] = tr
        rows = []
        for r in tr:
            ck = {"all": "all 32", "none": "none"}.get(r["ckpt"], f"first {r['ckpt']}")
            if "err" in r:
                rows.append([r["quant"], r["batch"], ck, r["err"], "-", f"{r['peak']:.1f}", f"{r['reserved']:.1f}"])
            else:
                rows.append([r["quant"], r["batch"], ck, f"{r['step_s']:.3f}", f"{r['sps']:.1f}", f"{r['peak']:.1f}",
                             f"{r['reserved']:.1f}"])
        picks = []
        for name, card in CARDS.items():
            ok = [r for r in tr if "sps" in r and r["reserved"] <= card - 1.0]
            if ok:
                b = max(ok, key=lambda r: r["sps"])
                bf16 = [r for r in ok if r["quant"] == "bf16" and r["sps"] >= 0.9 * b["sps"]]
                b = max(bf16, key=lambda r: r["sps"]) if bf16 else b  # no quantization error for <10% speed
                picks.append([name, f"{card - 1} GiB", b["quant"], b["batch"], b["ckpt"], f"{b['sps']:.1f}",
                              f"{b['peak']:.1f}", f"{b['reserved']:.1f}"])
            else:
                picks.append([name, f"{card - 1} GiB", "nothing fits", "-", "-", "-", "-", "-"])
        raw["picks"] = picks
        sections.append("Fine-tune (lean LoRA r=32 on LLM + projector, bf16 adapters, AdamW fused; median of "
                        f"{args.steps} steps after {args.warmup} warm-up):\n\n"
                        + table(["weights", "batch", "checkpointed layers", "s/step", "samples/s", "peak alloc GiB",
                                 "peak reserved GiB"], rows)
                        + "\n\nPresets (fastest row whose peak reserved memory fits the card less 1 GiB; bf16 when within "
                        "10% of it):\n\n"
                        + table(["preset", "budget", "weights", "batch", "checkpointing", "samples/s", "alloc GiB",
                                 "reserved GiB"], picks))
    if "infer" not in skip:
        try:
            rows, notes = infer_rows(str(folder), args.iters)
        except Exception:  # noqa: BLE001
            import traceback

            traceback.print_exc()
            rows, notes = [], {}
        raw["infer"] = notes
        sections.append("Inference at batch 1 (load_policy: CUDA graph for bf16/4-bit, eager for 8-bit, no "
                        f"torch.compile; median of {args.iters}); error = mean |a - a_bf16| in real units (actions in "
                        "[-1, 1]), same image and instruction:\n\n"
                        + table(["LLM weights", "GPU GiB", "1 action (7 tokens) ms", "action error vs bf16",
                                 "chunk 8x7 ms", "chunk error vs bf16"], rows))
    body = ("Model: OpenVLA-7B architecture, random weights (7.54B params), saved as a bf16 folder; 4-bit = NF4 "
            "with double-quantized scales (bitsandbytes), decoder Linears only (towers, projector, embeddings and "
            "lm_head stay bf16).\n\n" + "\n\n".join(sections) + "\n")
    print(body)
    if args.json:
        Path(args.json).write_text(json.dumps(raw, indent=1, default=str))
    if not args.no_append:
        append_section("QLoRA and quantized inference on GPU (bench/qlora_gpu.py)",
                       "python bench/qlora_gpu.py " + " ".join(argv or sys.argv[1:]), body,
                       path=Path(args.out) if args.out else None)
    return 0


if __name__ == "__main__":
    sys.exit(main())
