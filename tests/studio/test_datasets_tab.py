"""The Datasets tab over a real store: table and filters, selection -> viewer, edits, trash, export job."""

from __future__ import annotations

import json
import threading

import pytest

from recorder.store import Store
from studio.context import AppContext
from studio.datasets.tab import DatasetsTab
from tests.recorder.test_lerobot import make_episode

pytestmark = pytest.mark.gui


@pytest.fixture
def tab(qtbot, home):
    with Store.open(home) as store:
        ids = [
            make_episode(store, dataset="pick", n=6, seed=1, success=True, task="pick up the red cube")[0].id,
            make_episode(store, dataset="pick", n=6, seed=2, success=False, task="pick up the red cube",
                         source="scripted")[0].id,
            make_episode(store, dataset="push", n=6, seed=3, task="push the cube")[0].id,
        ]
    ctx = AppContext(home)
    t = DatasetsTab(ctx)
    qtbot.addWidget(t)
    t.resize(1400, 800)
    t.show()  # thumbnails are decoded for the rows on screen
    qtbot.waitExposed(t)
    qtbot.waitUntil(lambda: t.loaded, timeout=10000)  # the rows come a pass after the widgets
    t.ids = ids
    yield t
    t.shutdown()
    ctx.close()


def rows_of(qtbot, tab) -> list[int]:
    """The table's rows, once the tab has read those of the filters now set (the reads run in a thread)."""
    qtbot.waitUntil(lambda: tab.loaded, timeout=10000)
    return tab.visible_ids()


def test_table_lists_filters_and_sorts_episodes(qtbot, tab):
    assert sorted(rows_of(qtbot, tab)) == sorted(tab.ids)
    tab.success_filter.setCurrentIndex(1)  # success only
    assert rows_of(qtbot, tab) == [tab.ids[0]]
    tab.success_filter.setCurrentIndex(0)
    tab.source_filter.setCurrentIndex(tab.source_filter.findText("scripted"))
    assert rows_of(qtbot, tab) == [tab.ids[1]]
    tab.source_filter.setCurrentIndex(0)
    tab.dataset_list.setCurrentRow(2)  # "push"
    assert rows_of(qtbot, tab) == [tab.ids[2]]
    tab.dataset_list.setCurrentRow(0)
    tab.task_filter.setText("red")
    assert sorted(rows_of(qtbot, tab)) == tab.ids[:2]
    tab.task_filter.setText("")
    tab.table.sortByColumn(1, tab.table.horizontalHeader().sortIndicatorOrder().AscendingOrder)
    assert rows_of(qtbot, tab) == sorted(tab.ids)
    qtbot.waitUntil(lambda: all(tab.model.has_thumbnail(i) for i in tab.ids), timeout=10000)


def test_select_view_edit_persists_and_trash(qtbot, tab, home):
    eid = tab.ids[2]
    with qtbot.waitSignal(tab.viewer_ctl.frame_shown, timeout=10000):
        assert tab.select_episode(eid)
    assert tab.viewer.data.num_frames == 6 and set(tab.viewer.views) == {"front", "wrist"}
    tab.task_edit.setText("push the cube onto the green square")
    tab.success_edit.setCurrentIndex(1)
    tab.tags_edit.setText("good, day2")
    tab.notes_edit.setPlainText("smooth")
    tab.save_button.click()
    assert tab.count_label.text() == "Loading…"  # the store_changed refresh reads in a thread
    qtbot.waitUntil(lambda: tab.loaded, timeout=10000)
    tab.ctx.close()
    with Store.open(home) as store:
        e = store.episode(eid)
    assert (e.task, e.success, set(e.tags), e.notes) == ("push the cube onto the green square", True,
                                                         {"good", "day2"}, "smooth")
    # the table shows the edit after the store_changed refresh
    row = tab.model.row_of(eid)
    assert tab.model.episode(row).task == "push the cube onto the green square"

    assert tab.select_episode(tab.ids[0])
    tab.trash_selected()
    assert tab.ids[0] not in rows_of(qtbot, tab)
    tab.show_trash.setChecked(True)
    assert rows_of(qtbot, tab) == [tab.ids[0]]
    assert tab.select_episode(tab.ids[0])
    tab.restore_selected()
    tab.show_trash.setChecked(False)
    assert tab.ids[0] in rows_of(qtbot, tab)


def test_export_selected_runs_in_a_thread_and_refreshes(qtbot, tab, tmp_path):
    out = tmp_path / "lr"
    with qtbot.waitSignal(tab.ctx.store_changed, timeout=30000):
        job = tab.export_episodes(tab.ids[:2], out)
    job.wait(5000)
    info = json.loads((out / "meta/info.json").read_text())
    assert info["total_episodes"] == 2
    errors = []
    tab.ctx.error_posted.connect(errors.append)
    tab.import_folder(tmp_path / "missing")
    qtbot.waitUntil(lambda: bool(errors) and not tab.jobs, timeout=10000)
    assert "not a folder" in errors[0]


def test_split_and_stats_from_the_tab(qtbot, tab):
    parts = tab.split_dataset("pick", 0.5, seed=3)
    assert len(parts["val"]) == 1
    tab.tag_filter.setText("split:val")
    assert rows_of(qtbot, tab) == parts["val"]
    rows = tab.stats_rows("pick")
    assert {r[0] for r in rows} == {"observation.state", "action"}
    errors = []
    tab.ctx.error_posted.connect(errors.append)
    assert tab.stats_rows("nope") is None
    assert "no dataset named 'nope'" in errors[0]


def test_export_dataset_button_leaves_failed_episodes_out_and_says_so(qtbot, tab, tmp_path, monkeypatch):
    """Like `datasets export`: the whole 'pick' dataset minus its failed episode, and the status line says so."""
    from PyQt6.QtCore import Qt

    out = tmp_path / "pick_lerobot"
    monkeypatch.setattr(tab, "_ask_out_dir", lambda default: out)
    tab.dataset_list.setCurrentRow(next(i for i in range(tab.dataset_list.count())
                                        if tab.dataset_list.item(i).text().startswith("pick")))
    statuses = []
    tab.ctx.status_posted.connect(statuses.append)
    with qtbot.waitSignal(tab.ctx.store_changed, timeout=30000):
        qtbot.mouseClick(tab.export_dataset_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: not tab.jobs, timeout=10000)
    info = json.loads((out / "meta/info.json").read_text())
    assert info["total_episodes"] == 1  # the failed one stayed home
    assert any("1 failed episode left out" in s for s in statuses), statuses


# -- a store larger than one page: the table fetches rows lazily, filters and counts come from SQL ------------

N_BIG, PAGE = 50, 15
TASKS = ("pick up the red cube", "push the blue cube", "open the drawer")


def _tiny_episode(store, i: int):
    """One small episode (3 ticks, one 32x24 camera) whose labels vary with ``i``."""
    import numpy as np

    from recorder.store import CameraSpec

    w = store.begin_episode(dataset="big" if i % 5 else "side", task=TASKS[i % 3], fps=10.0,
                            source=("teleop", "policy", "scripted")[i % 3 == 0 and 1 or (i % 7 == 0 and 2 or 0)],
                            cameras={"front": CameraSpec(width=32, height=24)}, lowdim={"action": (2,)},
                            tags=("good",) if i % 4 == 0 else ())
    for t in range(3):
        w.add_tick(t=t / 10, frames={"front": np.full((24, 32, 3), (i * 3 + t) % 255, np.uint8)},
                   values={"action": np.array([i, t], np.float32)})
    return w.finish(success=(True, False, None)[i % 3])


@pytest.fixture(scope="module")
def big_store(tmp_path_factory):
    """Built once for the module; each test gets a copy."""
    root = tmp_path_factory.mktemp("big") / "store"
    with Store.open(root) as store:
        eps = [_tiny_episode(store, i) for i in range(N_BIG)]
        eps[3] = store.update_episode(eps[3].id, status="trashed")
    return root, eps


@pytest.fixture
def big_tab(qtbot, home, monkeypatch, big_store):
    import shutil

    monkeypatch.setattr(DatasetsTab, "PAGE_SIZE", PAGE)
    root, eps = big_store
    shutil.rmtree(home, ignore_errors=True)
    shutil.copytree(root, home)
    ctx = AppContext(home)
    t = DatasetsTab(ctx)
    qtbot.addWidget(t)
    t.resize(1400, 500)  # a few rows on screen, fewer than a page
    t.show()
    qtbot.waitExposed(t)
    qtbot.waitUntil(lambda: t.loaded, timeout=10000)
    t.truth = {e.id: e for e in eps if e.status != "trashed"}
    t.trashed = eps[3].id
    yield t
    t.shutdown()
    ctx.close()


def _scroll_to_end(qtbot, tab) -> None:
    """Drag the scroll bar to the bottom until every row is in (each next page is read in a thread)."""
    qtbot.waitUntil(lambda: tab.loaded, timeout=10000)
    bar = tab.table.verticalScrollBar()

    def at_the_end() -> bool:
        bar.setValue(bar.maximum())
        return not tab.model.canFetchMore()

    qtbot.waitUntil(at_the_end, timeout=10000)


def _newest_first(eps) -> list[int]:
    return sorted((e.id for e in eps), reverse=True)


def test_table_loads_one_page_then_more_as_you_scroll(qtbot, big_tab):
    tab = big_tab
    qtbot.wait(100)  # let the view settle: it must not pull the whole store in
    assert rows_of(qtbot, tab) == _newest_first(tab.truth.values())[:PAGE]
    assert tab.model.rowCount() == PAGE
    assert tab.count_label.text() == f"{N_BIG - 1} of {N_BIG - 1} episodes"
    _scroll_to_end(qtbot, tab)
    assert rows_of(qtbot, tab) == _newest_first(tab.truth.values())  # every row once, in order
    assert not tab.model.canFetchMore()


def test_thumbnails_decode_only_for_rows_on_screen(qtbot, big_tab):
    tab = big_tab
    first = rows_of(qtbot, tab)[0]
    qtbot.waitUntil(lambda: tab.model.has_thumbnail(first), timeout=10000)
    qtbot.wait(300)
    on_screen = set(tab.table.visible_rows())
    assert PAGE - 1 not in on_screen
    assert not tab.model.has_thumbnail(tab.model.episode(PAGE - 1).id)  # loaded, not shown: not decoded
    _scroll_to_end(qtbot, tab)
    assert tab.table.visible_rows().stop > PAGE  # rows of a later page are on screen now
    qtbot.waitUntil(lambda: all(tab.model.has_thumbnail(tab.model.episode(r).id)  # those on screen once it settles
                                for r in tab.table.visible_rows()), timeout=10000)


def test_filters_give_the_right_rows_and_counts(qtbot, big_tab):
    tab = big_tab
    truth = list(tab.truth.values())

    def check(expected, label_total=N_BIG - 1):
        _scroll_to_end(qtbot, tab)
        assert rows_of(qtbot, tab) == _newest_first(expected)
        assert tab.count_label.text() == f"{len(expected)} of {label_total} episodes"
        assert sorted(tab.matching_ids()) == sorted(e.id for e in expected)

    tab.success_filter.setCurrentIndex(tab.success_filter.findData("unknown"))
    check([e for e in truth if e.success is None])
    tab.success_filter.setCurrentIndex(tab.success_filter.findData("yes"))
    tab.source_filter.setCurrentIndex(tab.source_filter.findText("policy"))
    check([e for e in truth if e.success is True and e.source == "policy"])
    tab.success_filter.setCurrentIndex(0)
    tab.source_filter.setCurrentIndex(0)
    tab.task_filter.setText("BLUE")  # substring, any case
    check([e for e in truth if "blue" in e.task])
    tab.task_filter.setText("")
    tab.tag_filter.setText("good")
    check([e for e in truth if "good" in e.tags])
    tab.tag_filter.setText("")
    tab.dataset_list.setCurrentRow(next(i for i in range(tab.dataset_list.count())
                                        if tab.dataset_list.item(i).text().startswith("side")))
    check([e for e in truth if e.dataset == "side"])
    tab.dataset_list.setCurrentRow(0)
    from PyQt6.QtCore import QDate

    tab.since_filter.setDate(QDate.currentDate().addDays(2))
    check([])
    assert tab.table.placeholder() == "No episodes match the filters"  # drawn in the empty table
    tab.since_filter.setDate(tab.since_filter.minimumDate())
    tab.show_trash.setChecked(True)
    assert rows_of(qtbot, tab) == [tab.trashed] and tab.count_label.text() == "1 of 1 episodes"


def test_sorting_a_column_pages_in_that_order(qtbot, big_tab):
    from PyQt6.QtCore import Qt

    from widgets.episode_table import COL

    tab = big_tab
    tab.table.sortByColumn(COL["task"], Qt.SortOrder.AscendingOrder)
    assert tab.count_label.text() == "Loading…"  # the first page in that order is read in a thread
    assert len(rows_of(qtbot, tab)) == PAGE
    _scroll_to_end(qtbot, tab)
    want = [e.id for e in sorted(tab.truth.values(), key=lambda e: (e.task, e.id))]
    assert rows_of(qtbot, tab) == want
    tab.table.sortByColumn(COL["success"], Qt.SortOrder.DescendingOrder)
    _scroll_to_end(qtbot, tab)
    rank = {True: 2, None: 1, False: 0}
    want = [e.id for e in sorted(tab.truth.values(), key=lambda e: (rank[e.success], e.id), reverse=True)]
    assert rows_of(qtbot, tab) == want


def test_every_query_the_tab_and_the_cli_run_uses_an_index(qtbot, big_tab, capsys):
    """The SQL that the Datasets tab's filters, paging and counts and `datasets list/show` really run is
    served by indexes (EXPLAIN QUERY PLAN): none scans the episodes or tags tables."""
    from PyQt6.QtCore import QDate

    from studio.cli import main
    from tests.recorder.store.helpers import SQLLog, full_scans

    tab = big_tab
    home = tab.ctx.home
    with SQLLog() as log:
        tab.refresh()
        _scroll_to_end(qtbot, tab)
        tab.success_filter.setCurrentIndex(tab.success_filter.findData("no"))
        tab.source_filter.setCurrentIndex(tab.source_filter.findText("teleop"))
        tab.tag_filter.setText("good")
        tab.since_filter.setDate(QDate(2020, 1, 1))
        tab.min_duration.setValue(0.1)
        tab.dataset_list.setCurrentRow(1)
        _scroll_to_end(qtbot, tab)
        tab.show_trash.setChecked(True)
        assert main(["--home", str(home), "datasets", "list"]) == 0
        assert main(["--home", str(home), "datasets", "show", "big", "--task", TASKS[0], "--success", "unknown",
                     "--source", "teleop", "--tag", "good"]) == 0
        assert main(["--home", str(home), "datasets", "show", "big", "--trashed"]) == 0
        assert main(["--home", str(home), "store", "info"]) == 0
    capsys.readouterr()
    assert len(log.touching("episodes.success IS", "LIMIT")) >= 1  # the filters did reach SQL
    assert full_scans(home / "index.sqlite", log.selects) == []


def test_refresh_and_scrolling_read_every_page_and_count_in_a_thread_same_rows(qtbot, big_tab, monkeypatch):
    """A refresh (dataset counts, the two counts, the first page) and every later page are read off the GUI
    thread; the rows are the same, in order."""
    import threading

    tab = big_tab
    store = tab.ctx.store
    calls = []

    def spy(name):
        real = getattr(store, name)

        def call(*args, **kwargs):
            calls.append((name, threading.current_thread() is threading.main_thread()))
            return real(*args, **kwargs)
        return call

    for name in ("episode_rows", "count_episodes", "datasets"):
        monkeypatch.setattr(store, name, spy(name))
    tab.refresh()
    _scroll_to_end(qtbot, tab)
    assert rows_of(qtbot, tab) == _newest_first(tab.truth.values())
    pages = -(-(N_BIG - 1) // PAGE)
    assert [n for n, _ in calls].count("episode_rows") == pages
    assert {n for n, _ in calls} == {"episode_rows", "count_episodes", "datasets"}
    assert not [n for n, on_gui in calls if on_gui]  # none on the GUI thread


class _Gate:
    """Makes ``store.episode_rows`` wait (as on a slow disk) until ``open()``; records which filters it read."""

    def __init__(self, store, monkeypatch) -> None:
        self._event = threading.Event()
        self._event.set()
        self.reads: list[str] = []
        self.on_gui_thread = 0  # reads that ran on the GUI thread (and would have frozen it)
        self.timed_out = False
        real = store.episode_rows

        def slow(query, *args, **kwargs):
            self.reads.append(query.task_contains)
            self.on_gui_thread += threading.current_thread() is threading.main_thread()
            if not self._event.wait(5):  # the test could not open it: its GUI thread was blocked meanwhile
                self.timed_out = True
                raise AssertionError("the gate was never opened")
            return real(query, *args, **kwargs)

        monkeypatch.setattr(store, "episode_rows", slow)

    def close(self) -> None:
        self._event.clear()

    def open(self) -> None:
        self._event.set()


def test_a_slow_query_leaves_the_tab_usable_and_says_loading(qtbot, big_tab, monkeypatch):
    from PyQt6.QtCore import Qt

    tab = big_tab
    gate = _Gate(tab.ctx.store, monkeypatch)
    gate.close()
    qtbot.keyClicks(tab.task_filter, "blue")  # each key a new read; the store answers none of them yet
    assert tab.task_filter.text() == "blue"  # typed while the first read waits: the GUI thread is free
    assert tab.count_label.text() == "Loading…" and tab.table.placeholder() == "Loading…"
    assert tab.model.rowCount() == 0  # the old filter's rows are not shown as if they matched
    qtbot.mouseClick(tab.show_trash, Qt.MouseButton.LeftButton)  # a click is handled meanwhile, too
    qtbot.mouseClick(tab.show_trash, Qt.MouseButton.LeftButton)
    assert not tab.show_trash.isChecked() and not tab.loaded
    gate.open()
    want = _newest_first(e for e in tab.truth.values() if "blue" in e.task)
    assert rows_of(qtbot, tab) == want[:PAGE]
    assert tab.count_label.text() == f"{len(want)} of {N_BIG - 1} episodes"
    assert tab.table.placeholder() == ""
    # of the reads for "b", "bl", "blu": at most the one under way when the next key came ran; the others
    # were overtaken before they started, and skipped
    assert len([r for r in gate.reads if r != "blue"]) <= 1


def test_a_stale_read_never_overwrites_a_newer_one(qtbot, big_tab, monkeypatch):
    tab = big_tab
    gate = _Gate(tab.ctx.store, monkeypatch)
    shown: list[list[int]] = []  # the rows after every reset of the table
    tab.model.modelReset.connect(lambda: shown.append(tab.visible_ids()))
    gate.close()
    tab.task_filter.setText("red")  # its read starts and waits in the store
    qtbot.waitUntil(lambda: gate.reads == ["red"], timeout=5000)
    tab.task_filter.setText("drawer")  # a newer filter while that read is under way
    gate.open()
    drawer = _newest_first(e for e in tab.truth.values() if "drawer" in e.task)
    assert rows_of(qtbot, tab) == drawer[:PAGE]
    qtbot.wait(100)
    red = set(e.id for e in tab.truth.values() if "red" in e.task)
    assert not any(red & set(rows) for rows in shown)  # the "red" rows came back late and were dropped
    assert rows_of(qtbot, tab) == drawer[:PAGE] and tab.task_filter.text() == "drawer"
    assert tab.count_label.text() == f"{len(drawer)} of {N_BIG - 1} episodes"
    # a refresh after a store change reads the dataset counts too; a filter change meanwhile keeps that due
    gate.close()
    with Store.open(tab.ctx.home) as other:  # another process records an episode into "side"
        _tiny_episode(other, 5)
    tab.ctx.store_changed.emit()
    tab.task_filter.setText("")
    gate.open()
    qtbot.waitUntil(lambda: tab.loaded, timeout=10000)
    side = [tab.dataset_list.item(i).text() for i in range(tab.dataset_list.count())
            if tab.dataset_list.item(i).text().startswith("side")]
    n_side = sum(1 for e in tab.truth.values() if e.dataset == "side") + 1
    assert side == [f"side  ({n_side})"]
    assert tab.count_label.text() == f"{N_BIG} of {N_BIG} episodes"


def test_the_count_never_widens_the_tab_and_the_plots_are_ready_before_it_is_opened(qtbot, home):
    """A lab's count ("100000 of 100000 episodes") wraps instead of making the tab wider than the 1400-px
    window (the window grew when the tab was first shown); the viewer's joint plots are made while the tab
    is still hidden, so opening it only paints."""
    from studio.app import MainWindow

    window = MainWindow(AppContext(home))
    qtbot.addWidget(window)
    window.show()
    qtbot.waitUntil(lambda: window.all_tabs_built, timeout=20000)
    tab = window.tab_widgets["Datasets"]
    assert not tab.isVisible()
    qtbot.waitUntil(lambda: tab.loaded and tab.viewer.plots.built, timeout=10000)  # never shown yet
    tab.count_label.setText("2 of 2 episodes")
    narrow = tab.minimumSizeHint().width()
    tab.count_label.setText("100000 of 100000 episodes")
    assert tab.minimumSizeHint().width() == narrow
    width = window.width()
    window.tabs.setCurrentWidget(tab)
    qtbot.wait(100)
    assert window.width() == width
    window.close()


def test_scrolling_past_a_slow_page_read_leaves_the_table_usable(qtbot, big_tab, monkeypatch):
    """Scrolled to the end while the next page is still being read (slowly, in the page-reading thread):
    the table keeps its rows and takes clicks; the page is appended when it is in, never read again on the
    GUI thread."""
    from PyQt6.QtCore import Qt

    tab = big_tab
    rows_of(qtbot, tab)
    qtbot.wait(200)  # the second page is read ahead meanwhile
    gate = _Gate(tab.ctx.store, monkeypatch)
    gate.close()
    bar = tab.table.verticalScrollBar()
    bar.setValue(bar.maximum())  # the second page (read ahead) comes in; the third is asked for and waits
    qtbot.waitUntil(lambda: tab.model.rowCount() == 2 * PAGE, timeout=5000)
    bar.setValue(bar.maximum())
    qtbot.wait(50)
    assert tab.model.rowCount() == 2 * PAGE and tab.model.canFetchMore()
    row = 2 * PAGE - 1
    rect = tab.table.visualRect(tab.model.index(row, 3))
    qtbot.mouseClick(tab.table.viewport(), Qt.MouseButton.LeftButton, pos=rect.center())
    assert tab.table.selected_ids() == [tab.model.episode(row).id]  # handled while the read waits
    assert tab.task_edit.text() == tab.model.episode(row).task
    gate.open()
    qtbot.waitUntil(lambda: tab.model.rowCount() == 3 * PAGE, timeout=5000)
    assert tab.visible_ids() == _newest_first(tab.truth.values())[: 3 * PAGE]
    assert gate.on_gui_thread == 0 and not gate.timed_out


def test_rows_scrolled_in_are_out_of_the_collectors_view_and_freed_when_the_table_drops_them(qtbot, big_tab,
                                                                                           monkeypatch):
    """A lab's table holds 100k rows: a full garbage collection walking them all held the GIL for 50+ ms
    in the middle of a scroll. The rows scrolled in are frozen (gc.freeze); they hold no cycles, so the
    table dropping them (a new filter) still frees them."""
    import gc
    import weakref

    tab = big_tab
    monkeypatch.setattr(DatasetsTab, "FREEZE_ROWS", PAGE)  # (2000 in the studio: a small table is cheap)
    _scroll_to_end(qtbot, tab)
    rows = tab.model.episodes()
    later = rows[PAGE:]  # the pages scrolled in (the first page came with the filter)
    assert later
    tracked = {id(o) for o in gc.get_objects()}
    assert not any(id(r) in tracked for r in later)
    gone = weakref.ref(later[-1])
    del rows, later, tracked
    tab.task_filter.setText("drawer")
    rows_of(qtbot, tab)
    assert gone() is None
