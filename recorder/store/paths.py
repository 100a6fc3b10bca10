"""Kept so that ``from recorder.store.paths import resolve_home`` still works: the names live in the
neutral :mod:`recorder.paths` (devices import that one; they never import the store)."""

from __future__ import annotations

from recorder.paths import HOME_ENV, default_home, resolve_home

__all__ = ["HOME_ENV", "default_home", "resolve_home"]
