"""Qt adapter for the record loop: its only job is to run recorder code off the GUI thread and turn
its callbacks into signals (napari ``_qt/threads/status_checker.py``). Widgets never call devices.
"""

from __future__ import annotations

from PyQt6.QtCore import pyqtSignal

from recorder.errors import error_text
from studio.qt.threads import ThrottledThread


class SessionThread(ThrottledThread):
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

    def callbacks(self):
        from recorder.session import SessionCallbacks

        return SessionCallbacks(on_tick=self._on_tick, on_state=self.state_changed.emit,
                                on_saved=self.episode_saved.emit, on_fault=self.fault_raised.emit)

    def set_session(self, session) -> None:
        self.session = session

    def _on_tick(self, info, status) -> None:
        self.emit_tick(self.ticked, info, status)

    def run(self) -> None:
        try:
            self.session.run()
        except Exception as err:  # noqa: BLE001 - never take the app down
            self.fault_raised.emit(f"record session ended: {error_text(err)}")

    def stop(self, timeout_ms: int = 10000) -> None:
        if self.session is not None:
            self.session.close(timeout=0)
        self.wait(timeout_ms)

