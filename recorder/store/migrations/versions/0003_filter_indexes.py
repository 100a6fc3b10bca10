"""indexes for every episode filter the GUI and CLI offer (a 100k-episode store stays instant)

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-01 10:00:00

Adds one index per filter (task, success, source, date, duration, tag) and makes the dataset/status
index cover ``num_frames`` so the per-dataset counts are read from the index alone; a plain
``dataset_id`` index gives a dataset's pages in id order without a sort. Only indexes change: no table
is rebuilt, no row is touched.
"""

from __future__ import annotations

from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

_NEW = (
    ("episodes", "ix_episodes_dataset_status_frames", ["dataset_id", "status", "num_frames"]),
    ("episodes", "ix_episodes_dataset_id", ["dataset_id"]),
    ("episodes", "ix_episodes_status_start", ["status", "start_time"]),
    ("episodes", "ix_episodes_task_success_start", ["task", "success", "start_time"]),
    ("episodes", "ix_episodes_source_status", ["source", "status"]),
    ("episodes", "ix_episodes_success_status", ["success", "status"]),
    ("episodes", "ix_episodes_status_duration", ["status", "duration_s"]),
    ("episode_tags", "ix_episode_tags_tag_episode", ["tag", "episode_id"]),
)
_OLD = (
    ("episodes", "ix_episodes_dataset_status", ["dataset_id", "status"]),
    ("episode_tags", "ix_episode_tags_tag", ["tag"]),
)


def upgrade() -> None:
    for table, name, cols in _NEW:
        op.create_index(name, table, cols, unique=False)
    for table, name, _cols in _OLD:
        op.drop_index(name, table_name=table)


def downgrade() -> None:
    for table, name, cols in _OLD:
        op.create_index(name, table, cols, unique=False)
    for table, name, _cols in _NEW:
        op.drop_index(name, table_name=table)
