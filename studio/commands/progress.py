"""How the CLI talks to a person at a terminal, and to programs everywhere else.

When stdout is a terminal (and ``--json`` is not given) long jobs show a progress bar drawn by ``rich``:
``vla-studio finetune`` shows step / loss / samples/s / ETA with one readable line per eval and checkpoint,
``record --episodes N``, ``rollout`` and ``datasets export/import`` show how far they are.
Whenever stdout is not a terminal (the studio's QProcess, a remote run over ssh, a pipe, a file) the output
is what it always was: one JSON object per line for ``finetune``, one plain line per item for the others.
"""

from __future__ import annotations

import sys
import threading
from typing import Any, TextIO


def is_terminal(stream: TextIO | None = None) -> bool:
    stream = sys.stdout if stream is None else stream
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError, OSError):
        return False


def json_mode(flag: bool = False, stream: TextIO | None = None) -> bool:
    """JSON lines for programs: asked for with ``--json``, or stdout is not a terminal."""
    return bool(flag) or not is_terminal(stream)


def _console(stream: TextIO | None):
    from rich.console import Console

    return Console(file=sys.stdout if stream is None else stream, highlight=False, soft_wrap=True)


def fmt_duration(seconds: float | None) -> str:
    if seconds is None or seconds != seconds or seconds < 0:
        return "-:--:--"
    s = int(round(seconds))
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"


def _num(value: Any, fmt: str = ".4f") -> str:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return format(value, fmt)
    return "-" if value is None else str(value)


class FinetuneProgress:
    """A ``MetricLogger`` (finetune/metrics.py) that shows a fine-tune's events to a person.

    ``start`` opens a bar over the run's steps; ``train`` moves it (loss, samples/s, ETA from the recipe's own
    step times); ``eval``, ``checkpoint``, warnings and the end are printed as sentences above the bar.
    """

    def __init__(self, stream: TextIO | None = None) -> None:
        self.console = _console(stream)
        self._progress = None
        self._task = None
        self._total = None

    def _bar(self, total: int, start: int):
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        if self._progress is None:
            self._progress = Progress(
                TextColumn("step"), MofNCompleteColumn(), BarColumn(),
                TextColumn("loss {task.fields[loss]}"), TextColumn("{task.fields[sps]} samples/s"),
                TextColumn("ETA {task.fields[eta]}"), TimeElapsedColumn(),
                console=self.console, transient=False, refresh_per_second=4)
            self._progress.start()
            self._task = self._progress.add_task("train", total=total, completed=start, loss="-", sps="-",
                                                 eta="-:--:--")
        return self._progress

    def _print(self, text: str) -> None:
        (self._progress.console if self._progress is not None else self.console).print(text, markup=False)

    def log_dict(self, payload: dict[str, Any], step: int | None = None) -> None:
        event = payload.get("event", "train")
        step = payload.get("step", step)
        if event == "start":
            self._total = int(payload.get("steps") or 0) or None
            resumed = f", resumed from {payload['resumed_from']}" if payload.get("resumed_from") else ""
            self._print(f"fine-tune {payload.get('run_id')} on {payload.get('device')} ({payload.get('dtype')}): "
                        f"dataset {payload.get('dataset')!r}, {payload.get('train_samples')} samples from "
                        f"{payload.get('train_episodes')} episodes ({payload.get('val_episodes')} held out), "
                        f"{payload.get('trainable_params')} trainable parameters{resumed}")
            if payload.get("memory_summary"):
                self._print(f"memory: {payload['memory_summary']}")
            self._print(f"run folder: {payload.get('path')}")
            if self._total:
                self._bar(self._total, int(step or 0))
        elif event == "train":
            if self._total is None:
                self._total = int(step or 0)
            bar = self._bar(self._total, 0)
            bar.update(self._task, completed=int(step or 0), loss=_num(payload.get("loss")),
                       sps=_num(payload.get("samples_per_s"), ".1f"), eta=fmt_duration(payload.get("eta_s")))
        elif event == "eval":
            parts = [f"val loss {_num(payload.get('val_loss'))}"]
            if payload.get("l1_real") is not None:
                parts.append(f"action error (L1) {_num(payload.get('l1_real'))}")
            if payload.get("action_accuracy") is not None:
                parts.append(f"token accuracy {_num(payload.get('action_accuracy'), '.1%')}")
            parts.append(f"best val loss {_num(payload.get('best_val'))}")
            self._print(f"eval at step {step}: " + ", ".join(parts))
        elif event == "checkpoint":
            self._print(f"checkpoint at step {step} saved: {payload.get('path')}")
        elif event == "config_drift":
            fields = payload.get("fields") or {}
            changed = ", ".join(f"{k} {v.get('saved')} -> {v.get('now')}" for k, v in fields.items())
            self._print(f"warning: the run's settings changed since its checkpoint: {changed}")
        elif event == "warning":
            self._print(f"warning: {payload.get('message')}")
        elif event == "done":
            self._stop()
            self._print(f"done in {fmt_duration(payload.get('duration_s'))}: best val loss "
                        f"{_num(payload.get('best_val'))}; last checkpoint {payload.get('checkpoint')}")
        elif event == "cancelled":
            self._stop()
            self._print(f"cancelled ({payload.get('reason')}) at step {step}; resume with "
                        f"`vla-studio finetune --resume RUN`; checkpoint {payload.get('checkpoint')}")
        elif event == "error":
            self._stop()
            self._print(f"error: {payload.get('message')}")
        elif event not in ("ranks_in_sync",):
            detail = ", ".join(f"{k} {v}" for k, v in payload.items() if k not in ("event", "time"))
            self._print(f"{event}: {detail}" if detail else str(event))

    def _stop(self) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None

    def close(self) -> None:
        self._stop()


class ItemProgress:
    """A bar over N items (episodes, frames) for a terminal; nothing at all elsewhere.

    ``print(line)`` prints a line above the bar (or plainly to the stream when there is no bar), so the
    output without a terminal is exactly the lines printed.
    """

    def __init__(self, what: str, total: int | None, stream: TextIO | None = None, show: bool | None = None) -> None:
        self.stream = sys.stdout if stream is None else stream
        self.show = is_terminal(self.stream) if show is None else show
        self.what = what
        self.total = total
        self._progress = None
        self._task = None
        self._closed = False
        self._lock = threading.Lock()  # callbacks arrive on worker threads

    def __enter__(self) -> ItemProgress:
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def start(self) -> None:
        """Show the bar (once; ``update`` and ``print`` start it too)."""
        with self._lock:
            if self.show and self._progress is None and not self._closed:
                self._start()

    def _start(self) -> None:
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        self._progress = Progress(TextColumn(self.what), MofNCompleteColumn(), BarColumn(),
                                  TextColumn("{task.fields[note]}"), TimeElapsedColumn(),
                                  TextColumn("ETA"), TimeRemainingColumn(),
                                  console=_console(self.stream), refresh_per_second=4)
        self._progress.start()
        self._task = self._progress.add_task(self.what, total=self.total, note="")

    def close(self) -> None:
        with self._lock:
            self._closed = True
            if self._progress is not None:
                self._progress.stop()
                self._progress = None

    def update(self, done: int | None = None, total: int | None = None, note: str | None = None) -> None:
        self.start()
        if self._progress is None:
            return
        kw: dict[str, Any] = {}
        if done is not None:
            kw["completed"] = done
        if total is not None:
            kw["total"] = total
        if note is not None:
            kw["note"] = note
        self._progress.update(self._task, **kw)

    def print(self, line: str) -> None:
        self.start()
        if self._progress is not None:
            self._progress.console.print(line, markup=False, highlight=False)
        else:
            print(line, file=self.stream, flush=True)
