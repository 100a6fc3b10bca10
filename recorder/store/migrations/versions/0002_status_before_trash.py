"""episodes.status_before_trash: trash keeps the previous status

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-24 06:20:00

Before this revision the Datasets curation code remembered that a trashed episode had been
``recovered`` in a hidden tag ``_was:recovered`` (anything else came back as ``complete``). The
upgrade moves that knowledge into the new column and drops the hidden tag; the downgrade puts the
tag back. ``ADD COLUMN`` / ``DROP COLUMN`` are native in SQLite (>= 3.35): no table is rebuilt, so
no ``ON DELETE CASCADE`` can fire on streams or tags.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

_LEGACY_TAG = "_was:recovered"


def upgrade() -> None:
    op.add_column("episodes", sa.Column("status_before_trash", sa.String(length=16), nullable=True))
    op.execute(
        sa.text(
            "UPDATE episodes SET status_before_trash = CASE WHEN EXISTS ("
            " SELECT 1 FROM episode_tags t WHERE t.episode_id = episodes.id AND t.tag = :tag)"
            " THEN 'recovered' ELSE 'complete' END "
            "WHERE status = 'trashed'"
        ).bindparams(tag=_LEGACY_TAG)
    )
    op.execute(sa.text("DELETE FROM episode_tags WHERE tag = :tag").bindparams(tag=_LEGACY_TAG))


def downgrade() -> None:
    op.execute(
        sa.text(
            "INSERT OR IGNORE INTO episode_tags (episode_id, tag) SELECT id, :tag FROM episodes "
            "WHERE status = 'trashed' AND status_before_trash = 'recovered'"
        ).bindparams(tag=_LEGACY_TAG)
    )
    op.execute("ALTER TABLE episodes DROP COLUMN status_before_trash")
