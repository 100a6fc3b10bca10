"""The episode viewer shows the exact frame of the tick it is sent to (pixels compared), in sync."""

from __future__ import annotations

import numpy as np
import pytest
from PyQt6.QtCore import QPoint, Qt

from recorder.store import Store
from recorder.store.query import EpisodeQuery
from studio.datasets.viewer import EpisodeViewerController
from tests.recorder.test_lerobot import CAM_OFFSETS, color, make_episode
from widgets.episode_viewer import EpisodeViewData, EpisodeViewerWidget
from widgets.timeline import TimelineSegment, TimelineWidget

pytestmark = pytest.mark.gui


def center_pixel(view) -> tuple[int, int, int]:
    img = view.grab().toImage()
    c = img.pixelColor(img.width() // 2, img.height() // 2)
    return c.red(), c.green(), c.blue()


def close_to(a, b, tol=12) -> bool:
    return max(abs(int(x) - int(y)) for x, y in zip(a, b)) <= tol


@pytest.fixture
def viewer_setup(qtbot, home):
    store = Store.open(home)
    info, state, _ = make_episode(store, n=20, segments=[("takeover", 5, 9)])
    viewer = EpisodeViewerWidget()
    qtbot.addWidget(viewer)
    viewer.resize(800, 600)
    viewer.show()
    ctl = EpisodeViewerController(viewer)
    yield store, info, state, viewer, ctl
    ctl.shutdown()
    store.close()


def test_seek_shows_that_exact_frame_on_every_camera(qtbot, viewer_setup):
    store, info, state, viewer, ctl = viewer_setup
    with qtbot.waitSignal(ctl.frame_shown, timeout=10000, check_params_cb=lambda t: t == 0):
        ctl.show_episode(info)
    assert viewer.timeline.length == 20
    assert [s.kind for s in viewer.timeline.segments] == ["takeover"]
    for tick in (13, 2, 19, 7):
        with qtbot.waitSignal(ctl.frame_shown, timeout=10000, check_params_cb=lambda t, k=tick: t == k):
            viewer.seek(tick)
        for cam, view in viewer.views.items():
            assert view.tick == tick
            got = center_pixel(view)
            assert close_to(got, color(tick, CAM_OFFSETS[cam])), (cam, tick, got)
            # and not the neighbour's colour
            assert not close_to(got, color(tick + 1, CAM_OFFSETS[cam]))
        assert viewer.plots.cursor_value() == tick
        np.testing.assert_allclose(viewer.data.series["observation.state"][tick], state[tick])


def test_step_and_play_to_the_end(qtbot, viewer_setup):
    store, info, _, viewer, ctl = viewer_setup
    with qtbot.waitSignal(ctl.frame_shown, timeout=10000):
        ctl.show_episode(info)
    with qtbot.waitSignal(ctl.frame_shown, timeout=10000, check_params_cb=lambda t: t == 1):
        viewer.fwd_button.click()
    viewer.set_speed(4.0)
    viewer.play()
    assert viewer.is_playing
    qtbot.waitUntil(lambda: not viewer.is_playing, timeout=10000)
    qtbot.waitUntil(lambda: viewer.shown_tick == 19, timeout=10000)
    assert viewer.position == 19
    view = viewer.views["front"]
    assert close_to(center_pixel(view), color(19, CAM_OFFSETS["front"]))


def test_timeline_click_seeks_and_marks_drops(qtbot):
    tl = TimelineWidget()
    qtbot.addWidget(tl)
    tl.resize(400, 40)
    tl.show()
    tl.set_length(100)
    tl.set_markers([3, 50], [TimelineSegment("takeover", 10, 20)])
    x = int(tl.x_for(42))
    with qtbot.waitSignal(tl.seeked, timeout=1000) as blocker:
        qtbot.mouseClick(tl, Qt.MouseButton.LeftButton, pos=QPoint(x, 20))
    assert abs(blocker.args[0] - 42) <= 1
    img = tl.grab().toImage()
    c = img.pixelColor(int(tl.x_for(50)), 30)
    assert c.red() > 150 and c.green() < 100  # the dropped-frame tick is drawn red


def test_viewer_widget_takes_plain_data(qtbot):
    viewer = EpisodeViewerWidget()
    qtbot.addWidget(viewer)
    asked = []
    viewer.frame_requested.connect(asked.append)
    data = EpisodeViewData(num_frames=5, fps=10, cameras=["a"], series={"action": np.zeros((5, 2))})
    viewer.set_episode(data)
    assert asked == [0]
    img = np.zeros((48, 64, 3), np.uint8)
    img[:] = (10, 200, 30)
    viewer.show_frames(0, {"a": img})
    viewer.step(3)
    assert asked == [0, 3] and viewer.position == 3
    viewer.step(10)
    assert viewer.position == 4
    viewer.set_episode(None)
    assert not viewer.play_button.isEnabled()


def test_dropped_frames_are_marked_and_hold_the_last_frame(qtbot, home):
    store = Store.open(home)
    info, _, _ = make_episode(store, n=8, drops=[("front", 4), ("wrist", 6)])
    viewer = EpisodeViewerWidget()
    qtbot.addWidget(viewer)
    viewer.resize(640, 480)
    viewer.show()
    ctl = EpisodeViewerController(viewer)
    try:
        with qtbot.waitSignal(ctl.frame_shown, timeout=10000):
            ctl.show_episode(info)
        assert viewer.timeline.drops == [4, 6]
        with qtbot.waitSignal(ctl.frame_shown, timeout=10000, check_params_cb=lambda t: t == 4):
            viewer.seek(4)
        assert close_to(center_pixel(viewer.views["front"]), color(3, CAM_OFFSETS["front"]))  # held frame
        assert close_to(center_pixel(viewer.views["wrist"]), color(4, CAM_OFFSETS["wrist"]))
    finally:
        ctl.shutdown()
        store.close()


def test_viewer_says_the_episode_is_opening_then_shows_frame_and_curves(qtbot, home, monkeypatch):
    """Opening an episode (a slow disk) happens in the decode thread: the viewer says so meanwhile and
    the window stays responsive; then the first frame, and the joint curves of the episode."""
    import threading

    import recorder.store as store_pkg

    store = Store.open(home)
    info, state, _ = make_episode(store, n=10)
    release, opened_in = threading.Event(), []
    real_reader = store_pkg.EpisodeReader

    def slow_reader(i):
        opened_in.append(threading.current_thread())
        release.wait(10)
        return real_reader(i)

    monkeypatch.setattr(store_pkg, "EpisodeReader", slow_reader)
    viewer = EpisodeViewerWidget()
    qtbot.addWidget(viewer)
    viewer.resize(800, 600)
    viewer.show()
    ctl = EpisodeViewerController(viewer, load=store.episode)
    try:
        ctl.show_episode(store.episode_rows(EpisodeQuery())[0])  # a table row: the record is read in the thread
        qtbot.waitUntil(lambda: bool(opened_in), timeout=5000)
        assert opened_in[0] is not threading.main_thread()
        assert viewer.title.text() == f"Opening episode #{info.id}…"
        assert not viewer.play_button.isEnabled()
        with qtbot.waitSignal(ctl.frame_shown, timeout=10000, check_params_cb=lambda t: t == 0):
            release.set()
        assert viewer.title.text().startswith(f"#{info.id}") and viewer.play_button.isEnabled()
        assert close_to(center_pixel(viewer.views["front"]), color(0, CAM_OFFSETS["front"]))
        qtbot.waitUntil(lambda: viewer.plots.built and len(viewer.plots.curves["action"]) == state.shape[1],
                        timeout=5000)
        y = viewer.plots.curves["observation.state"][2].getData()[1]
        np.testing.assert_allclose(y, state[:, 2], rtol=1e-5)
    finally:
        release.set()
        ctl.shutdown()
        store.close()
