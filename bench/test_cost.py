"""What some tests cost: wall time and CPU time (the test process and every child it waited for), on this tree and
on a base revision, in the same run.

    .venv/bin/python bench/test_cost.py --base main \\
        --case "distributed resumes=tests/finetune/test_recipe_distributed.py -k 'resume or fsdp'" \\
        --case "screenshots=tests/studio/test_screenshots.py"

The base revision is exported (``git archive``) into a temporary folder and run with the same interpreter; each
case runs there and here one after the other (base first), ``--repeat`` times. A case may name a different
selection for the base with ``NAME=ARGS || BASE_ARGS`` (a test that was merged or renamed). CPU time is what a
busy shared machine distorts least: the wall time of a test that waits on child processes follows the load.
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import shlex
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def run_pytest(tree: Path, args: list[str]) -> tuple[float, float, str]:
    """(wall s, CPU s of pytest and all it waited for, pytest's last line) of one pytest run in ``tree``."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:randomly", "-p", "no:cacheprovider", *args],
                          cwd=tree, env=dict(os.environ, PYTHONPATH=str(tree)), capture_output=True, text=True)
    wall = time.monotonic() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    last = (proc.stdout.strip().splitlines() or ["(no output)"])[-1]
    return wall, cpu, last


def parse_case(text: str) -> tuple[str, list[str], list[str]]:
    name, _, rest = text.partition("=")
    here, _, base = rest.partition("||")
    return name.strip(), shlex.split(here), shlex.split(base) if base.strip() else shlex.split(here)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--base", required=True, help="git revision to compare with (e.g. main)")
    p.add_argument("--case", action="append", required=True, help="NAME=PYTEST ARGS [|| BASE PYTEST ARGS]")
    p.add_argument("--repeat", type=int, default=1)
    p.add_argument("--no-append", action="store_true", help="print only; do not append to docs/benchmarks.md")
    args = p.parse_args(argv)
    from bench._doc import report

    rev = subprocess.run(["git", "rev-parse", "--short", args.base], cwd=ROOT, capture_output=True, text=True,
                         check=True).stdout.strip()
    rows = []
    load0 = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="test-cost-base-") as tmp:
        base = Path(tmp)
        archive = subprocess.run(["git", "archive", rev], cwd=ROOT, capture_output=True, check=True).stdout
        subprocess.run(["tar", "-x", "-C", str(base)], input=archive, check=True)
        for case in args.case:
            name, here_args, base_args = parse_case(case)
            for _ in range(args.repeat):
                bw, bc, bl = run_pytest(base, base_args)
                nw, nc, nl = run_pytest(ROOT, here_args)
                rows.append((name, bw, bc, bl, nw, nc, nl))
                print(f"{name}: base {bw:.1f} s wall / {bc:.1f} s CPU ({bl}); now {nw:.1f} / {nc:.1f} ({nl})",
                      flush=True)
    load1 = os.getloadavg()
    lines = [
        "",
        f"## Test cost, this tree vs {args.base} ({rev}) ({datetime.now(UTC):%Y-%m-%d %H:%M} UTC)",
        "",
        f"- machine: {os.cpu_count()}-core CPU, shared with other engineers' jobs (load average "
        f"{load0[0]:.1f} at the start, {load1[0]:.1f} at the end); CPython {platform.python_version()}",
        f"- command: `python bench/test_cost.py --base {args.base} "
        + " ".join(f"--case {shlex.quote(c)}" for c in args.case) + (f" --repeat {args.repeat}" if args.repeat > 1 else "")
        + "`",
        "- CPU = user + system time of pytest and every process it waited for; wall follows the machine's load",
        "",
        "| case | base wall s | base CPU s | now wall s | now CPU s | CPU now/base | base result | now result |",
        "|------|-------------|------------|------------|-----------|--------------|-------------|------------|",
    ]
    for name, bw, bc, bl, nw, nc, nl in rows:
        lines.append(f"| {name} | {bw:.1f} | {bc:.1f} | {nw:.1f} | {nc:.1f} | {nc / bc:.2f} | {bl} | {nl} |")
    report(lines, append=not args.no_append)
    return 0


if __name__ == "__main__":
    sys.exit(main())
