"""The docs/benchmarks.md section of bench/sim_learning.py (from the record/train/eval JSON files of a work folder)."""

from __future__ import annotations

import datetime as _dt
import json
from pathlib import Path

BENCH_MD = Path(__file__).resolve().parent.parent / "docs" / "benchmarks.md"


def _load(p: Path) -> dict:
    return json.loads(p.read_text()) if p.exists() else {}


def render_section(work: Path, command: str, notes: str = "") -> str:
    rec, tr, ev = _load(work / "record.json"), _load(work / "train.json"), _load(work / "eval.json")
    lines = ["\n## Learning in the sim: scripted demos -> small VLA -> closed-loop pick (issue 8)\n",
             f"- date: {_dt.datetime.now(_dt.UTC):%Y-%m-%d %H:%M} UTC",
             f"- command: `{command}`"]
    if rec:
        lines.append(f"- demos: {rec['demos']} successful scripted-expert demos of `pick` (seeds {rec['seeds'][0]}.."
                     f"{rec['seeds'][1]}, {rec['expert_failures_discarded']} expert failures discarded), {rec['ticks']} "
                     f"ticks at 30 Hz, 2 cameras (front, wrist) at 112x112; recorded in {rec['seconds']:.0f} s on the "
                     f"2-core CPU (shared), non-realtime physics; store {rec['store_mib']:.1f} MiB; "
                     f"frames dropped {rec['frames_dropped']}")
    if tr:
        lines.append(f"- training: {tr['device']}; model `{tr['model_size']}` (OpenVLA layout, random init, "
                     f"{tr['base_params'] / 1e6:.1f}M params), chunk head K={tr['chunk']} with proprio, LoRA r={tr['rank']} "
                     f"on every linear layer incl. vision ({tr['trainable_params'] / 1e6:.2f}M trainable); "
                     f"{tr['steps']} steps x batch {tr['batch']}, lr {tr['lr']:g}; {tr['seconds']:.0f} s"
                     + (f"; held-out L1 {tr['val']['l1_real']:.2f} (real units)" if tr.get("val") else ""))
    if ev:
        s0, s1 = ev["seeds"]
        lines.append(f"- evaluation: {ev['summary']['tuned policy']['n']} new seeds ({s0}..{s1}), closed loop, policy on "
                     f"{ev['device']}, re-plan every 4 ticks; success = the task detector holds 10 ticks within 240; "
                     f"policy latency median {ev['policy_latency_ms_median']:.0f} ms ({ev['policy_calls']} calls); "
                     f"eval took {ev['seconds']:.0f} s")
        lines.append("")
        lines.append("| controller (same seeds, same run) | success | rate | mean ticks (successes) |")
        lines.append("|---|---|---|---|")
        for name, s in ev["summary"].items():
            mt = f"{s['mean_ticks_success']:.0f}" if s["mean_ticks_success"] is not None else "-"
            lines.append(f"| {name} | {s['success']}/{s['n']} | {100 * s['rate']:.0f}% | {mt} |")
    if notes:
        lines += ["", notes.strip()]
    return "\n".join(lines) + "\n"


def append_doc(args, work: Path, command: str, notes: str = "") -> str:
    text = render_section(Path(work), command, notes)
    with open(BENCH_MD, "a") as f:
        f.write(text)
    print(text)
    return text
