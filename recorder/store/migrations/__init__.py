"""Alembic migrations of the store index, run programmatically by ``Store.open``."""
