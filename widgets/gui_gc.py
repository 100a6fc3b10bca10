"""Python's cycle collector, run in the GUI thread only.

CPython collects cyclic garbage in whichever thread happens to allocate when a generation's threshold is
crossed. In the studio that is often a worker thread (the store's page reader, a camera, the policy). Garbage
that holds Qt objects (a closed dialog, a pyqtgraph plot replaced by a new one: pyqtgraph items are full of
cycles) is then destroyed from that thread while the GUI thread may be painting it: a segmentation fault
inside ``QGraphicsView::paintEvent`` (seen in the test suite, and a user's studio can do the same).

:func:`install` turns automatic collection off and collects from a GUI-thread timer instead, generation by
generation with the thresholds the interpreter had, so the same amount of work runs, only in the right thread.
Worker threads still free everything that is not in a cycle at once (reference counting).
"""

from __future__ import annotations

import gc

from PyQt6.QtCore import QCoreApplication, QObject, QThread, QTimer

#: how often the GUI thread looks at the collector's counts (a young-generation pass is well under 1 ms)
INTERVAL_MS = 100


class GuiThreadCollector(QObject):
    def __init__(self, parent: QObject, interval_ms: int = INTERVAL_MS) -> None:
        super().__init__(parent)
        self.threshold = gc.get_threshold()
        self._was_enabled = gc.isenabled()
        self._timer = QTimer(self)
        self._timer.setInterval(interval_ms)
        self._timer.timeout.connect(self.check)

    def start(self) -> None:
        gc.disable()
        self._timer.start()

    def check(self) -> int:
        """Collect the generations whose counts passed their thresholds, as the interpreter would have."""
        n0, n1, n2 = gc.get_count()
        t0, t1, t2 = self.threshold
        if n0 <= t0:
            return 0
        if n1 <= t1:
            return gc.collect(0)
        if n2 <= t2:
            return gc.collect(1)
        return gc.collect(2)

    def stop(self) -> None:
        """Back to automatic collection, after collecting everything here (in the GUI thread)."""
        self._timer.stop()
        gc.collect()
        if self._was_enabled:
            gc.enable()


def install(app: QCoreApplication | None = None) -> GuiThreadCollector:
    """Collect cyclic garbage in ``app``'s (the GUI) thread only, for as long as the application lives.
    Idempotent; call from the GUI thread."""
    app = app or QCoreApplication.instance()
    if app is None:
        raise RuntimeError("gui_gc.install needs a QApplication")
    if QThread.currentThread() is not app.thread():
        raise RuntimeError("gui_gc.install must be called from the GUI thread")
    existing = app.findChild(GuiThreadCollector)
    if existing is not None:
        existing.start()
        return existing
    collector = GuiThreadCollector(app)
    collector.start()
    return collector


def uninstall(app: QCoreApplication | None = None) -> None:
    app = app or QCoreApplication.instance()
    collector = None if app is None else app.findChild(GuiThreadCollector)
    if collector is not None:
        collector.stop()
        collector.setParent(None)  # ours now: deleted with the last reference, so the next install makes one


def gui_app(name: str = "vla-studio"):
    """The process's QApplication (made if there is none), named, with cyclic garbage collected in its
    thread only (:func:`install`): what every studio window runs on."""
    import sys

    from PyQt6.QtWidgets import QApplication

    app = QApplication.instance() or QApplication(sys.argv[:1])
    app.setApplicationName(name)
    install(app)
    return app
