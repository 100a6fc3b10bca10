"""Typed errors shared by the whole studio.

Two families, as qutebrowser splits them:
- ``KnownError``: something a person can fix (a bad path, a device unplugged, a full disk).
  Its message is one line that names the file or device and says what to do. The CLI prints
  it without a traceback and exits with status 2; the GUI shows it in a message box.
- ``BugError``: an invariant of ours broke. Shown with a traceback.
"""

from __future__ import annotations


class StudioWarning(UserWarning):
    """Our own warnings. Tests turn them into errors."""


class KnownError(Exception):
    """An error a person can act on. ``str(err)`` is one line naming the file/device and the fix."""


class BugError(Exception):
    """An internal invariant broke; report it."""


class StoreError(KnownError):
    """The episode store cannot be opened or used as asked."""


class SchemaTooNewError(StoreError):
    """The store was written by a newer vla-studio."""


class DeviceError(KnownError):
    """A device failed (bad reply, lost, misconfigured)."""


class DeviceNotConnectedError(DeviceError):
    """A device was used before connect() or after it went away."""


class DeviceTimeoutError(DeviceError):
    """A device did not answer in time."""


class ConfigError(KnownError):
    """A config or rig file is invalid."""


class DatasetError(KnownError):
    """A dataset cannot be used for what was asked (mismatched features, empty, bad format)."""


class ModelError(KnownError):
    """A model folder or checkpoint cannot be loaded or used."""


def one_line(text: object, limit: int = 300) -> str:
    """``text`` (often a library's multi-line exception message) as one line of at most ``limit`` characters."""
    flat = " ".join(str(text).split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def error_text(err: BaseException, context: str | None = None) -> str:
    """The one line a person is shown for ``err``, in every tab, worker and thread.

    A :class:`KnownError` is its own message (it already names the file or device and the fix). Anything
    else is a bug of ours or a library's: ``Type: message`` on one line, after ``context`` (what was being
    done, e.g. ``"episode 3"``) when given, and its traceback goes to the log for the bug report."""
    if isinstance(err, KnownError):
        return one_line(err)
    import logging

    logging.getLogger("vla_studio").error("%s", context or "unexpected error", exc_info=err)
    text = f"{type(err).__name__}: {one_line(err)}" if str(err) else type(err).__name__
    return f"{context}: {text}" if context else text
