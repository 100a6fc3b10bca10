"""Cyclic garbage holding Qt objects is destroyed in the GUI thread, never in a worker thread.

Python collects cycles in whichever thread allocates past a threshold; a pyqtgraph plot destroyed that way
from a worker thread while the GUI thread painted it crashed a test run (segfault in GraphicsView.paintEvent).
"""

from __future__ import annotations

import gc
import threading

from PyQt6.QtCore import QObject

from widgets import gui_gc


class _CyclicQt(QObject):
    """A Qt object only a reference cycle keeps (as a replaced plot item or a closed dialog)."""

    def __init__(self, died_in: list) -> None:
        super().__init__()
        self.me = self
        self._died_in = died_in

    def __del__(self) -> None:
        self._died_in.append(threading.current_thread().name)


def _read_rows_in_a_worker() -> list:
    """What the Datasets tab's page reader does: make many container objects (rows) the GUI keeps, far past
    the collector's first threshold, in a worker thread."""
    rows: list = []

    def work():
        rows.extend([i, str(i)] for i in range(20000))

    t = threading.Thread(target=work, name="worker")
    t.start()
    t.join()
    return rows


def test_qt_garbage_made_while_a_worker_allocates_dies_in_the_gui_thread(qtbot, qapp):
    gui_gc.install(qapp)
    died_in: list[str] = []
    _CyclicQt(died_in)  # garbage at once: only its cycle holds it
    rows = _read_rows_in_a_worker()
    assert died_in == []  # the worker's allocations did not collect it
    qtbot.waitUntil(lambda: bool(died_in), timeout=3000)  # the GUI thread's timer did, soon after
    assert died_in == [threading.main_thread().name]
    assert len(rows) == 20000


def test_the_studio_app_collects_in_its_own_thread_and_uninstall_restores_automatic_collection(qtbot, qapp):
    app = gui_gc.gui_app()
    assert app is qapp and app.applicationName() == "vla-studio"
    assert not gc.isenabled()
    assert len(app.findChildren(gui_gc.GuiThreadCollector)) == 1
    gui_gc.gui_app()  # a second window's set-up does not stack collectors
    assert len(app.findChildren(gui_gc.GuiThreadCollector)) == 1
    died_in: list[str] = []
    _CyclicQt(died_in)
    gui_gc.uninstall(app)  # collects what is left, here
    assert died_in == [threading.main_thread().name]
    assert gc.isenabled()
