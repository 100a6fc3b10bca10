"""The main window of a big (or slow) store: it shows at once, the tabs fill in once the store is open, the
tab a person went to first; the guide counts what is in the store."""

from __future__ import annotations

import threading

import pytest
from PyQt6.QtCore import Qt

from recorder.store import Store
from tests.recorder.test_lerobot import make_episode

pytestmark = pytest.mark.gui


@pytest.fixture
def slow_store(monkeypatch, home):
    """A store with two demos whose opening waits until the test sets the returned event (as importing the
    store code and opening a 100k-episode index does for seconds); the opening thread is recorded."""
    with Store.open(home) as store:
        make_episode(store, dataset="pick", n=4, cameras=("front",), seed=1)
        make_episode(store, dataset="pick", n=4, cameras=("front",), seed=2)
    release = threading.Event()
    opened_in = []
    real_open = Store.open.__func__

    def slow_open(cls, *args, **kwargs):
        opened_in.append(threading.current_thread())
        release.wait(10)
        return real_open(cls, *args, **kwargs)

    monkeypatch.setattr(Store, "open", classmethod(slow_open))
    release.opened_in = opened_in
    yield release
    release.set()


def _window(qtbot, home):
    from studio.app import MainWindow
    from studio.context import AppContext

    window = MainWindow(AppContext(home=home))
    qtbot.addWidget(window)
    window.resize(1300, 850)
    window.show()
    qtbot.waitExposed(window)
    return window


def _page_text(window, index: int) -> str:
    page = window.tabs.widget(index)
    return page.text() if hasattr(page, "text") else ""


def test_window_shows_before_a_slow_store_is_open_then_the_tabs_fill_in(qtbot, home, slow_store):
    window = _window(qtbot, home)  # returns although the store is still opening
    assert window.isVisible()
    assert [window.tabs.tabText(i) for i in range(window.tabs.count())] == ["Record", "Datasets", "Fine-tune",
                                                                               "Rollout"]
    assert "Opening the store" in _page_text(window, 0)
    qtbot.waitUntil(lambda: bool(slow_store.opened_in), timeout=30000)  # the window handles events meanwhile
    assert slow_store.opened_in[0] is not threading.main_thread()
    assert "Opening the store" in _page_text(window, 1) and not window.all_tabs_built
    assert "1." in window.welcome.step_texts()[0]  # the guide is there, its steps not ticked yet

    with qtbot.waitSignal(window.tabs_ready, timeout=20000):
        slow_store.set()
    datasets = window.tab_widgets["Datasets"]
    assert window.tabs.widget(1) is datasets and window.tabs.currentIndex() == 0  # the person stays put
    qtbot.waitUntil(lambda: datasets.loaded, timeout=10000)  # its rows: the pass after its widgets
    assert datasets.count_label.text() == "2 of 2 episodes"
    assert "2 recorded so far" in window.welcome.step_texts()[1]
    window.close()


def test_the_tab_a_person_opens_while_the_store_opens_is_built_first(qtbot, home, slow_store, monkeypatch):
    from studio.app import MainWindow

    built = []
    real_build = MainWindow.build_tab

    def spy(self, title):
        if title not in self.tab_widgets:
            built.append(title)
        return real_build(self, title)

    monkeypatch.setattr(MainWindow, "build_tab", spy)
    window = _window(qtbot, home)
    bar = window.tabs.tabBar()
    qtbot.mouseClick(bar, Qt.MouseButton.LeftButton, pos=bar.tabRect(2).center())  # Fine-tune
    assert window.tabs.currentIndex() == 2
    assert "Opening the store" in _page_text(window, 2)
    with qtbot.waitSignal(window.tabs_ready, timeout=20000):
        slow_store.set()
    assert built[0] == "Fine-tune" and sorted(built) == ["Datasets", "Fine-tune", "Record", "Rollout"]
    finetune = window.tab_widgets["Fine-tune"]
    assert window.tabs.currentWidget() is finetune
    assert finetune.dataset_combo.findText("pick") >= 0  # its content: the store's dataset
    window.close()


def test_a_store_that_cannot_open_is_one_line_and_the_window_stays(qtbot, home):
    home.parent.mkdir(parents=True, exist_ok=True)
    home.write_text("not a folder")  # a file where the store should be
    window = _window(qtbot, home)
    qtbot.waitUntil(lambda: window.all_tabs_built, timeout=20000)
    msg = window.statusBar().currentMessage()
    assert str(home) in msg and "\n" not in msg
    assert window.isVisible()
    window.close()


def test_the_tabs_dataset_lists_are_read_off_the_gui_thread_and_follow_a_new_dataset(qtbot, home, monkeypatch):
    # per-dataset counts are 40-60 ms of SQL at 100k episodes: the Fine-tune tab shows the list the opener
    # thread read, and a store change still makes it read the store again
    with Store.open(home) as store:
        make_episode(store, dataset="pick", n=4, cameras=("front",), seed=1)
    read_in = []
    real = Store.datasets

    def spy(self):
        read_in.append(threading.current_thread())
        return real(self)

    monkeypatch.setattr(Store, "datasets", spy)
    window = _window(qtbot, home)
    qtbot.waitUntil(lambda: window.all_tabs_built and window.tab_widgets["Datasets"].loaded, timeout=20000)
    finetune = window.tab_widgets["Fine-tune"]
    assert [finetune.dataset_combo.itemText(i) for i in range(finetune.dataset_combo.count())] == ["pick"]
    assert read_in and threading.main_thread() not in read_in
    make_episode(window.ctx.store, dataset="push", n=4, cameras=("front",), seed=2)
    window.ctx.store_changed.emit()  # what every writer in the window does
    qtbot.waitUntil(lambda: finetune.dataset_combo.findText("push") >= 0, timeout=10000)
    window.close()
