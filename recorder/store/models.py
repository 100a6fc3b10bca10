"""SQLAlchemy 2 typed ORM of the index. Bulk data lives in files; a row is the commit point.

Schema changes: edit these models AND add an Alembic revision under ``migrations/versions``
(``tests/recorder/store/test_migrations.py`` fails when the two disagree), then bump
``SCHEMA_MINOR`` (compatible addition) or ``SCHEMA_MAJOR`` (older versions must refuse the store).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

SCHEMA_MAJOR = 1
SCHEMA_MINOR = 2
HEAD_REVISION = "0003"


def pack_user_version(major: int, minor: int) -> int:
    return (major << 16) | minor


def unpack_user_version(v: int) -> tuple[int, int]:
    return v >> 16, v & 0xFFFF


def utcnow() -> datetime:
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator):
    """Timezone-aware UTC datetimes stored as sortable ISO text in SQLite."""

    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return value.astimezone(UTC).replace(tzinfo=None)

    def process_result_value(self, value: datetime | None, dialect) -> datetime | None:
        return None if value is None else value.replace(tzinfo=UTC)


class Base(DeclarativeBase):
    type_annotation_map = {dict[str, Any]: JSON, list[Any]: JSON, datetime: UTCDateTime}


class Dataset(Base):
    __tablename__ = "datasets"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    features: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    version: Mapped[int] = mapped_column(Integer, default=0)  # bumped on every change of its episodes
    stats: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    stats_version: Mapped[int | None] = mapped_column(Integer, nullable=True)

    episodes: Mapped[list[Episode]] = relationship(back_populates="dataset")


class FinetuneRun(Base):
    __tablename__ = "finetune_runs"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    run_id: Mapped[str] = mapped_column(String(200), unique=True)
    dataset_id: Mapped[int | None] = mapped_column(
        ForeignKey("datasets.id", ondelete="SET NULL"), nullable=True
    )
    model: Mapped[str] = mapped_column(Text)
    config: Mapped[dict[str, Any]] = mapped_column(JSON)
    path: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(32), default="running")
    best_metric: Mapped[float | None] = mapped_column(Float, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)

    dataset: Mapped[Dataset | None] = relationship()
    checkpoints: Mapped[list[Checkpoint]] = relationship(
        back_populates="run", cascade="all, delete-orphan", passive_deletes=True
    )


class Checkpoint(Base):
    __tablename__ = "checkpoints"
    __table_args__ = (UniqueConstraint("run_id", "step", name="uq_checkpoint_run_step"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("finetune_runs.id", ondelete="CASCADE"))
    step: Mapped[int] = mapped_column(Integer)
    path: Mapped[str] = mapped_column(Text)
    metrics: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    run: Mapped[FinetuneRun] = relationship(back_populates="checkpoints")


class Episode(Base):
    __tablename__ = "episodes"
    __table_args__ = (
        # one index per filter the GUI and CLI offer (0003); tests/recorder/store/test_query_plans.py
        # checks that every query the code runs is served by one
        Index("ix_episodes_dataset_status_frames", "dataset_id", "status", "num_frames"),  # covers counts
        Index("ix_episodes_dataset_id", "dataset_id"),  # (dataset_id, id): a dataset's pages in id order
        Index("ix_episodes_start_time", "start_time"),
        Index("ix_episodes_status_start", "status", "start_time"),
        Index("ix_episodes_task_success_start", "task", "success", "start_time"),
        Index("ix_episodes_source_status", "source", "status"),
        Index("ix_episodes_success_status", "success", "status"),
        Index("ix_episodes_status_duration", "status", "duration_s"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    uuid: Mapped[str] = mapped_column(String(36), unique=True)
    dataset_id: Mapped[int] = mapped_column(ForeignKey("datasets.id", ondelete="RESTRICT"))
    task: Mapped[str] = mapped_column(Text, default="")
    rig: Mapped[dict[str, Any]] = mapped_column(JSON)
    fps: Mapped[float] = mapped_column(Float)
    start_time: Mapped[datetime] = mapped_column(UTCDateTime)
    duration_s: Mapped[float] = mapped_column(Float, default=0.0)
    num_frames: Mapped[int] = mapped_column(Integer, default=0)
    status: Mapped[str] = mapped_column(String(16), default="recording")
    # the status a trashed episode had before (restore_episode returns it); None when not trashed (0002)
    status_before_trash: Mapped[str | None] = mapped_column(String(16), nullable=True)
    source: Mapped[str] = mapped_column(String(16), default="teleop")
    success: Mapped[bool | None] = mapped_column(Boolean, nullable=True)
    notes: Mapped[str] = mapped_column(Text, default="")
    dropped: Mapped[dict[str, Any]] = mapped_column(JSON)  # camera -> dropped frame count
    segments: Mapped[list[Any]] = mapped_column(JSON)  # [{"kind", "start_tick", "end_tick"}]
    checkpoint_id: Mapped[int | None] = mapped_column(
        ForeignKey("checkpoints.id", ondelete="SET NULL"), nullable=True, index=True
    )
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)

    dataset: Mapped[Dataset] = relationship(back_populates="episodes")
    streams: Mapped[list[Stream]] = relationship(
        back_populates="episode", cascade="all, delete-orphan", passive_deletes=True, order_by="Stream.id"
    )
    tag_rows: Mapped[list[EpisodeTag]] = relationship(
        back_populates="episode", cascade="all, delete-orphan", passive_deletes=True
    )
    checkpoint: Mapped[Checkpoint | None] = relationship()


class EpisodeTag(Base):
    __tablename__ = "episode_tags"
    __table_args__ = (Index("ix_episode_tags_tag_episode", "tag", "episode_id"),)  # tag filter (0003)

    episode_id: Mapped[int] = mapped_column(ForeignKey("episodes.id", ondelete="CASCADE"), primary_key=True)
    tag: Mapped[str] = mapped_column(String(100), primary_key=True)

    episode: Mapped[Episode] = relationship(back_populates="tag_rows")


class Stream(Base):
    """One camera video or one low-dim column of an episode."""

    __tablename__ = "streams"
    __table_args__ = (UniqueConstraint("episode_id", "name", name="uq_stream_episode_name"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    episode_id: Mapped[int] = mapped_column(ForeignKey("episodes.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(200))
    kind: Mapped[str] = mapped_column(String(16))  # "video" | "lowdim"
    shape: Mapped[list[Any]] = mapped_column(JSON)
    dtype: Mapped[str] = mapped_column(String(32))
    codec: Mapped[str | None] = mapped_column(String(32), nullable=True)  # h264 / av1 / arrow
    path: Mapped[str] = mapped_column(Text)  # relative to the episode folder
    num_frames: Mapped[int] = mapped_column(Integer, default=0)
    options: Mapped[dict[str, Any]] = mapped_column(JSON)  # CameraSpec fields for video

    episode: Mapped[Episode] = relationship(back_populates="streams")
