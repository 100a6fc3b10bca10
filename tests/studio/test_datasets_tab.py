"""The Datasets tab over a real store: table and filters, selection -> viewer, edits, trash, export job."""

from __future__ import annotations

import json

import pytest

from recorder.store import Store
from studio.context import AppContext
from studio.tabs.datasets_tab import DatasetsTab
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
    t.ids = ids
    yield t
    t.shutdown()
    ctx.close()


def test_table_lists_filters_and_sorts_episodes(qtbot, tab):
    assert sorted(tab.visible_ids()) == sorted(tab.ids)
    tab.success_filter.setCurrentIndex(1)  # success only
    assert tab.visible_ids() == [tab.ids[0]]
    tab.success_filter.setCurrentIndex(0)
    tab.source_filter.setCurrentIndex(tab.source_filter.findText("scripted"))
    assert tab.visible_ids() == [tab.ids[1]]
    tab.source_filter.setCurrentIndex(0)
    tab.dataset_list.setCurrentRow(2)  # "push"
    assert tab.visible_ids() == [tab.ids[2]]
    tab.dataset_list.setCurrentRow(0)
    tab.task_filter.setText("red")
    assert sorted(tab.visible_ids()) == tab.ids[:2]
    tab.task_filter.setText("")
    tab.table.sortByColumn(1, tab.table.horizontalHeader().sortIndicatorOrder().AscendingOrder)
    assert tab.visible_ids() == sorted(tab.ids)
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
    tab.ctx.close()
    with Store.open(home) as store:
        e = store.episode(eid)
    assert (e.task, e.success, set(e.tags), e.notes) == ("push the cube onto the green square", True,
                                                         {"good", "day2"}, "smooth")
    # the table shows the edit after the store_changed refresh
    row = tab.model.row_of(eid)
    assert tab.model.episode(row).task == "push the cube onto the green square"

    tab.select_episode(tab.ids[0])
    tab.trash_selected()
    assert tab.ids[0] not in tab.visible_ids()
    tab.show_trash.setChecked(True)
    assert tab.visible_ids() == [tab.ids[0]]
    tab.select_episode(tab.ids[0])
    tab.restore_selected()
    tab.show_trash.setChecked(False)
    assert tab.ids[0] in tab.visible_ids()


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
    assert tab.visible_ids() == parts["val"]
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
