"""Crash-safe file writes shared by every package: write a temp file beside the target, fsync, rename.

A reader (or a crash) sees the old file or the new one, never half of one."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

__all__ = ["write_json_atomic", "write_text_atomic"]


def write_text_atomic(path: str | os.PathLike[str], text: str, *, encoding: str = "utf-8",
                      tmp_suffix: str = ".tmp") -> Path:
    """Replace ``path`` with ``text`` atomically (temp file ``<name><tmp_suffix>``, fsync, ``os.replace``)."""
    path = Path(path)
    tmp = path.with_name(path.name + tmp_suffix)
    with open(tmp, "w", encoding=encoding) as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    return path


def write_json_atomic(path: str | os.PathLike[str], data: Any, *, indent: int = 1, sort_keys: bool = False) -> Path:
    """Replace ``path`` with ``data`` as JSON atomically; values JSON cannot hold are written with ``str``."""
    return write_text_atomic(path, json.dumps(data, indent=indent, sort_keys=sort_keys, default=str))
