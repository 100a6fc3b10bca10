"""QThread bases shared by the features: their only job is to run recorder/finetune code off the GUI thread
and turn its callbacks into signals (napari ``_qt/threads/status_checker.py``).

- :class:`ThrottledThread`: a thread whose tick signals never build a backlog in the GUI's event queue.
- :class:`CallThread`: one blocking call (connect a rig, detect devices) and its result or one-line error.
- :class:`WorkerThread`: a QObject worker living in its own QThread, stopped cleanly.
"""

from __future__ import annotations

import threading

from PyQt6.QtCore import QObject, QThread, pyqtSignal

from recorder.errors import error_text

#: ticks that may wait in the GUI's event queue; the others are skipped for display only
MAX_PENDING_TICKS = 2


class ThrottledThread(QThread):
    """A QThread whose tick signals are throttled: at most :data:`MAX_PENDING_TICKS` ticks wait in the event
    queue; the others are skipped for display only (the loop, the recording and the rollout are unaffected).
    The GUI calls :meth:`tick_consumed` after handling each one; ``skipped_ticks`` counts the skipped."""

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._tick_lock = threading.Lock()
        self._pending = 0
        self.skipped_ticks = 0

    def tick_consumed(self) -> None:
        """The GUI calls this after handling a tick signal."""
        with self._tick_lock:
            self._pending = max(0, self._pending - 1)

    def emit_tick(self, signal, *args) -> bool:
        """Emit ``signal(*args)`` unless :data:`MAX_PENDING_TICKS` ticks already wait; True when emitted."""
        with self._tick_lock:
            if self._pending >= MAX_PENDING_TICKS:
                self.skipped_ticks += 1
                return False
            self._pending += 1
        signal.emit(*args)
        return True


class CallThread(QThread):
    """Runs one blocking call (connect a rig, disconnect it) off the GUI thread.

    Signals:
        succeeded(object): the call's return value.
        failed(str): a one-line error (:func:`recorder.errors.error_text`).
    """

    succeeded = pyqtSignal(object)
    failed = pyqtSignal(str)

    def __init__(self, fn, parent=None) -> None:
        super().__init__(parent)
        self._fn = fn

    def run(self) -> None:
        try:
            result = self._fn()
        except Exception as err:  # noqa: BLE001 - shown to the person, never takes the app down
            self.failed.emit(error_text(err))
        else:
            self.succeeded.emit(result)


class WorkerThread:
    """A QObject worker living in its own QThread, stopped cleanly by :meth:`stop`."""

    def __init__(self, worker: QObject, name: str) -> None:
        self.worker = worker
        self.thread = QThread()
        self.thread.setObjectName(name)
        worker.moveToThread(self.thread)
        self.thread.start()

    def stop(self) -> None:
        if self.thread.isRunning():
            self.thread.quit()
            self.thread.wait(5000)
        shutdown = getattr(self.worker, "shutdown", None)
        if shutdown is not None:
            shutdown()

    def __del__(self) -> None:
        # Dropped without stop() (its widget was garbage-collected unclosed): a QThread destroyed while it
        # runs aborts the whole process ("QThread: Destroyed while thread is still running"). Its event
        # loop ends in a moment; one still busy after that is kept until it finishes, never destroyed running.
        try:
            thread = self.thread
            if not thread.isRunning():
                return
            thread.quit()
            if not thread.wait(2000):
                _outliving.add(thread)
                thread.finished.connect(lambda: _outliving.discard(thread))
        except RuntimeError:  # its C++ object is already gone: nothing runs
            pass


#: QThreads whose owner went away while they still ran: kept alive until they finish
_outliving: set[QThread] = set()
