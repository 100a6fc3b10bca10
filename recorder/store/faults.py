"""Faults of the disk and of SQLite, sorted into errors a person can act on (and the rest: bugs).

qutebrowser's ``misc/sql.py`` sorts SQLite result codes into "known" errors (the disk is full, the
database is locked, an I/O error, a read-only file) and bugs. We do the same: a known code becomes one
``StoreError`` line naming the store and what to do; an unknown code is re-raised as it is.

A full disk is never reported as a corrupt index: ENOSPC, ``SQLITE_FULL`` and an ``SQLITE_IOERR`` on a
disk without free space all become :class:`DiskFullError` ("disk full at <path>: N MB needed, ...").

:class:`SpaceReserve` is a ballast file: a few MB taken when an episode starts and given back the moment
the disk fills, so that finishing what was recorded (the last low-dim rows, meta.json, the index row)
still finds room.
"""

from __future__ import annotations

import errno
import os
import shutil
import sqlite3
from pathlib import Path

from recorder.errors import StoreError

MB = 1024 * 1024
#: free space below which a write to the store is treated as impossible (SQLite, meta.json, a remux)
MIN_FREE_BYTES = 2 * MB
#: the ballast file kept next to the index while an episode records
RESERVE_FILE = ".space-reserve"
RESERVE_BYTES = 4 * MB

_FULL_ERRNOS = {errno.ENOSPC, errno.EDQUOT}
# SQLite primary result codes (https://www.sqlite.org/rescode.html)
SQLITE_PERM, SQLITE_BUSY, SQLITE_LOCKED, SQLITE_READONLY = 3, 5, 6, 8
SQLITE_IOERR, SQLITE_CORRUPT, SQLITE_FULL, SQLITE_CANTOPEN, SQLITE_NOTADB = 10, 11, 13, 14, 26


class DiskFullError(StoreError, OSError):
    """The disk holding the store (or a run, an export) has no room for the write asked for.

    Also an ``OSError`` with errno ENOSPC, so that code keeping what was written on a disk fault (the record
    loop) treats it like the raw error; ``str()`` is the one line for the person."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.errno = errno.ENOSPC


class DiskReadError(StoreError):
    """Reading a file failed at the disk (EIO, a stale network mount): the file may be fine; nothing is repaired."""


#: errno values of a read that failed at the disk, not because the file's bytes are bad
_IO_ERRNOS = {errno.EIO, errno.ENXIO, errno.ENODEV, errno.ESTALE, errno.ETIMEDOUT}


def read_fault(err: BaseException, path: str | os.PathLike[str]) -> DiskReadError | None:
    """A DiskReadError for an I/O error (EIO and the like) while reading ``path``, else None."""
    code = getattr(err, "errno", None)
    if code in _IO_ERRNOS:
        why = getattr(err, "strerror", None) or os.strerror(code)
        return DiskReadError(
            f"I/O error reading {path} ({why}); the file is not judged damaged and nothing is changed: check the "
            "disk (dmesg, a network mount that went away) and retry"
        )
    return None


class IndexCorruptError(StoreError):
    """index.sqlite is damaged (not a SQLite file, failed integrity check): repair rebuilds it."""


def free_bytes(path: str | os.PathLike[str]) -> int:
    """Free bytes on the file system holding ``path`` (its nearest existing parent)."""
    p = Path(path).absolute()
    while not p.exists() and p != p.parent:
        p = p.parent
    try:
        return int(shutil.disk_usage(p).free)
    except OSError:
        return 1 << 62  # cannot tell: do not claim the disk is full


def _mb(n: int) -> str:
    return f"{max(n, 0) / MB:.1f}"


def disk_full_error(path: str | os.PathLike[str], needed: int | None = None, then: str = "retry") -> DiskFullError:
    """The one line for a full disk: where, how much is needed, what to run once space is free."""
    need = max(int(needed or 0), MIN_FREE_BYTES)
    free = free_bytes(path)
    return DiskFullError(
        f"disk full at {path}: {_mb(need)} MB needed ({_mb(free)} MB free), free space and run {then}"
    )


def require_free(path: str | os.PathLike[str], needed: int, then: str = "retry") -> None:
    """DiskFullError unless ``needed`` bytes (at least MIN_FREE_BYTES) are free at ``path``."""
    need = max(int(needed), MIN_FREE_BYTES)
    if free_bytes(path) < need:
        raise disk_full_error(path, need, then)


def _chain(err: BaseException | None):
    seen = set()
    while err is not None and id(err) not in seen:
        seen.add(id(err))
        yield err
        orig = getattr(err, "orig", None)  # SQLAlchemy's DBAPIError wraps the sqlite3 error
        if isinstance(orig, BaseException):
            yield orig
        err = err.__cause__ or err.__context__


def sqlite_code(err: BaseException) -> int | None:
    """The primary SQLite result code of ``err`` (or of the sqlite3 error it wraps), else None."""
    for e in _chain(err):
        if isinstance(e, sqlite3.Error):
            code = getattr(e, "sqlite_errorcode", None)
            if code is not None:
                return int(code) & 0xFF
            text = str(e).lower()
            if "disk is full" in text:
                return SQLITE_FULL
            if "disk i/o error" in text:
                return SQLITE_IOERR
            if "locked" in text:
                return SQLITE_LOCKED
            if "not a database" in text:
                return SQLITE_NOTADB
            if "malformed" in text:
                return SQLITE_CORRUPT
            if "readonly" in text or "read-only" in text:
                return SQLITE_READONLY
            if "unable to open" in text:
                return SQLITE_CANTOPEN
    return None


def is_disk_full(err: BaseException | None, path: str | os.PathLike[str] | None = None) -> bool:
    """True for ENOSPC/EDQUOT (also FFmpeg's), SQLITE_FULL, and an I/O error on a disk with no free space."""
    for e in _chain(err):
        if isinstance(e, OSError) and e.errno in _FULL_ERRNOS:
            return True
        if getattr(e, "errno", None) in _FULL_ERRNOS:  # av.error.OSError and friends
            return True
    code = sqlite_code(err) if err is not None else None
    if code == SQLITE_FULL:
        return True
    if code in (SQLITE_IOERR, SQLITE_CANTOPEN) and path is not None:
        return free_bytes(path) < MIN_FREE_BYTES
    return False


def known_sqlite_error(err: BaseException, index: str | os.PathLike[str], then: str = "retry") -> StoreError | None:
    """A one-line StoreError for a SQLite fault a person can fix, or None (a bug: re-raise it)."""
    index = Path(index)
    root = index.parent
    code = sqlite_code(err)
    if code is None:
        return None
    if is_disk_full(err, root):
        return disk_full_error(root, then=then)
    if code == SQLITE_IOERR:
        return StoreError(
            f"disk I/O error on {index}: the index is not changed; check the disk holding {root} "
            f"(free space, dmesg, a network mount that went away) and {then}"
        )
    if code in (SQLITE_BUSY, SQLITE_LOCKED):
        return StoreError(
            f"{index} is locked by another process (a second vla-studio on the same store?); "
            f"close it, then {then}"
        )
    if code in (SQLITE_READONLY, SQLITE_PERM, SQLITE_CANTOPEN):
        return StoreError(
            f"{index} cannot be opened for writing (read-only file system or no permission on {root}); "
            f"fix the permissions or pass another --home, then {then}"
        )
    if code in (SQLITE_CORRUPT, SQLITE_NOTADB):
        return IndexCorruptError(
            f"{index} is damaged ({err.__class__.__name__}: {str(getattr(err, 'orig', err)).splitlines()[0]}); "
            f"run 'vla-studio --home {root} store check --repair' to move it aside and rebuild it"
        )
    return None


class SpaceReserve:
    """A ballast file of ``nbytes`` under ``root``: taken with :meth:`take`, given back with :meth:`release`.

    Taking it fails with DiskFullError when the disk has no room for it plus MIN_FREE_BYTES, so a
    recording never starts on a disk that cannot hold its first seconds."""

    def __init__(self, root: str | os.PathLike[str], nbytes: int = RESERVE_BYTES) -> None:
        self.path = Path(root) / RESERVE_FILE
        self.nbytes = int(nbytes)

    def take(self, then: str = "retry") -> None:
        if self.nbytes <= 0:
            return
        have = self.path.stat().st_size if self.path.is_file() else 0
        if have >= self.nbytes:
            return
        require_free(self.path.parent, self.nbytes - have + MIN_FREE_BYTES, then)
        try:
            fd = os.open(self.path, os.O_WRONLY | os.O_CREAT, 0o644)
            try:
                try:
                    os.posix_fallocate(fd, 0, self.nbytes)
                except OSError as err:
                    if err.errno in _FULL_ERRNOS:
                        raise
                    os.pwrite(fd, os.urandom(self.nbytes), 0)  # no fallocate here; random bytes defeat compression
            finally:
                os.close(fd)
        except OSError as err:
            self.release()
            if err.errno in _FULL_ERRNOS:
                raise disk_full_error(self.path.parent, self.nbytes + MIN_FREE_BYTES, then) from None
            raise

    def release(self) -> bool:
        """Give the space back; True when there was something to give."""
        try:
            self.path.unlink()
            return True
        except FileNotFoundError:
            return False
