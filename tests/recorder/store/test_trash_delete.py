"""Trash keeps the previous status; delete_episode removes files and rows in a crash-safe order."""

import json
import sqlite3

import pytest

import recorder.store.store as store_mod
from recorder.errors import StoreError
from recorder.store import Store
from recorder.store.check import check_store

from .helpers import CAMERAS, LOWDIM, record


def _rows(home, table, episode_id):
    con = sqlite3.connect(home / "index.sqlite")
    try:
        return con.execute(f"SELECT count(*) FROM {table} WHERE episode_id = ?", (episode_id,)).fetchone()[0]
    finally:
        con.close()


def test_trash_and_restore_return_exactly_the_previous_status(home):
    with Store.open(home) as store:
        a = record(store, n=3)
        b = store.update_episode(record(store, n=3).id, status="recovered")
        for e in (a, b):
            t = store.update_episode(e.id, status="trashed")
            assert t.status == "trashed" and t.status_before_trash == e.status
        assert store.episodes(dataset="demo") == []
        # trashing again does not forget what it was
        assert store.update_episode(b.id, status="trashed").status_before_trash == "recovered"
    with Store.open(home) as store:  # persisted
        assert store.episode(b.id).status_before_trash == "recovered"
        assert json.loads((b.path / "meta.json").read_text())["status_before_trash"] == "recovered"
        assert store.restore_episode(b.id).status == "recovered"
        assert store.restore_episode(a.id).status == "complete"
        assert store.episode(a.id).status_before_trash is None
        assert [e.status for e in store.episodes(dataset="demo")] == ["complete", "recovered"]
        with pytest.raises(StoreError, match="not in the trash"):
            store.restore_episode(a.id)


def test_delete_episode_removes_folder_and_rows(home):
    with Store.open(home) as store:
        keep = record(store, n=3)
        gone = record(store, n=4, tags=["x"])
        assert _rows(home, "streams", gone.id) == 4 and _rows(home, "episode_tags", gone.id) == 1
        store.delete_episode(gone.id)
        assert not gone.path.exists() and keep.path.is_dir()
        with pytest.raises(StoreError, match="not in"):
            store.episode(gone.id)
        assert [e.id for e in store.episodes(status=None)] == [keep.id]
        assert store.dataset("demo").num_frames == 3
    assert _rows(home, "streams", gone.id) == 0 and _rows(home, "episode_tags", gone.id) == 0
    assert check_store(home).problems == []


def test_delete_refuses_an_episode_that_is_recording(home):
    with Store.open(home) as store:
        w = store.begin_episode(dataset="demo", fps=30.0, cameras=CAMERAS, lowdim=LOWDIM)
        with pytest.raises(StoreError) as err:
            store.delete_episode(w.episode_id)
        msg = str(err.value)
        assert "\n" not in msg and "still recording" in msg and str(w.path) in msg
        assert w.path.is_dir() and store.episode(w.episode_id).status == "recording"
        w.discard()


def _interrupt_after_video(monkeypatch):
    """A crash (power cut) inside delete_episode after the videos went, before meta.json and the row."""
    real = store_mod.remove_episode_folder

    def cut(folder):
        import shutil

        shutil.rmtree(folder / "video")
        raise KeyboardInterrupt("power cut")

    monkeypatch.setattr(store_mod, "remove_episode_folder", cut)
    return real


def test_interrupted_delete_is_finished_by_repair(home, monkeypatch):
    with Store.open(home) as store:
        keep = record(store, n=3)
        gone = record(store, n=3)
        real = _interrupt_after_video(monkeypatch)
        with pytest.raises(KeyboardInterrupt):
            store.delete_episode(gone.id)
        monkeypatch.setattr(store_mod, "remove_episode_folder", real)
        assert [e.id for e in store.episodes()] == [keep.id]  # hidden at once
        assert store.episode(gone.id).status == "deleting"
        with pytest.raises(StoreError, match="store check --repair"):
            store.restore_episode(gone.id)
    report = check_store(home)  # reports, changes nothing
    assert [i.kind for i in report.problems] == ["deleting"] and not report.ok
    assert (gone.path / "meta.json").is_file()
    report = check_store(home, repair=True)
    assert all(i.fixed for i in report.problems)
    assert not gone.path.exists()
    assert _rows(home, "streams", gone.id) == 0
    assert check_store(home).problems == []
    with Store.open(home) as store:
        assert [e.id for e in store.episodes(status=None)] == [keep.id]


def test_interrupted_delete_is_not_resurrected_by_an_index_rebuild(home, monkeypatch):
    with Store.open(home) as store:
        keep = record(store, n=3)
        gone = record(store, n=3)
        _interrupt_after_video(monkeypatch)
        with pytest.raises(KeyboardInterrupt):
            store.delete_episode(gone.id)
    for suffix in ("", "-wal", "-shm"):  # the index is lost: repair rebuilds it from the folders
        (home / f"index.sqlite{suffix}").unlink(missing_ok=True)
    report = check_store(home, repair=True)
    assert "deleting" in [i.kind for i in report.issues] and all(i.fixed for i in report.problems)
    assert not gone.path.exists()
    with Store.open(home) as store:
        assert [e.uuid for e in store.episodes(status=None)] == [keep.uuid]


def test_curation_trash_restore_purge_use_the_store_calls(home):
    from recorder import curation

    with Store.open(home) as store:
        a = store.update_episode(record(store, n=3, tags=["x"]).id, status="recovered")
        b = record(store, n=3)
        curation.trash(store, [a.id, b.id])
        assert store.episode(a.id).tags == ("x",)  # no hidden bookkeeping tag any more
        curation.restore(store, [a.id, b.id])
        assert [(e.id, e.status) for e in store.episodes()] == [(a.id, "recovered"), (b.id, "complete")]
        curation.purge(store, [b.id])
        assert not b.path.exists() and [e.id for e in store.episodes(status=None)] == [a.id]
