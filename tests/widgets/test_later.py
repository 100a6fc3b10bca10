"""Deferred GUI pieces (widgets.later): in order, one per event-loop pass, dropped with their widget."""

from __future__ import annotations

import pytest
from PyQt6 import sip
from PyQt6.QtCore import QCoreApplication, QEventLoop
from PyQt6.QtWidgets import QWidget

from widgets.later import Later, run_later

pytestmark = pytest.mark.gui


def _one_pass() -> None:
    QCoreApplication.processEvents(QEventLoop.ProcessEventsFlag.AllEvents)


def test_pieces_run_in_order_one_per_pass(qtbot):
    owner = QWidget()
    qtbot.addWidget(owner)
    ran = []
    for name in "abc":
        run_later(owner, lambda n=name: ran.append(n))
    seen = []
    for _ in range(50):  # pass after pass: never two pieces in one
        before = len(ran)
        _one_pass()
        assert len(ran) - before <= 1
        seen.append(len(ran))
        if len(ran) == 3:
            break
    assert ran == ["a", "b", "c"]
    assert seen.index(3) - seen.index(1) >= 2  # a pass for the event loop between two pieces


def test_a_piece_of_a_deleted_widget_is_dropped_and_later_runs_once(qtbot):
    gone, kept = QWidget(), QWidget()
    qtbot.addWidget(kept)
    ran = []
    run_later(gone, lambda: ran.append("gone"))
    piece = Later(kept, lambda: ran.append("kept"))
    piece.start()
    piece.start()  # posted once until it runs
    sip.delete(gone)  # the widget is gone before its piece's turn
    qtbot.waitUntil(lambda: "kept" in ran, timeout=2000)
    qtbot.wait(50)
    assert ran == ["kept"] and not piece.pending
    piece.start()
    piece.cancel()  # done another way: the posted piece does nothing
    qtbot.wait(50)
    assert ran == ["kept"]


def test_plots_made_while_hidden_are_ready_and_paint_after_the_page_around_them(qtbot):
    """build_soon: a page's plots are made before the person opens it (its first show only paints); that
    first paint of the plots waits until the page around them has painted, then they are drawn."""
    from PyQt6.QtWidgets import QTabWidget

    from widgets.joint_plot import JointPlotWidget

    tabs = QTabWidget()
    qtbot.addWidget(tabs)
    tabs.addTab(QWidget(), "first")
    plots = JointPlotWidget()
    tabs.addTab(plots, "plots")
    tabs.resize(500, 400)
    tabs.show()
    qtbot.waitExposed(tabs)
    plots.build_soon()
    qtbot.waitUntil(lambda: plots.built, timeout=5000)  # made while the page is hidden
    assert not plots.isVisible()
    tabs.setCurrentWidget(plots)
    assert plots.isVisible() and not plots.updatesEnabled()  # the page paints first, without them
    qtbot.waitUntil(plots.updatesEnabled, timeout=2000)
    img = plots.grab().toImage()
    white = sum(img.pixelColor(x, y).lightness() >= 250 for x in range(0, img.width(), 7)
                for y in range(0, img.height(), 7))
    assert white > 0.3 * (img.width() // 7) * (img.height() // 7)  # their white plot areas are drawn
