"""Plain data types handed out by the store (no SQLAlchemy objects leave the package)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

STATUSES = ("recording", "complete", "recovered", "discarded", "trashed")
#: row status while delete_episode runs (files going); left by a crash, ``store check --repair`` finishes it
DELETING = "deleting"
SOURCES = ("teleop", "policy", "scripted")
CODECS = ("h264", "av1")

#: default encoder speed preset per codec (low CPU on the recording machine)
DEFAULT_PRESET = {"h264": "veryfast", "av1": "10"}
#: default constant-quality setting per codec
DEFAULT_CRF = {"h264": 23, "av1": 35}


@dataclass(frozen=True, kw_only=True)
class CameraSpec:
    """How one camera stream of an episode is stored."""

    width: int
    height: int
    codec: str = "h264"  # "h264" (libx264) or "av1" (libsvtav1)
    preset: str | None = None  # encoder speed preset; None = DEFAULT_PRESET[codec]
    crf: int | None = None  # constant quality; None = DEFAULT_CRF[codec]
    gop: int = 10  # frames between keyframes (also capped at one second of ticks): random seek cost
    queue_size: int = 32  # frames the encoder thread may lag behind before frames are dropped

    def __post_init__(self) -> None:
        if self.codec not in CODECS:
            raise ValueError(f"codec must be one of {CODECS}, not {self.codec!r}")
        if self.width <= 0 or self.height <= 0 or self.width % 2 or self.height % 2:
            raise ValueError(f"camera size must be positive and even, not {self.width}x{self.height}")
        if self.gop < 1 or self.queue_size < 1:
            raise ValueError("gop and queue_size must be >= 1")

    @property
    def effective_preset(self) -> str:
        return self.preset if self.preset is not None else DEFAULT_PRESET[self.codec]

    @property
    def effective_crf(self) -> int:
        return self.crf if self.crf is not None else DEFAULT_CRF[self.codec]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> CameraSpec:
        known = {
            k: d[k] for k in ("width", "height", "codec", "preset", "crf", "gop", "queue_size") if k in d
        }
        return cls(**known)


@dataclass(frozen=True)
class LowdimSpec:
    """One low-dim stream: fixed shape per tick and a numpy dtype name."""

    shape: tuple[int, ...]
    dtype: str = "float32"

    def to_dict(self) -> dict[str, Any]:
        return {"shape": list(self.shape), "dtype": self.dtype}

    @classmethod
    def coerce(cls, v: Any) -> LowdimSpec:
        if isinstance(v, LowdimSpec):
            return v
        if isinstance(v, dict):
            return cls(tuple(int(x) for x in v["shape"]), str(v.get("dtype", "float32")))
        if isinstance(v, int):
            return cls((v,))
        return cls(tuple(int(x) for x in v))


@dataclass(frozen=True)
class EpisodeRow:
    """The label columns of one episode, what a listing prints (``Store.episode_rows``): no streams, no rig,
    so a listing of thousands of episodes is one light query."""

    id: int
    uuid: str
    dataset: str
    task: str
    start_time: datetime
    duration_s: float
    num_frames: int
    status: str
    source: str
    success: bool | None
    tags: tuple[str, ...]
    notes: str
    dropped: dict[str, int]  # camera -> dropped frame count
    checkpoint_id: int | None = None  # the store's checkpoint row of a rollout episode


@dataclass(frozen=True)
class EpisodeInfo:
    id: int
    uuid: str
    dataset: str
    task: str
    fps: float
    start_time: datetime
    duration_s: float
    num_frames: int
    status: str
    source: str
    success: bool | None
    tags: tuple[str, ...]
    notes: str
    dropped: dict[str, int]
    checkpoint_id: int | None
    path: Path
    cameras: dict[str, CameraSpec]
    lowdim: dict[str, LowdimSpec] = field(default_factory=dict)
    segments: tuple[dict, ...] = ()
    rig: dict = field(default_factory=dict)
    status_before_trash: str | None = None  # what restore_episode returns a trashed episode to


@dataclass(frozen=True)
class DatasetInfo:
    id: int
    name: str
    features: dict | None
    num_episodes: int  # complete + recovered
    num_frames: int  # over complete + recovered episodes
    counts: dict[str, int]  # status -> count
    created_at: datetime


@dataclass(frozen=True)
class RunInfo:
    id: int
    run_id: str
    dataset: str | None
    model: str
    config: dict
    path: Path
    status: str
    best_metric: float | None
    created_at: datetime
    finished_at: datetime | None
    num_checkpoints: int


@dataclass(frozen=True)
class CheckpointInfo:
    id: int
    run_id: str
    step: int
    path: Path
    metrics: dict
    created_at: datetime


@dataclass
class WriterStats:
    ticks: int = 0
    frames_written: dict[str, int] = field(default_factory=dict)
    frames_dropped: dict[str, int] = field(default_factory=dict)
    queue_depth: dict[str, int] = field(default_factory=dict)
