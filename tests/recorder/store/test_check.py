"""store check (changes nothing) and --repair on planted damage; one-line errors on bad input."""

import hashlib
import sqlite3

import numpy as np
import pytest

from recorder.errors import StoreError
from recorder.store import Store
from recorder.store.check import check_store
from studio.cli import main

from .helpers import drop_index_row, record, smooth_image


def _snapshot(root):
    return {
        p.relative_to(root): hashlib.sha1(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file() and not p.name.endswith(("-shm", "-wal", ".lock"))
    }


@pytest.fixture
def damaged(home):
    with Store.open(home) as store:
        a, b, c = (record(store, n=30, task=f"t{i}") for i in range(3))
    import shutil

    shutil.rmtree(a.path)
    video = b.path / "video" / "front.mp4"
    with open(video, "r+b") as f:
        f.truncate(video.stat().st_size // 2)
    return home, a, b, c


def _rows(home):
    con = sqlite3.connect(home / "index.sqlite")
    rows = con.execute("SELECT id, status, num_frames FROM episodes ORDER BY id").fetchall()
    con.close()
    return rows


def test_check_reports_damage_and_changes_nothing(damaged, capsys):
    home, a, b, c = damaged
    before = _snapshot(home)
    rows = _rows(home)
    report = check_store(home)
    kinds = sorted((i.kind, i.episode_id) for i in report.problems)
    assert kinds == [("folder-missing", a.id), ("video-truncated", b.id)]
    assert not report.ok
    assert main(["--home", str(home), "store", "check"]) == 1
    out = capsys.readouterr().out
    assert str(a.path) in out and "front.mp4 is truncated" in out and "--repair" in out
    assert _snapshot(home) == before and _rows(home) == rows


def test_repair_fixes_planted_damage(damaged, capsys):
    home, a, b, c = damaged
    assert main(["--home", str(home), "store", "check", "--repair"]) == 0
    assert "all problems fixed" in capsys.readouterr().out
    with Store.open(home) as store:
        assert store.episode(a.id).status == "discarded"
        eb = store.episode(b.id)
        assert eb.status == "recovered" and 0 < eb.num_frames < 30
        with store.open_episode(b.id) as r:
            i = r.num_frames - 1
            assert np.abs(r.frame("front", i).astype(int) - smooth_image(i)).mean() < 6
            assert len(r.lowdim()["action"]) == r.num_frames
        assert store.episode(c.id).status == "complete"
        assert [e.id for e in store.episodes()] == [b.id, c.id]
    assert check_store(home).ok


def test_reader_names_a_truncated_video(home):
    with Store.open(home) as store:
        info = record(store, n=30)
        video = info.path / "video" / "wrist.mp4"
        with open(video, "r+b") as f:
            f.truncate(video.stat().st_size // 3)
        with store.open_episode(info.id) as r, pytest.raises(StoreError) as err:
            r.frame("wrist", 29)
        assert "wrist.mp4 is truncated" in str(err.value) and "--repair" in str(err.value)
        assert "\n" not in str(err.value)


def test_reader_names_a_video_cut_inside_its_first_fragment(home):
    with Store.open(home) as store:
        info = record(store, n=30)
        video = info.path / "video" / "front.mp4"
        with open(video, "r+b") as f:
            f.truncate(900)
        with store.open_episode(info.id) as r, pytest.raises(StoreError) as err:
            r.frame("front", 0)
        assert "front.mp4 is truncated" in str(err.value) and "--repair" in str(err.value)
        assert "\n" not in str(err.value)


def test_missing_episode_folder_error(home):
    import shutil

    with Store.open(home) as store:
        info = record(store, n=3)
        shutil.rmtree(info.path)
        with pytest.raises(StoreError, match="folder .* is missing; run 'vla-studio store check --repair'"):
            store.open_episode(info.id)


def test_corrupt_index_error_then_rebuild(home, capsys):
    with Store.open(home) as store:
        infos = [record(store, n=8, task=f"t{i}", tags=["x"]) for i in range(2)]
    for suffix in ("-wal", "-shm"):
        (home / f"index.sqlite{suffix}").unlink(missing_ok=True)
    (home / "index.sqlite").write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(StoreError) as err:
        Store.open(home)
    assert "index.sqlite is not a readable SQLite index" in str(err.value) and "--repair" in str(err.value)
    assert main(["--home", str(home), "store", "info"]) == 2
    assert "vla-studio: error:" in capsys.readouterr().err
    assert main(["--home", str(home), "store", "check", "--repair"]) == 0
    assert list(home.glob("index.sqlite.corrupt-*"))  # moved aside, not deleted
    with Store.open(home) as store:
        eps = store.episodes(dataset="demo", tags=["x"])
        assert sorted(e.uuid for e in eps) == sorted(i.uuid for i in infos)
        assert all(e.status == "complete" and e.num_frames == 8 for e in eps)


def test_not_a_store(tmp_path):
    a_file = tmp_path / "file.txt"
    a_file.write_text("hello")
    with pytest.raises(StoreError, match="is a file, not a store folder"):
        Store.open(a_file)
    with pytest.raises(StoreError, match="is not a vla-studio store"):
        Store.open(tmp_path)
    assert a_file.read_text() == "hello"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file.txt"]


def test_orphan_folder_is_reported_and_imported(home):
    with Store.open(home) as store:
        info = record(store, n=6)
    drop_index_row(home, info.id)
    report = check_store(home)
    assert [i.kind for i in report.problems] == ["orphan-folder"]
    report = check_store(home, repair=True)
    assert report.ok
    with Store.open(home) as store:
        (e,) = store.episodes()
        assert e.uuid == info.uuid and e.num_frames == 6 and e.status == "complete"


def test_missing_index_is_refused_then_rebuilt(home, capsys):
    with Store.open(home) as store:
        info = record(store, n=5, dataset="kept", success=False)
    for name in ("index.sqlite", "index.sqlite-wal", "index.sqlite-shm"):
        (home / name).unlink(missing_ok=True)
    with pytest.raises(StoreError, match="index.sqlite is missing .* --repair"):
        Store.open(home)
    assert main(["--home", str(home), "store", "check", "--repair"]) == 0
    assert main(["--home", str(home), "store", "info"]) == 0
    assert "dataset kept: 1 episodes, 5 frames" in capsys.readouterr().out
    with Store.open(home) as store:
        (e,) = store.episodes(dataset="kept", success=False)
        assert e.uuid == info.uuid and e.status == "complete"


def test_foreign_sqlite_file_is_not_touched(tmp_path):
    root = tmp_path / "other"
    root.mkdir()
    con = sqlite3.connect(root / "index.sqlite")
    con.execute("CREATE TABLE notes (x TEXT)")
    con.commit()
    con.close()
    before = (root / "index.sqlite").read_bytes()
    with pytest.raises(StoreError, match="another program"):
        Store.open(root)
    with pytest.raises(StoreError, match="another program"):
        check_store(root, repair=True)
    con = sqlite3.connect(root / "index.sqlite")
    assert [r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type='table'")] == ["notes"]
    con.close()
    assert (root / "index.sqlite").read_bytes() == before
    assert sorted(p.name for p in root.iterdir()) == ["index.sqlite"]


def test_incremental_check_skips_what_did_not_change_since_the_last_clean_check(home, capsys):
    with Store.open(home) as store:
        a, b, c = (record(store, n=12, task=f"t{i}") for i in range(3))
    first = check_store(home, full=False)  # no clean check yet: everything
    assert (first.episodes_checked, first.episodes_skipped, first.problems) == (3, 0, [])
    again = check_store(home, full=False)
    assert (again.episodes_checked, again.episodes_skipped) == (0, 3) and again.ok

    with Store.open(home) as store:
        store.update_episode(c.id, success=False)  # an edited row is checked again
    video = b.path / "video" / "front.mp4"
    with open(video, "r+b") as f:  # and so is a file changed behind the store's back
        f.truncate(video.stat().st_size // 2)
    report = check_store(home, full=False)
    assert (report.episodes_checked, report.episodes_skipped) == (2, 1)
    assert [(i.kind, i.episode_id) for i in report.problems] == [("video-truncated", b.id)]
    # a check that found a problem is not a clean one: the damage is reported until it is fixed
    assert [i.episode_id for i in check_store(home, full=False).problems] == [b.id]

    assert main(["--home", str(home), "store", "check"]) == 1
    out = capsys.readouterr().out
    assert "2 episodes checked, 1 unchanged since the last clean check" in out and "--full" in out
    assert main(["--home", str(home), "store", "check", "--full"]) == 1
    out = capsys.readouterr().out
    assert "3 episodes checked\n" in out and "front.mp4 is truncated" in out


def test_incremental_check_finds_a_temp_file_left_after_the_last_clean_check(home):
    with Store.open(home) as store:
        a, b = (record(store, n=6, task=f"t{i}") for i in range(2))
    assert check_store(home, full=False).ok
    stray = b.path / "video" / "front.mp4.salvage.mp4"  # an interrupted repair of b, after that clean check
    stray.write_bytes(b"half a video")
    report = check_store(home, full=False)
    assert [(i.kind, i.path) for i in report.problems] == [("stray-temp", stray)]
    assert report.episodes_skipped == 1  # a's folder did not change: neither read nor listed again


def test_damaged_index_pages_are_one_line_without_an_integrity_scan_at_open(home, capsys):
    """Store.open no longer reads the whole index (PRAGMA quick_check: 0.7 s at 100k episodes); a damaged page
    met by a command is still the one-line IndexCorruptError that points at repair, and check still finds it."""
    with Store.open(home) as store:
        for i in range(3):
            record(store, n=4, task=f"t{i}")
    index = home / "index.sqlite"
    assert not (home / "index.sqlite-wal").exists() or (home / "index.sqlite-wal").stat().st_size == 0
    data = bytearray(index.read_bytes())
    page = int.from_bytes(data[16:18], "big")
    data[page:] = bytes((i * 37 + 11) % 256 for i in range(len(data) - page))  # every page but the header's
    index.write_bytes(bytes(data))
    assert main(["--home", str(home), "datasets", "show", "demo"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "store check --repair" in err and "Traceback" not in err
    assert [i.kind for i in check_store(home).problems] == ["index-corrupt"]
