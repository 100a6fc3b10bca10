"""The one way a CPU benchmark reports: print its section and append it to docs/benchmarks.md."""

from __future__ import annotations

from pathlib import Path

BENCH_MD = Path(__file__).resolve().parent.parent / "docs" / "benchmarks.md"


def report(lines: list[str], append: bool = True) -> str:
    """Join ``lines``, print them and (unless ``append`` is false) append them to docs/benchmarks.md."""
    text = "\n".join(lines) + "\n"
    print(text)
    if append:
        with open(BENCH_MD, "a") as f:
            f.write(text)
    return text
