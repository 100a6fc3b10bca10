"""Shared helpers for the GPU benchmarks (timing, the benchmarks.md section)."""

from __future__ import annotations

import datetime as _dt
import statistics
import time
from pathlib import Path

import torch

BENCH_MD = Path(__file__).resolve().parent.parent / "docs" / "benchmarks.md"


def cuda_time(fn, iters: int = 20, warmup: int = 3) -> tuple[float, float]:
    """Median and min wall time (s) of ``fn()`` with a device sync around each call."""
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    ts = []
    for _ in range(iters):
        t0 = time.perf_counter()
        fn()
        torch.cuda.synchronize()
        ts.append(time.perf_counter() - t0)
    return statistics.median(ts), min(ts)


def machine() -> str:
    import transformers

    name = torch.cuda.get_device_name() if torch.cuda.is_available() else "no GPU"
    return f"{name}, torch {torch.__version__}, transformers {transformers.__version__}"


def table(headers: list[str], rows: list[list]) -> str:
    out = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    out += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return "\n".join(out)


def append_section(title: str, command: str, body: str, path: Path | None = None, extra_path: Path | None = None) -> str:
    text = (f"\n## {title}\n\n- date: {_dt.datetime.now(_dt.UTC):%Y-%m-%d %H:%M} UTC\n"
            f"- machine: {machine()}\n- command: `{command}`\n\n{body}\n")
    for p in (path or BENCH_MD, extra_path):
        if p is not None:
            p.parent.mkdir(parents=True, exist_ok=True)
            with open(p, "a") as f:
                f.write(text)
    return text
