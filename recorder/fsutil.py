"""File helpers shared by every package.

Crash-safe writes: write a temp file beside the target, fsync, rename; a reader (or a crash) sees the old file or
the new one, never half of one. One reader for a JSON file that must hold an object, with one ladder of what can be
wrong with it (missing / unreadable / not UTF-8 / not JSON / not an object) that each caller words for its users."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

__all__ = ["JsonObjectError", "load_json_object", "write_json_atomic", "write_text_atomic"]


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


class JsonObjectError(ValueError):
    """Why a JSON file could not be read as an object.

    ``problem`` is one of ``missing``, ``unreadable``, ``not-utf8``, ``not-json``, ``too-deep``, ``not-object``;
    ``cause`` the exception behind it (None for ``not-object``); ``found`` the JSON type found instead of an object;
    ``str()`` (and ``reason``) a short default phrase such as ``not valid JSON (Expecting value, line 1)``."""

    def __init__(self, path: Path, problem: str, reason: str, *, cause: BaseException | None = None,
                 found: str = ""):
        super().__init__(reason)
        self.path, self.problem, self.reason, self.cause, self.found = path, problem, reason, cause, found


def load_json_object(path: str | os.PathLike[str]) -> dict:
    """The object a JSON file holds; anything else raises JsonObjectError saying which rung of the ladder failed."""
    path = Path(path)
    try:
        data = json.loads(path.read_bytes().decode("utf-8"))
    except FileNotFoundError as err:
        raise JsonObjectError(path, "missing", "missing", cause=err) from None
    except OSError as err:
        raise JsonObjectError(path, "unreadable", f"cannot read ({err.strerror or err})", cause=err) from None
    except UnicodeDecodeError as err:
        raise JsonObjectError(path, "not-utf8", f"not a text (UTF-8) file (byte {err.start}); the file is damaged",
                              cause=err) from None
    except json.JSONDecodeError as err:
        raise JsonObjectError(path, "not-json", f"not valid JSON ({err.msg}, line {err.lineno})", cause=err) from None
    except RecursionError as err:
        raise JsonObjectError(path, "too-deep", "JSON nested too deeply", cause=err) from None
    if not isinstance(data, dict):
        found = type(data).__name__
        raise JsonObjectError(path, "not-object", f"expected a JSON object, found a {found}", found=found)
    return data
