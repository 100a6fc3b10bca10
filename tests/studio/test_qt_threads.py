"""The shared thread base and error line: a busy GUI never gets a backlog of ticks, and every thread shows a
failure as one line (a KnownError's own message; a bug as its type and message, with what was being done)."""

import pytest
from PyQt6.QtCore import Qt, pyqtSignal

from recorder.errors import DeviceError, error_text
from studio.qt.threads import MAX_PENDING_TICKS, CallThread, ThrottledThread

pytestmark = pytest.mark.gui


def test_error_text_is_one_line_for_known_errors_and_bugs(caplog):
    assert error_text(DeviceError("/dev/ttyACM0: no reply; check the cable")) == "/dev/ttyACM0: no reply; check the cable"
    assert error_text(ValueError("bad\nvalue")) == "ValueError: bad value"
    assert error_text(KeyError("x"), "episode 3") == "episode 3: KeyError: 'x'"
    assert error_text(DeviceError("port busy"), "episode 3") == "port busy"  # a KnownError names its own context
    assert "Traceback" not in error_text(RuntimeError("boom"))
    assert any(r.exc_info for r in caplog.records)  # a bug's traceback goes to the log for the report


class _Ticker(ThrottledThread):
    ticked = pyqtSignal(int)

    def run(self) -> None:
        for i in range(10):
            self.emit_tick(self.ticked, i)


def test_ticks_are_throttled_until_the_gui_consumes_them(qtbot):
    got = []
    thread = _Ticker()
    thread.ticked.connect(got.append)
    with qtbot.waitSignal(thread.finished, timeout=5000):
        thread.start()
    qtbot.waitUntil(lambda: len(got) == MAX_PENDING_TICKS, timeout=2000)
    assert got == [0, 1] and thread.skipped_ticks == 10 - MAX_PENDING_TICKS
    thread.tick_consumed()
    assert thread.emit_tick(thread.ticked, 99)  # one consumed: the next tick goes through
    assert not thread.emit_tick(thread.ticked, 100)
    thread.wait()


def test_call_thread_reports_a_bug_as_one_line(qtbot):
    def connect():
        raise OSError(5, "Input/output error")

    thread = CallThread(connect)
    with qtbot.waitSignal(thread.failed, timeout=5000) as blocker:
        thread.start()
    thread.wait()
    assert blocker.args == ["OSError: [Errno 5] Input/output error"]


def test_a_worker_thread_dropped_while_running_is_stopped_not_destroyed_running(qtbot):
    """A widget owning a decode thread, garbage-collected without being closed (its controller in a cycle):
    the thread stops first. Destroyed while running it aborted the whole process (a crashed test worker)."""
    import gc
    import threading

    from PyQt6.QtCore import QObject

    from studio.qt.threads import WorkerThread

    class Owner:
        def __init__(self):
            self.worker = QObject()
            self.threads = WorkerThread(self.worker, "dropped-decoder")
            self.me = self  # only a cycle holds it, as a widget's connected slots do

    owner = Owner()
    thread = owner.threads.thread
    assert thread.isRunning()
    finished = threading.Event()
    thread.finished.connect(finished.set, type=Qt.ConnectionType.DirectConnection)
    del owner, thread
    gc.collect()  # would abort here: "QThread: Destroyed while thread is still running"
    assert finished.is_set()
