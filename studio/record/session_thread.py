"""Qt adapters for the record loop: their only job is to run recorder code off the GUI thread and turn
its callbacks into signals (napari ``_qt/threads/status_checker.py``). Widgets never call devices.
"""

from __future__ import annotations

import threading
import traceback

from PyQt6.QtCore import QThread, pyqtSignal

from recorder.errors import KnownError


class SessionThread(QThread):
    """Runs ``RecordSession.run()`` on its own thread.

    Tick signals are throttled so a busy GUI never builds a backlog: at most two ticks wait in the
    event queue; the others are skipped for display only (the loop and the recording are unaffected).

    Signals:
        ticked(object, object): TickInfo, SessionStatus; frames are the camera's arrays (not copied).
        state_changed(object): SessionStatus after a phase change or a command.
        episode_saved(object): EpisodeInfo of a saved (or kept after a fault) episode.
        fault_raised(str): a one-line fault message; the session keeps running.
    """

    ticked = pyqtSignal(object, object)
    state_changed = pyqtSignal(object)
    episode_saved = pyqtSignal(object)
    fault_raised = pyqtSignal(str)

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self.session = None
        self._pending = 0
        self._lock = threading.Lock()
        self.skipped_ticks = 0

    def callbacks(self):
        from recorder.session import SessionCallbacks

        return SessionCallbacks(on_tick=self._on_tick, on_state=self.state_changed.emit,
                                on_saved=self.episode_saved.emit, on_fault=self.fault_raised.emit)

    def set_session(self, session) -> None:
        self.session = session

    def tick_consumed(self) -> None:
        """The GUI calls this after handling a ``ticked`` signal."""
        with self._lock:
            self._pending = max(0, self._pending - 1)

    def _on_tick(self, info, status) -> None:
        with self._lock:
            if self._pending >= 2:
                self.skipped_ticks += 1
                return
            self._pending += 1
        self.ticked.emit(info, status)

    def run(self) -> None:
        try:
            self.session.run()
        except Exception as err:  # noqa: BLE001 - never take the app down
            self.fault_raised.emit(f"record session ended: {type(err).__name__}: {err}")
            traceback.print_exc()

    def stop(self, timeout_ms: int = 10000) -> None:
        if self.session is not None:
            self.session.close(timeout=0)
        self.wait(timeout_ms)


class CallThread(QThread):
    """Runs one blocking call (connect a rig, disconnect it) off the GUI thread.

    Signals:
        succeeded(object): the call's return value.
        failed(str): a one-line error (KnownError text, or the exception type and message).
    """

    succeeded = pyqtSignal(object)
    failed = pyqtSignal(str)

    def __init__(self, fn, parent=None) -> None:
        super().__init__(parent)
        self._fn = fn

    def run(self) -> None:
        try:
            result = self._fn()
        except KnownError as err:
            self.failed.emit(str(err))
        except Exception as err:  # noqa: BLE001
            traceback.print_exc()
            self.failed.emit(f"{type(err).__name__}: {err}")
        else:
            self.succeeded.emit(result)
