"""One owner for the rig: the Record and Rollout tabs share it through ``AppContext.rigs``.

A real arm on one serial port can be opened once. The :class:`RigManager` builds and connects the rig
(always off the GUI thread), keeps it, and hands out a *lease*: the tab holding the lease is the one
that drives the arm; the other tab is refused with a message naming the holder.

Threading: ``open_rig``/``close_rig`` block (device I/O) and are for worker threads (a tab's own
QThread, e.g. the rollout thread); ``connect_rig``/``release`` run them on a worker for the GUI thread.
The lease is bookkeeping only (no I/O) and is taken and given back on the GUI thread.
"""

from __future__ import annotations

import threading
import traceback
from collections.abc import Callable
from pathlib import Path

from PyQt6.QtCore import QObject, pyqtSignal

from studio.qt.threads import CallThread


def default_rig_factory(spec, home: Path | None):
    """Build (not connect) the rig named by ``spec``: 'sim', 'sim:push', a rig.toml path or a RigConfig."""
    from recorder.devices.rig import load_rig

    return load_rig(spec, home=home)


def _same_spec(a, b) -> bool:
    try:
        return bool(a == b)
    except Exception:  # noqa: BLE001 - odd specs (arrays inside) compare as different
        return False


class RigManager(QObject):
    """Owns the connected rig and the lease on it.

    Signals:
        rig_connected(object): the connected rig (emitted from the thread that connected it).
        rig_disconnected(): the rig was disconnected.
        rig_failed(str): connecting or disconnecting failed (one line a person can act on).
        lease_changed(str): the holder's name ("Record", "Rollout") or "" when the rig is free.
    """

    rig_connected = pyqtSignal(object)
    rig_disconnected = pyqtSignal()
    rig_failed = pyqtSignal(str)
    lease_changed = pyqtSignal(str)

    def __init__(self, home: Path | None = None, factory: Callable | None = None, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.home = home
        self.factory = factory or default_rig_factory
        self._lock = threading.RLock()  # guards rig/spec against two worker threads
        self._rig = None
        self._spec = None
        self._holder = ""
        self._calls: list[CallThread] = []

    # ------------------------------------------------------------------ lease
    @property
    def holder(self) -> str:
        """Who drives the arm now ("" when nobody)."""
        return self._holder

    @property
    def busy(self) -> bool:
        return bool(self._holder)

    def acquire(self, owner: str) -> bool:
        """Take the lease for ``owner``; False (nothing changes) while another owner holds it."""
        if self._holder and self._holder != owner:
            return False
        if self._holder != owner:
            self._holder = owner
            self.lease_changed.emit(owner)
        return True

    def release_lease(self, owner: str) -> None:
        """Give the lease back (the rig stays connected)."""
        if self._holder == owner:
            self._holder = ""
            self.lease_changed.emit("")

    def in_use_message(self, wanted_by: str) -> str:
        return (f"the rig is in use by {self._holder}: stop it there first "
                f"({wanted_by} cannot drive the arm at the same time)")

    # ------------------------------------------------------------------ the rig (blocking: worker threads)
    @property
    def rig(self):
        """The connected rig, or None."""
        return self._rig

    @property
    def spec(self):
        return self._spec

    def open_rig(self, spec, factory: Callable | None = None):
        """Return a connected rig for ``spec``: the one already connected when the spec is the same,
        else the old one is disconnected and a new one built and connected. Blocks: worker threads only.
        A spec that is already a rig object (has ``connect``) is used as it is."""
        with self._lock:
            if self._rig is not None and (self._rig is spec or _same_spec(self._spec, spec)) \
                    and getattr(self._rig, "is_connected", True):
                return self._rig
            self.close_rig()
            rig = spec if hasattr(spec, "connect") else (factory or self.factory)(spec, self.home)
            if not getattr(rig, "is_connected", False):
                rig.connect()
            self._rig, self._spec = rig, spec
        self.rig_connected.emit(rig)
        return rig

    def close_rig(self) -> None:
        """Disconnect the rig (if any). Blocks: worker threads only (or at shutdown)."""
        with self._lock:
            rig, self._rig, self._spec = self._rig, None, None
            if rig is None:
                return
            try:
                rig.disconnect()
            finally:
                self.rig_disconnected.emit()

    # ------------------------------------------------------------------ the rig (from the GUI thread)
    def _run(self, fn, on_ok=None) -> CallThread:
        th = CallThread(fn, self)
        if on_ok is not None:
            th.succeeded.connect(on_ok)
        th.failed.connect(self.rig_failed.emit)
        th.finished.connect(lambda th=th: self._on_call_finished(th))
        self._calls.append(th)
        th.start()
        return th

    def _on_call_finished(self, th: CallThread) -> None:
        if th in self._calls:
            self._calls.remove(th)
        th.deleteLater()

    @property
    def working(self) -> bool:
        """A connect or disconnect is under way on a worker thread."""
        return any(th.isRunning() for th in self._calls)

    def connect_rig(self, spec, factory: Callable | None = None) -> CallThread:
        """Connect on a worker thread; ``rig_connected`` or ``rig_failed`` follows."""
        return self._run(lambda: self.open_rig(spec, factory))

    def release(self, owner: str | None = None) -> CallThread:
        """Disconnect the rig on a worker thread, then give back the lease (of ``owner``, or whoever holds
        it): nobody else can take the arm while it is being disconnected. ``rig_disconnected`` follows."""
        owner = owner if owner is not None else self._holder
        th = self._run(self.close_rig)
        th.finished.connect(lambda: self.release_lease(owner))
        return th

    def shutdown(self, timeout_ms: int = 10000) -> None:
        """Wait for pending calls, then disconnect (app exit)."""
        for th in list(self._calls):
            th.wait(timeout_ms)
        self._holder = ""
        try:
            self.close_rig()
        except Exception:  # noqa: BLE001 - exit anyway
            traceback.print_exc()


__all__ = ["RigManager", "default_rig_factory"]
