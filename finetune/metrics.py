"""Metric logging: a ``MetricLogger`` protocol (``log_dict(payload, step)``) with a JSON-lines default.

Every event is one JSON object per line, written to ``runs/<id>/metrics.jsonl`` and printed on stdout:
``{"event": "start"|"train"|"eval"|"checkpoint"|"done"|"cancelled"|"error"|..., "step": .., ...}``.
The Fine-tune tab tails exactly these lines (from the pipe or from the file when re-attaching).
"""

from __future__ import annotations

import json
import math
import sys
import time
from pathlib import Path
from typing import Any, Protocol, TextIO, runtime_checkable

from recorder.fsutil import write_text_atomic

REPLAYED_EVENTS = ("train", "eval", "checkpoint")  # what a resumed run logs again for the steps it replays
REWOUND_EVENT = "rewound"  # {"event": "rewound", "step": N}: the events after step N were dropped (a resume)


@runtime_checkable
class MetricLogger(Protocol):
    def log_dict(self, payload: dict[str, Any], step: int) -> None: ...

    def close(self) -> None: ...


def _clean(value: Any) -> Any:
    if isinstance(value, float):
        if math.isnan(value) or math.isinf(value):
            return str(value)  # JSON has no NaN; keep it readable
        return round(value, 6)
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    if hasattr(value, "item"):  # numpy / torch scalars
        return _clean(value.item())
    return value


def encode_event(payload: dict[str, Any], step: int | None) -> str:
    data = {"event": payload.get("event", "train")}
    if step is not None:
        data["step"] = int(step)
    data.update({k: v for k, v in payload.items() if k != "event"})
    data.setdefault("time", round(time.time(), 3))
    return json.dumps(_clean(data), separators=(",", ":"))


class JsonlLogger:
    """Appends events to a file and echoes them to a stream (stdout by default)."""

    STDOUT = object()  # the sys.stdout current at each write (tests swap it)

    def __init__(self, path: Path | None, stream: TextIO | None | object = STDOUT) -> None:
        self.path = Path(path) if path is not None else None
        self._file = None
        if self.path is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._file = open(self.path, "a", buffering=1)  # noqa: SIM115 - line buffered, closed in close()
        self._stream = stream

    def log_dict(self, payload: dict[str, Any], step: int | None = None) -> None:
        line = encode_event(payload, step)
        if self._file is not None:
            self._file.write(line + "\n")
            self._file.flush()
        self._echo(line)

    def _echo(self, line: str) -> None:
        if self._stream is not None:
            stream = sys.stdout if self._stream is JsonlLogger.STDOUT else self._stream
            try:
                stream.write(line + "\n")
                stream.flush()
            except (BrokenPipeError, ValueError, OSError):
                self._stream = None  # the studio that read us went away: keep training, keep the file

    def rewind(self, step: int) -> int:
        """A resumed run replays the steps after its checkpoint: drop the file's progress events
        (``REPLAYED_EVENTS``) after ``step``, so each step appears once, and log a ``rewound`` event (which
        tells a follower of the file where the run went back to). The file is replaced atomically. Returns
        the number of lines dropped."""
        if self.path is None:
            return 0
        if self._file is not None:
            self._file.close()
        try:
            lines = self.path.read_bytes().decode("utf-8", "replace").splitlines()
        except FileNotFoundError:
            lines = []
        kept = []
        for line in lines:
            event = parse_event(line)
            if (event is not None and event.get("event") in REPLAYED_EVENTS and isinstance(event.get("step"), int)
                    and event["step"] > step):
                continue
            kept.append(line)
        dropped = len(lines) - len(kept)
        marker = encode_event({"event": REWOUND_EVENT, "dropped": dropped}, step)
        # a reader sees the marker with the cut
        write_text_atomic(self.path, "".join(line + "\n" for line in [*kept, marker]))
        self._file = open(self.path, "a", buffering=1)  # noqa: SIM115 - closed in close()
        self._echo(marker)
        return dropped

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


TENSORBOARD_DIR = "tensorboard"  # runs/<id>/tensorboard/, beside metrics.jsonl


class TensorBoardLogger:
    """Optional: scalars of each event to TensorBoard event files (needs the ``tensorboard`` package).

    Tags are ``<event>/<field>`` (``train/loss``, ``eval/val_loss``, ...) at the event's step, so
    ``tensorboard --logdir runs/<id>/tensorboard`` shows the curves the Fine-tune tab draws.
    """

    def __init__(self, log_dir: Path) -> None:
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            from recorder.errors import ConfigError

            raise ConfigError("--logger tensorboard needs the tensorboard package: pip install tensorboard "
                              "(or install vla-studio's train extra)") from None

        self._writer = SummaryWriter(str(log_dir))

    def log_dict(self, payload: dict[str, Any], step: int | None = None) -> None:
        prefix = payload.get("event", "train")
        step = payload.get("step", step)
        if step is None:
            return
        for key, value in payload.items():
            if key in ("step", "time"):
                continue
            if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
                self._writer.add_scalar(f"{prefix}/{key}", value, int(step))
        if prefix in ("eval", "checkpoint", "done", "cancelled", "error"):
            self._writer.flush()  # a person watching TensorBoard sees evals as they happen

    def close(self) -> None:
        self._writer.close()


class MultiLogger:
    def __init__(self, *loggers: MetricLogger) -> None:
        self.loggers = [lg for lg in loggers if lg is not None]

    def log_dict(self, payload: dict[str, Any], step: int | None = None) -> None:
        for lg in self.loggers:
            lg.log_dict(payload, step)

    def close(self) -> None:
        for lg in self.loggers:
            lg.close()


def build_logger(run_path: Path, *, stdout: bool = True, tensorboard: bool = False,
                 extra: tuple[MetricLogger, ...] = ()) -> MetricLogger:
    """The logger of one run: ``metrics.jsonl`` always (echoed as JSON lines on stdout when ``stdout``),
    TensorBoard event files in ``tensorboard/`` when asked, and any ``extra`` logger (a terminal display)."""
    from finetune.run_config import METRICS_FILE

    run_path = Path(run_path)
    loggers: list[MetricLogger] = [JsonlLogger(run_path / METRICS_FILE, stream=JsonlLogger.STDOUT if stdout else None)]
    if tensorboard:
        try:
            loggers.append(TensorBoardLogger(run_path / TENSORBOARD_DIR))
        except BaseException:
            loggers[0].close()
            raise
    loggers.extend(extra)
    return loggers[0] if len(loggers) == 1 else MultiLogger(*loggers)


def parse_event(line: str) -> dict | None:
    """One line of output -> the event dict, or None for a line that is not a JSON event."""
    line = line.strip()
    if not line.startswith("{"):
        return None
    try:
        data = json.loads(line)
    except json.JSONDecodeError:
        return None
    return data if isinstance(data, dict) and "event" in data else None


def read_events(path: Path) -> list[dict]:
    try:
        text = Path(path).read_bytes().decode("utf-8", "replace")  # a damaged line is skipped, not a traceback
    except OSError:
        return []
    return [e for e in (parse_event(line) for line in text.splitlines()) if e is not None]
