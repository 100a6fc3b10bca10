"""A GUI that guides: the first-launch guide, keys named for the teleoperator in force, pane sizes that come
back, previews that fill their space and clear after a disconnect, counters explained in plain words."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PyQt6.QtCore import QPoint, Qt

from tests.recorder.record_doubles import pattern_rig

pytestmark = pytest.mark.gui


def small_sim(spec, home):
    """The sim rig (keyboard teleoperator, as the GUI's 'sim'), small and slow so tests stay light."""
    from recorder.devices.rig import load_rig, sim_rig_config

    return load_rig(sim_rig_config(width=160, height=120, fps=15), home=home)


@pytest.fixture
def open_window(qtbot, home):
    from studio.app import MainWindow
    from studio.context import AppContext

    made = []

    def make(rig_factory=small_sim):
        ctx = AppContext(home=home)
        window = MainWindow(ctx)
        window.tab_widgets["Record"].rig_factory = rig_factory
        qtbot.addWidget(window)
        window.resize(1300, 850)
        window.show()
        qtbot.waitExposed(window)
        made.append(window)
        return window

    yield make
    for window in made:
        if window.isVisible():
            window.close()


def test_first_launch_says_what_to_do_with_the_keys_of_the_keyboard_rig(qtbot, open_window, home):
    window = open_window()
    guide = window.welcome
    assert guide.isVisible()
    # the sim rig's teleoperator is the keyboard: letters steer, so recording is Enter and Ctrl+letters (the
    # guide reads the Record tab's keys in the event-loop pass after that tab is built)
    qtbot.waitUntil(lambda: "Enter starts and stops an episode, Ctrl+S saves it" in guide.step_texts()[1])
    steps = guide.step_texts()
    assert "Connect" in steps[0] and "Fine-tune" in steps[2] and "Roll out" in steps[3]
    assert "Space starts" not in steps[1]
    record = window.tab_widgets["Record"]
    assert record.start_btn.text() == "Start (Enter)"
    assert "No rig connected" in record.views.placeholder

    qtbot.mouseClick(guide.connect_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: record.phase == "idle", timeout=30000)
    qtbot.waitUntil(lambda: guide.step_texts()[0].startswith("\u2714"), timeout=5000)  # step 1 ticked
    assert not guide.connect_button.isEnabled()
    # the session's own message names the terminal's Space; the tab says the key that works here
    assert "press Enter to record" in record.message_label.text()
    assert "Space" not in record.message_label.text()

    qtbot.mouseClick(guide.hide_button, Qt.MouseButton.LeftButton)
    assert not guide.isVisible()
    record.disconnect_rig(wait=True)
    window.close()
    saved = json.loads((home / "settings.json").read_text())
    assert saved["welcome_dismissed"] is True and saved["schema_version"] == 1
    again = open_window()
    assert not again.welcome.isVisible()  # hidden for good


def test_a_rig_with_its_own_teleoperator_keeps_space_in_the_hints(qtbot, open_window):
    window = open_window(rig_factory=lambda spec, home: pattern_rig(width=160, height=120))
    record = window.tab_widgets["Record"]
    record.rig_combo.setCurrentText("/somewhere/leader-arm.toml")
    assert record.start_btn.text() == "Start (Space)"
    assert "Space starts and stops an episode, S saves it" in window.welcome.step_texts()[1]


def _drag_splitter(qtbot, splitter, dy):
    handle = splitter.handle(1)
    start = QPoint(handle.width() // 2, handle.height() // 2)
    qtbot.mousePress(handle, Qt.MouseButton.LeftButton, pos=start)
    qtbot.mouseMove(handle, start + QPoint(0, dy // 2))
    qtbot.mouseMove(handle, start + QPoint(0, dy))
    qtbot.mouseRelease(handle, Qt.MouseButton.LeftButton, pos=start + QPoint(0, dy))


def test_splitter_sizes_come_back_next_launch(qtbot, open_window):
    window = open_window()
    qtbot.waitUntil(lambda: window.all_tabs_built, timeout=20000)  # the window's layout settled (guide filled)
    ft = window.tab_widgets["Fine-tune"]
    window.tabs.setCurrentWidget(ft)
    qtbot.wait(50)
    before = ft.splitter.sizes()
    _drag_splitter(qtbot, ft.splitter, -120)
    moved = ft.splitter.sizes()
    assert moved != before and moved[0] < before[0]
    window.close()

    again = open_window()
    qtbot.waitUntil(lambda: again.all_tabs_built, timeout=20000)
    ft2 = again.tab_widgets["Fine-tune"]
    again.tabs.setCurrentWidget(ft2)
    qtbot.wait(50)
    assert ft2.splitter.sizes() == moved


def test_unreadable_settings_are_one_line_and_the_defaults(qtbot, open_window, home):
    home.mkdir(parents=True, exist_ok=True)
    (home / "settings.json").write_bytes(b"\xff\xfe not json")
    window = open_window()
    assert window.welcome.isVisible()
    msg = window.statusBar().currentMessage()
    assert "settings.json" in msg and "defaults" in msg and "\n" not in msg


def test_settings_of_a_newer_studio_are_left_untouched(qtbot, open_window, home):
    home.mkdir(parents=True, exist_ok=True)
    newer = {"schema_version": 99, "welcome_dismissed": True, "splitters": {"finetune.right": [1, 2, 3]}}
    (home / "settings.json").write_text(json.dumps(newer))
    window = open_window()
    window.welcome.hide_button.click()
    window.close()
    assert json.loads((home / "settings.json").read_text()) == newer


def test_record_previews_fill_their_space_and_clear_after_disconnect(qtbot, home):
    from studio.context import AppContext
    from studio.record.tab import RecordTab

    ctx = AppContext(home=home)
    tab = RecordTab(ctx)
    tab.rig_factory = lambda spec, home: pattern_rig(width=160, height=120)
    qtbot.addWidget(tab)
    tab.resize(1300, 800)
    tab.show()
    try:
        tab.connect_rig()
        qtbot.waitUntil(lambda: tab.phase == "idle" and all(v.frames_shown > 3 for v in tab._views.values()),
                        timeout=10000)
        qtbot.wait(300)
        grid = tab.views
        for view in tab._views.values():
            rect, _scale = view.image_rect()
            # the picture covers its whole view: no letterbox bands inside a preview
            assert rect.width() >= view.width() - 1 and rect.height() >= view.height() - 1
        left = min(v.geometry().left() for v in tab._views.values())
        right = max(v.geometry().right() for v in tab._views.values())
        top = min(v.geometry().top() for v in tab._views.values())
        bottom = max(v.geometry().bottom() for v in tab._views.values())
        # the pictures span the grid in one direction at least: as large as the space allows
        assert max((right - left) / grid.width(), (bottom - top) / grid.height()) > 0.97
        assert tab.stats.values("front")[0] != "-"

        tab.disconnect_rig()
        qtbot.waitUntil(lambda: tab.phase == "disconnected" and tab.conn_label.text() == "disconnected",
                        timeout=10000)
        assert all(v.image_size() is None for v in tab._views.values())  # no frozen frame left as if live
        assert tab.stats.values("front") == ("-", "-", "-") and tab.stats.late_label.text() == "late ticks: -"
        assert tab.timer_label.text() == "00:00.0" and tab.chart.samples == 0
        assert tab.message_label.text().startswith("disconnected")
    finally:
        tab.shutdown()
        ctx.close()


def test_every_counter_has_a_plain_words_tooltip(qtbot, home):
    from studio.context import AppContext
    from studio.rollout.tab import RolloutTab
    from widgets.status_widgets import CameraStatsWidget

    stats = CameraStatsWidget()
    qtbot.addWidget(stats)
    stats.set_cameras(["front"])
    for head in ("fps", "stale", "dropped"):
        assert len(stats.headers[head].toolTip()) > 40
    assert "reused the camera's previous frame" in stats.headers["stale"].toolTip()
    assert "later than their schedule" in stats.late_label.toolTip()

    ctx = AppContext(home=home)
    tab = RolloutTab(ctx)
    qtbot.addWidget(tab)
    try:
        assert "shortened" in tab.max_delta_spin.toolTip()
        assert "max_delta" in tab.safety_label.toolTip() and "held" in tab.status_label.toolTip()
        assert "held" in tab.views_grid.toolTip() and "max_delta" in tab.views_grid.toolTip()
    finally:
        tab.shutdown()
        ctx.close()


def _render(names, data, w=320, h=240, pad=0):
    from PyQt6.QtCore import QRectF
    from PyQt6.QtGui import QColor, QImage, QPainter

    from widgets.overlays import make_painter

    img = QImage(w + 2 * pad, h + 2 * pad, QImage.Format.Format_RGB32)
    img.fill(QColor(0, 0, 0))
    p = QPainter(img)
    for n in names:
        make_painter(n, lambda: data)(p, QRectF(pad, pad, w, h), 1.0)
    p.end()
    ptr = img.constBits()
    ptr.setsize(img.sizeInBytes())
    return np.frombuffer(ptr, np.uint8).reshape(img.height(), img.bytesPerLine() // 4, 4)[:, :img.width(), :3].copy()


def test_a_one_row_path_is_drawn_from_the_gripper_as_a_line(qapp):
    from widgets.overlays import OverlayData

    data = OverlayData(path_px=np.array([[200.0, 120.0]]), path_start_px=np.array([100.0, 120.0]))
    px = _render(["path"], data)
    assert px[120, 150].max() > 150  # halfway between the gripper and the goal: on the line
    assert px[120, 200].max() > 150  # the goal
    alone = _render(["path"], OverlayData(path_px=np.array([[200.0, 120.0]])))
    assert alone[120, 150].max() == 0  # without a start it stays the single dot it was


def test_the_confidence_panel_is_whole_and_inside_the_picture(qapp):
    from PyQt6.QtGui import QFont, QFontMetrics

    from widgets.overlays import OverlayData

    pad = 40
    for conf in (np.array([0.5]), np.linspace(1, 0.2, 8)):
        px = _render(["confidence"], OverlayData(confidence=conf), w=200, h=150, pad=pad)
        lit = np.argwhere(px.max(axis=2) > 0)
        assert len(lit)
        (y0, x0), (y1, x1) = lit.min(0), lit.max(0)
        assert x0 >= pad and y0 >= pad and x1 < pad + 200 and y1 < pad + 150  # nothing outside the picture
        font = QFont()
        font.setPixelSize(11)
        assert x1 - x0 + 1 >= QFontMetrics(font).horizontalAdvance("confidence 0.50")  # room for its label
