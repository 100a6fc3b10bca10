"""Alembic environment: the store passes an open connection in ``config.attributes['connection']``."""

from __future__ import annotations

from alembic import context

from recorder.store.models import Base

connection = context.config.attributes.get("connection")
if connection is None:  # pragma: no cover - only the store runs migrations
    raise RuntimeError("run migrations through recorder.store.Store.open, not the alembic CLI")

context.configure(connection=connection, target_metadata=Base.metadata, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
