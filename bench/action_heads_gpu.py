"""Chunk latency per action head on a GPU, OpenVLA-7B shape (random weights, real sizes), bf16, batch 1.

One model, one run, every head on the same prompt (the same 23 text tokens as bench/policy_gpu.py):

- tokens (the bins baseline): one action of D=7 tokens, and a chunk of K*D = 56 tokens, static KV cache + CUDA graph;
- chunk: K x D in one pass (learned queries), CUDA graph;
- flow: prefix once (towers + projector + LLM prefill into a KV cache) + 10 Euler steps of the action expert,
  one CUDA graph; with 1 noise draw and with the default 4 (the spread is the confidence);
- fast: greedy decode (static cache + CUDA graph) of the typical FAST token count of a chunk (+ EOS), the
  tokenizer fitted on smooth synthetic chunks; also the head's own predict (decodes up to the longest fitted
  chunk).

    python bench/action_heads_gpu.py [--size 7b|tiny] [--iters 20] [--chunk 8] [--no-append]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402
import torch  # noqa: E402

INSTRUCTION = "pick up the red cube"


def smooth_chunks(n: int, K: int, D: int, seed: int = 0) -> np.ndarray:
    """Smooth joint trajectories in [-1, 1] (sums of slow sines), as a teleoperated arm at 10-50 Hz gives."""
    rng = np.random.default_rng(seed)
    t = np.arange(K)[None, :, None] / K
    out = np.zeros((n, K, D))
    for _ in range(3):
        out += rng.uniform(-0.3, 0.3, (n, 1, D)) * np.sin(rng.uniform(0.2, 2.5, (n, 1, D)) * t * np.pi
                                                          + rng.uniform(0, 2 * np.pi, (n, 1, D)))
    return np.clip(out, -1, 1)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--size", default="7b")
    ap.add_argument("--iters", type=int, default=20)
    ap.add_argument("--chunk", type=int, default=8)
    ap.add_argument("--dims", type=int, default=7)
    ap.add_argument("--prompt-tokens", type=int, default=23)
    ap.add_argument("--no-append", action="store_true")
    ap.add_argument("--no-compile", dest="compile", action="store_false", help="skip the torch.compile rows")
    ap.add_argument("--device", default="cuda", help="cuda; cpu only for a dry run of the script (--size tiny)")
    ap.add_argument("--out", default=None, help="append the section to this file instead of docs/benchmarks.md")
    args = ap.parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        print("needs a CUDA GPU (or --device cpu --size tiny for a dry run)")
        return 1
    from bench._gpu_common import append_section, table
    from bench._gpu_common import cuda_time as _cuda_time

    dev = args.device

    def cuda_time(fn, iters):
        if dev == "cuda":
            return _cuda_time(fn, iters)
        import time

        fn()
        ts = []
        for _ in range(max(2, iters // 4)):
            t0 = time.perf_counter()
            fn()
            ts.append(time.perf_counter() - t0)
        return float(np.median(ts)), min(ts)

    from finetune.fast_tokenizer import FastTokenizer
    from finetune.models.action_heads import make_head
    from finetune.models.heads import ChunkHead
    from finetune.models.tiny import build_random_openvla

    K, D = args.chunk, args.dims
    torch.backends.cuda.matmul.allow_tf32 = True
    vla = build_random_openvla(args.size, device=dev, dtype=torch.bfloat16, action_dim=D)
    n_params = sum(p.numel() for p in vla.parameters())
    vla.fuse_for_inference()
    vla.use_cuda_graphs = dev == "cuda"
    img = np.random.default_rng(0).integers(0, 255, (224, 224, 3), dtype=np.uint8)
    base = vla.collate([vla.prepare([img], INSTRUCTION, None)])
    n_text = args.prompt_tokens
    gen = torch.Generator().manual_seed(0)
    first = vla.action_tokenizer.first_token
    ids = torch.randint(3, first - 2048 if first > 4096 else first, (1, n_text), generator=gen)  # not action tokens
    ids[0, 0], ids[0, -1] = vla.bos_token_id, vla.space_token_id
    base.update(input_ids=ids, attention_mask=torch.ones_like(ids), prompt_len=torch.tensor([n_text]))
    batch = {k: v.to(dev) for k, v in base.items()}
    rows, notes = [], []

    def use(head: str, chunk: int):
        vla.action_head, vla.chunk_size = head, chunk
        vla.head = make_head(head, vla)
        vla._graphs.clear()

    def add(task, path, res, n_actions):
        med, mn = res
        rows.append([task, path, f"{med * 1e3:.1f}", f"{mn * 1e3:.1f}", f"{n_actions / med:.0f} actions/s"])
        print(" | ".join(rows[-1]), flush=True)  # partial results survive a time limit
        return med

    with torch.inference_mode():
        # --- tokens: the bins baseline
        use("tokens", 1)
        t_bins1 = add("tokens (bins), 1 action = 7 tokens", "static cache + CUDA graph",
                      cuda_time(lambda: vla.predict(batch), args.iters), 1)
        use("tokens", K)
        t_binsK = add(f"tokens (bins), chunk {K} = {K * D} tokens", "static cache + CUDA graph",
                      cuda_time(lambda: vla.predict(batch), args.iters), K)

        # --- chunk (L1 queries)
        use("chunk", K)
        vla.chunk_head = ChunkHead(vla.hidden_size, K, D, 1024).to(dev, torch.bfloat16).eval()
        nq = K * D
        cb = {"pixel_values": batch["pixel_values"],
              "input_ids": torch.cat([ids, torch.full((1, nq), vla.pad_token_id)], 1).to(dev),
              "query_pos": torch.arange(n_text, n_text + nq)[None].to(dev)}
        add(f"chunk (L1), {K}x{D}", "one pass, CUDA graph", cuda_time(lambda: vla.predict(cb), args.iters), K)

        # --- flow
        vla.chunk_size, vla.action_dim = K, D
        vla.flow_head = vla._build_flow({}).to(dev, torch.bfloat16).eval()
        vla.flow_head.reset_parameters()
        use("flow", K)
        expert = vla.flow_head
        n_expert = sum(p.numel() for p in expert.parameters())
        fb = {k: batch[k] for k in ("pixel_values", "input_ids", "attention_mask")}
        t_flow = {}
        for S in (1, expert.samples):
            t_flow[S] = add(f"flow, {K}x{D}, {expert.steps} Euler steps, {S} draw(s)", "prefix KV once + expert, CUDA graph",
                            cuda_time(lambda S=S: vla.head.predict(vla, fb, samples=S), args.iters), K)
        vla.use_cuda_graphs = False
        add(f"flow, {K}x{D}, {expert.steps} steps, 1 draw", "eager (no graph)",
            cuda_time(lambda: vla.head.predict(vla, fb, samples=1), max(5, args.iters // 4)), K)
        vla.use_cuda_graphs = dev == "cuda"
        def prefix_fn(pv, i, a):
            return vla.head.prefix_kv(vla, pv, i, a)[0][-1][0]

        pargs = (fb["pixel_values"], fb["input_ids"], fb["attention_mask"])
        run_prefix = (lambda: vla._graph_call(("prefix",), prefix_fn, *pargs)) if vla._graphable() else \
            (lambda: prefix_fn(*pargs))
        prefix = cuda_time(run_prefix, args.iters)[0]
        notes.append(f"flow expert: {len(expert.layer_map)} layers (reading LLM layers {expert.layer_map}), width "
                     f"{expert.width}, {n_expert / 1e6:.0f}M params; prefix alone (towers + projector + prefill into "
                     f"the KV cache, graph) {prefix * 1e3:.1f} ms, so each Euler step costs "
                     f"{(t_flow[1] - prefix) / expert.steps * 1e3:.2f} ms at 1 draw, "
                     f"{(t_flow[expert.samples] - prefix) / expert.steps * 1e3:.2f} ms at {expert.samples}")

        # --- fast
        use("fast", K)
        tok = FastTokenizer.fit(smooth_chunks(4000, K, D), vocab_size=vla.head.max_vocab)
        vla.head.set_tokenizer(tok)
        typical = int(round(tok.mean_tokens))
        L = n_text
        add(f"fast, {K}x{D}: {typical} tokens (typical) + EOS", "static cache + CUDA graph",
            cuda_time(lambda: vla._fast_decode(batch["pixel_values"], batch["input_ids"], typical + 1, L), args.iters), K)
        add(f"fast, {K}x{D}: head predict, up to {tok.max_tokens} tokens + EOS", "static cache + CUDA graph",
            cuda_time(lambda: vla.predict(batch), args.iters), K)
        held_uncompiled = vla.head.undecodable
        # --- the same heads with torch.compile of the per-layer functions, as load_policy runs them on a GPU
        compiled = {}
        if args.compile and dev == "cuda":
            import time as _time

            vla.compile_decode = True
            for head, chunk, label, fn in [
                    ("tokens", 1, "tokens (bins), 1 action = 7 tokens", lambda: vla.predict(batch)),
                    ("chunk", K, f"chunk (L1), {K}x{D}", lambda: vla.predict(cb)),
                    ("flow", K, f"flow, {K}x{D}, {expert.steps} Euler steps, 1 draw(s)",
                     lambda: vla.head.predict(vla, fb, samples=1)),
                    ("flow", K, f"flow, {K}x{D}, {expert.steps} Euler steps, {expert.samples} draw(s)",
                     lambda: vla.head.predict(vla, fb, samples=expert.samples)),
                    ("fast", K, f"fast, {K}x{D}: {typical} tokens (typical) + EOS",
                     lambda: vla._fast_decode(batch["pixel_values"], batch["input_ids"], typical + 1, L))]:
                if vla.action_head != head or vla.chunk_size != chunk:
                    use(head, chunk)
                    if head == "fast":
                        vla.head.set_tokenizer(tok)
                t0 = _time.perf_counter()
                fn()
                first = _time.perf_counter() - t0
                compiled[label] = add(label, f"+ torch.compile of layer functions (first call {first:.0f} s)",
                                      cuda_time(fn, args.iters), K if "1 action" not in label else 1)
        notes.append(f"FAST tokenizer fitted on 4000 smooth synthetic {K}x{D} chunks: vocabulary {tok.vocab_size}, "
                     f"{tok.mean_tokens:.1f} tokens per chunk on average (max {tok.max_tokens}) vs {K * D} bins; "
                     f"random weights decode garbage, so the head's predict held still "
                     f"{held_uncompiled} of its uncompiled calls (the latency is what counts here)")

    body = (f"Model: OpenVLA-7B architecture, random weights, bf16, {n_params / 1e9:.2f}B params (+ the head); batch 1; "
            f"fused q/k/v and gate/up; {n_text} text tokens + 256 image patches. Median of {args.iters} calls after "
            "warm-up (CUDA-graph capture happens in warm-up); first rows without torch.compile, then the same heads with "
            "torch.compile of the per-layer functions (decode step, prefill layer, ViT block, flow expert layer), as "
            "finetune.runtime.load_policy runs them (it also autotunes; not here).\n\n"
            + table(["task", "path", "median ms", "min ms", "rate"], rows)
            + "\n\n" + "\n".join(f"- {n}" for n in notes)
            + f"\n\nBins baseline in this run: 1 action {t_bins1 * 1e3:.1f} ms, a chunk of {K} {t_binsK * 1e3:.1f} ms. "
            f"Goal: flow chunk of {K} <= 25 ms on an H200: {t_flow[1] * 1e3:.1f} ms (1 draw), "
            f"{t_flow[expert.samples] * 1e3:.1f} ms ({expert.samples} draws, with confidence) without compile"
            + "".join(f"; compiled, {k}: {v * 1e3:.1f} ms" for k, v in compiled.items() if k.startswith(("flow", "tokens")))
            + ".\n")
    print(body)
    if not args.no_append:
        append_section("Chunk latency per action head (bench/action_heads_gpu.py)",
                       "python bench/action_heads_gpu.py " + " ".join(argv or sys.argv[1:]), body,
                       path=Path(args.out) if args.out else None)
    return 0


if __name__ == "__main__":
    sys.exit(main())
