"""The episode store: videos + Arrow low-dim files per episode, indexed by SQLite (see docs/INTERFACES.md)."""

from recorder.paths import default_home, resolve_home
from recorder.store.reader import EpisodeReader
from recorder.store.store import Store
from recorder.store.types import (
    CameraSpec,
    CheckpointInfo,
    DatasetInfo,
    EpisodeInfo,
    EpisodeRow,
    LowdimSpec,
    RunInfo,
    WriterStats,
)
from recorder.store.writer import EpisodeWriter

__all__ = [
    "CameraSpec",
    "CheckpointInfo",
    "DatasetInfo",
    "EpisodeInfo",
    "EpisodeRow",
    "EpisodeReader",
    "EpisodeWriter",
    "LowdimSpec",
    "RunInfo",
    "Store",
    "WriterStats",
    "default_home",
    "resolve_home",
]
