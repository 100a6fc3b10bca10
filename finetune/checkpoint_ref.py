"""One identity for a checkpoint: every spelling a person or a file uses resolves here to one typed
:class:`CheckpointRef`, and this module owns the names of a run's files and folders.

Layout (``<home>/runs/<run id>/``)::

    config.json  metrics.jsonl  pid  stdout.log  stderr.log
    checkpoints/last                      (the name of the newest complete step folder)
    checkpoints/<step:07d>/{adapter/, training_state.json (+ .safetensors), norm_stats.json, config.json}

Accepted spellings (``resolve``): a folder (a step folder, a run's ``checkpoints`` folder, a run folder, a
merged export), a run id (its last checkpoint), ``<run id>/<step>`` and ``<run id> @ <step>`` (the step as
the folder name ``0000010`` or as a number ``10``). Torch-free: the CLI and the GUI resolve without
loading a model.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from recorder.errors import ModelError

RUNS_DIR = "runs"
CONFIG_FILE = "config.json"
METRICS_FILE = "metrics.jsonl"
NORM_STATS_FILE = "norm_stats.json"
PID_FILE = "pid"
STDOUT_FILE = "stdout.log"
STDERR_FILE = "stderr.log"
CHECKPOINTS_DIR = "checkpoints"
LAST_FILE = "last"
ADAPTER_DIR = "adapter"
STATE_FILE = "training_state.json"
STATE_TENSORS_FILE = "training_state.safetensors"
LEGACY_STATE_FILE = "training_state.pt"  # pickled, written before the JSON + safetensors format
EXPORT_INFO_FILE = "vla_studio.json"  # beside a merged export: what it was exported from

__all__ = [
    "CheckpointRef",
    "checkpoint_folder",
    "in_run",
    "is_step_folder",
    "last_checkpoint",
    "resolve",
    "run_dir",
    "runs_root",
    "step_folder",
    "step_name",
]


def runs_root(home: str | os.PathLike[str]) -> Path:
    return Path(home) / RUNS_DIR


def run_dir(home: str | os.PathLike[str], run_id: str) -> Path:
    return runs_root(home) / run_id


def step_name(step: int) -> str:
    """The folder name of a step: ``10`` -> ``0000010``."""
    return f"{int(step):07d}"


def checkpoint_folder(run_path: str | os.PathLike[str], step: int) -> Path:
    return Path(run_path) / CHECKPOINTS_DIR / step_name(step)


def last_checkpoint(run_path: str | os.PathLike[str]) -> Path | None:
    """The newest complete checkpoint folder of a run (from ``checkpoints/last``), or None."""
    ckpts = Path(run_path) / CHECKPOINTS_DIR
    last = ckpts / LAST_FILE
    if last.is_file():
        step_dir = ckpts / last.read_text().strip()
        if step_dir.is_dir():
            return step_dir
    return None


def is_step_folder(path: str | os.PathLike[str]) -> bool:
    """A training checkpoint's own folder (its training state or adapter is in it)."""
    path = Path(path)
    return (path / STATE_FILE).is_file() or (path / LEGACY_STATE_FILE).is_file() or (path / ADAPTER_DIR).is_dir()


def step_folder(path: str | os.PathLike[str]) -> Path:
    """A run folder, a ``checkpoints`` folder or a step folder -> the step folder to load (ModelError if none)."""
    path = Path(path)
    if is_step_folder(path):
        return path
    for base in (path, path.parent):
        found = last_checkpoint(base)
        if found is not None:
            return found
    raise ModelError(f"{path} holds no checkpoint (no checkpoints/last and no adapter/): "
                     "pick a run folder or a checkpoint step folder")


@dataclass(frozen=True)
class CheckpointRef:
    """A checkpoint, however it was named. ``folder``: what to load (a run's step folder, or a merged
    export folder); ``run_id`` / ``step``: its run and step when it is a run's checkpoint, else None."""

    folder: Path
    run_id: str | None = None
    step: int | None = None

    @property
    def is_run_checkpoint(self) -> bool:
        return self.run_id is not None and self.step is not None

    @property
    def label(self) -> str:
        """``<run id>/<step>`` (the step a number), or the folder name of a merged export."""
        return f"{self.run_id}/{self.step}" if self.is_run_checkpoint else self.folder.name

    @property
    def display(self) -> str:
        """``<run id> @ <step>``: how the GUI lists a run's checkpoint."""
        return f"{self.run_id} @ {self.step}" if self.is_run_checkpoint else self.folder.name

    @property
    def run_path(self) -> Path | None:
        return self.folder.parent.parent if self.is_run_checkpoint else None

    @classmethod
    def from_path(cls, path: str | os.PathLike[str]) -> CheckpointRef:
        """A folder's ref by its place in the layout alone (``<run>/checkpoints/<step>``), reading nothing: how
        a folder the person picked is named before it is loaded."""
        path = Path(path)
        if path.parent.name == CHECKPOINTS_DIR and path.name.isdigit():
            return cls(path, path.parent.parent.name, int(path.name))
        return cls(path)

    @classmethod
    def from_folder(cls, path: str | os.PathLike[str]) -> CheckpointRef:
        """An existing folder -> its ref: a run's step folder (a run / ``checkpoints`` folder: its last step)
        or, when it holds no run checkpoint but a ``config.json``, a merged export loaded as it is."""
        path = Path(path).expanduser()
        if path.exists() and not path.is_dir():
            return cls(path)  # a model file, loaded as it is
        try:
            folder = step_folder(path)
        except ModelError:
            if path.is_dir() and (path / CONFIG_FILE).is_file():
                return cls(path)
            raise
        return cls.from_path(folder)


def _split(spec: str) -> tuple[str, str | None]:
    """``run @ step`` / ``run/step`` / ``run`` -> (run id, step text or None)."""
    if "@" in spec:
        run, _, step = spec.partition("@")
        return run.strip(), step.strip() or None
    parts = spec.split("/")
    if len(parts) == 2:
        return parts[0], parts[1]
    return spec, None


def in_run(run_path: str | os.PathLike[str], step: str | int | None = None) -> CheckpointRef:
    """A run's checkpoint: ``step`` as the folder name (``0000010``) or a number (``10``); None: its last.
    ModelError naming the run folder when there is no such step."""
    run_path = Path(run_path)
    if step is None or str(step).strip() in ("", LAST_FILE):
        return CheckpointRef.from_folder(run_path)
    text = str(step).strip()
    names = [text] + ([step_name(int(text))] if text.isdigit() else [])
    for name in names:
        folder = run_path / CHECKPOINTS_DIR / name
        if folder.is_dir():
            return CheckpointRef.from_folder(folder)
    raise ModelError(f"{run_path} has no checkpoint at step {text}: pick one of its checkpoints/ folders")


def resolve(spec: str | os.PathLike[str] | CheckpointRef, home: str | os.PathLike[str] | None = None) -> CheckpointRef:
    """Any accepted spelling (see the module docstring) -> a :class:`CheckpointRef` of an existing folder;
    ModelError naming the spelling and ``<home>/runs`` when nothing matches."""
    if isinstance(spec, CheckpointRef):
        return spec
    text = os.fspath(spec).strip()
    p = Path(text).expanduser()
    if text and p.exists():
        return CheckpointRef.from_folder(p)
    if home is not None and text:
        run, step = _split(text)
        cand = run_dir(home, run)
        if run and cand.is_dir():
            try:
                return in_run(cand, step)
            except ModelError:
                if step is None:
                    raise
    raise ModelError(f"checkpoint {text}: no such folder or run in {home}/runs; "
                     "pass a checkpoint folder (runs/<id>/checkpoints/<step>) or a run id")
