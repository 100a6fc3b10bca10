"""Deferred GUI work, one piece per event-loop pass.

A window that builds a tab, its plots and its first rows in one go freezes for all of it at once; split
into pieces handed to :func:`run_later`, each piece runs in its own pass and the event loop handles input
and paints in between. One queue for the whole application: two widgets' pieces never share a pass (two
0 ms QTimers started together fire in the same pass). After each piece one pass is left to the event
loop: the repaint a piece causes comes in the next pass, and would share it with the next piece.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable

from PyQt6 import sip
from PyQt6.QtCore import QObject, QSize, QTimer


class _Queue(QObject):
    def __init__(self) -> None:
        super().__init__()
        self._jobs: deque[tuple[QObject, Callable[[], None]]] = deque()
        self._timer = QTimer(self)
        self._timer.setSingleShot(True)
        self._timer.setInterval(0)
        self._timer.timeout.connect(self._run_one)
        self._rest = False  # the pass after a piece is left to the event loop (its repaint)

    def post(self, owner: QObject, fn: Callable[[], None]) -> None:
        self._jobs.append((owner, fn))
        if not self._timer.isActive():
            self._timer.start()

    def _run_one(self) -> None:
        if self._rest:
            self._rest = False
            if self._jobs:
                self._timer.start()
            return
        while self._jobs:
            owner, fn = self._jobs.popleft()
            if sip.isdeleted(owner):  # its widget went away meanwhile
                continue
            try:
                fn()
            finally:
                self._rest = True
                if self._jobs:
                    self._timer.start()
            return


_queue: _Queue | None = None


def run_later(owner: QObject, fn: Callable[[], None]) -> None:
    """Call ``fn()`` in a later event-loop pass, after the pieces posted before it, one piece per pass;
    dropped if ``owner`` (the widget it works on) is deleted first. GUI thread only."""
    global _queue
    if _queue is None or sip.isdeleted(_queue):
        _queue = _Queue()
    _queue.post(owner, fn)


class Later:
    """One piece of a widget's deferred work, posted at most once until it runs (:func:`run_later`).

    ``Later(owner, fn).start()`` posts ``fn``; starting it again before it ran does nothing;
    ``cancel()`` makes the posted piece do nothing (it was done some other way)."""

    def __init__(self, owner: QObject, fn: Callable[[], None]) -> None:
        self._owner = owner
        self._fn = fn
        self._posted = False

    @property
    def pending(self) -> bool:
        return self._posted

    def start(self) -> None:
        if not self._posted:
            self._posted = True
            run_later(self._owner, self._run)

    def cancel(self) -> None:
        self._posted = False

    def _run(self) -> None:
        if self._posted:
            self._posted = False
            self._fn()


class BuiltWhenShown:
    """Mixin for a QWidget whose costly parts (pyqtgraph plots) are made by ``_build_step()``, one call per
    event-loop pass from the widget's first show until ``built`` is true; :meth:`ensure_plots` makes them
    at once. Call ``_init_built_when_shown()`` in ``__init__``; ``_build_step`` may post itself again
    (``self._build_timer.start()``) for work left after ``built`` (menus)."""

    built: bool
    #: the size hints the plots will have (pyqtgraph's): the layout around the widget is the same before and
    #: after they appear (an empty widget first got a sliver of its splitter and kept it)
    HINT = QSize(600, 480)
    MIN_HINT = QSize(68, 68)
    #: plots made while hidden paint this long after the page around them is first shown (that page's own
    #: first paint, ~40 ms, comes first; both in one pass were 60-80 ms)
    FIRST_PAINT_AFTER_MS = 150

    def sizeHint(self) -> QSize:  # noqa: N802 (Qt name)
        return super().sizeHint() if self.built else self.HINT

    def minimumSizeHint(self) -> QSize:  # noqa: N802 (Qt name)
        return super().minimumSizeHint() if self.built else self.MIN_HINT

    def _init_built_when_shown(self) -> None:
        self._build_timer = Later(self, self._build_step)
        self._shown_once = False

    def showEvent(self, event) -> None:  # noqa: N802 (Qt name)
        super().showEvent(event)
        if not self.built:
            self._build_timer.start()
        elif not self._shown_once:
            # made while hidden (build_soon): their first paint (~30 ms for two plots) comes a piece after the
            # page around them painted, not in the same pass
            self.setUpdatesEnabled(False)
            QTimer.singleShot(self.FIRST_PAINT_AFTER_MS, self._paint_at_last)
        self._shown_once = True

    def build_soon(self) -> None:
        """Make the plots in the next event-loop passes (one piece each) without waiting for the first show:
        for a widget on a page the person has not opened yet, so that opening it only paints."""
        if not self.built:
            self._build_timer.start()

    def _paint_at_last(self) -> None:
        if not sip.isdeleted(self):
            self.setUpdatesEnabled(True)

    def ensure_plots(self) -> None:
        """Make the plots now (with the data given so far)."""
        while not self.built:
            self._build_step()
