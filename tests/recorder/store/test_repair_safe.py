"""Repair never destroys healthy data (issue 13 items 5, 7, 8, 9)."""

import hashlib
import json

import pytest

from recorder.errors import StoreError
from recorder.store import Store
from recorder.store.check import check_store
from recorder.store.video import scan_video
from studio.cli import main

from .helpers import drop_index_row, record


def _sha(p):
    return hashlib.sha1(p.read_bytes()).hexdigest()


def test_repair_of_one_cut_stream_keeps_the_others_and_can_be_undone(home, capsys):
    with Store.open(home) as store:
        info = record(store, n=75)
    front, wrist, low = (info.path / "video" / "front.mp4", info.path / "video" / "wrist.mp4",
                         info.path / "lowdim.arrows")
    idx = scan_video(front, 30.0)
    j = len(idx.pos) // 2
    with open(front, "r+b") as f:  # cut inside a packet half-way through the video
        f.truncate(int(idx.pos[j] + idx.size[j] // 2))
    cut, intact = _sha(front), {p: _sha(p) for p in (wrist, low)}

    assert main(["--home", str(home), "store", "check", "--repair"]) == 0
    capsys.readouterr()
    assert {p: _sha(p) for p in (wrist, low)} == intact  # the healthy streams are not rewritten
    with Store.open(home) as store:
        ep = store.episode(info.id)
        assert ep.status == "recovered" and 0 < ep.num_frames < 75
        with store.open_episode(ep.id) as r:
            assert r.frames("wrist", [ep.num_frames - 1]).shape == (1, 120, 160, 3)
            assert len(r.lowdim()["action"]) == ep.num_frames
        cut_to = ep.num_frames
    # the original of the one file rewritten is kept, and store check lists it
    assert main(["--home", str(home), "store", "check"]) == 0
    out = capsys.readouterr().out
    (line,) = [x for x in out.splitlines() if "backup" in x]
    assert "front.mp4" in line and f"episode {info.id}" in line and "store restore" in line
    name = line.split("backup ", 1)[1].split(":", 1)[0]
    (kept,) = (home / "backups" / name).rglob("front.mp4")
    assert _sha(kept) == cut

    # undo: the original file and the episode's length come back
    assert main(["--home", str(home), "store", "restore", name]) == 0
    assert f"episode {info.id} back to complete, 75 ticks" in capsys.readouterr().out
    assert _sha(front) == cut and not (home / "backups" / name).exists()
    with Store.open(home) as store:
        assert store.episode(info.id).num_frames == 75 and cut_to < 75


def test_an_empty_index_beside_episodes_is_damage_not_a_new_store(home, capsys):
    with Store.open(home) as store:
        info = record(store, n=6, dataset="kept")
    for suffix in ("-wal", "-shm"):
        (home / f"index.sqlite{suffix}").unlink(missing_ok=True)
    (home / "index.sqlite").write_bytes(b"")
    for argv in (["datasets", "list"], ["store", "info"]):
        assert main(["--home", str(home), *argv]) == 2
        err = capsys.readouterr().err
        assert "index.sqlite is empty (0 bytes)" in err and "store check --repair" in err
        assert "no datasets yet" not in err
    assert (home / "index.sqlite").stat().st_size == 0  # not re-initialised
    report = check_store(home)
    assert [i.kind for i in report.problems] == ["index-corrupt"]
    assert main(["--home", str(home), "store", "check", "--repair"]) == 0
    capsys.readouterr()
    with Store.open(home) as store:
        (ep,) = store.episodes(dataset="kept")
        assert ep.uuid == info.uuid and ep.num_frames == 6


def test_an_empty_index_in_an_empty_folder_is_still_a_new_store(tmp_path):
    (tmp_path / "index.sqlite").write_bytes(b"")
    with Store.open(tmp_path) as store:
        assert store.datasets() == []


def test_garbage_meta_json_is_caught_by_check_and_rewritten_by_repair(home, capsys):
    with Store.open(home) as store:
        a = record(store, n=6, task="first")
        b = record(store, n=6, task="second")
    (a.path / "meta.json").write_bytes(b"\x00\xff not json")
    (b.path / "meta.json").write_text(json.dumps({"format": 1, "cameras": 3}))
    report = check_store(home)
    assert sorted((i.kind, i.episode_id) for i in report.problems) == [("meta-bad", a.id), ("meta-bad", b.id)]
    assert main(["--home", str(home), "store", "check"]) == 1
    assert "meta.json is not valid JSON" in capsys.readouterr().out
    assert main(["--home", str(home), "store", "check", "--repair"]) == 0
    capsys.readouterr()
    # repaired meta.json files are enough to rebuild the index from the folders
    for name in ("index.sqlite", "index.sqlite-wal", "index.sqlite-shm"):
        (home / name).unlink(missing_ok=True)
    assert main(["--home", str(home), "store", "check", "--repair"]) == 0
    with Store.open(home) as store:
        assert sorted(e.task for e in store.episodes()) == ["first", "second"]


def test_an_orphan_folder_with_garbage_meta_is_named_not_fixable(home):
    with Store.open(home) as store:
        info = record(store, n=4)
    drop_index_row(home, info.id)
    (info.path / "meta.json").write_text("[1, 2")
    (issue,) = check_store(home).problems
    assert issue.kind == "orphan-folder" and not issue.fixable and "not valid JSON" in issue.message


def test_repair_removes_stray_temp_files(home, capsys):
    with Store.open(home) as store:
        info = record(store, n=5)
    stray = [info.path / "meta.json.tmp", info.path / "lowdim.arrows.tmp", info.path / "video" / "front.mp4.salvage.mp4"]
    for p in stray:
        p.write_bytes(b"half")
    assert sorted(i.kind for i in check_store(home).problems) == ["stray-temp"] * 3
    assert main(["--home", str(home), "store", "check", "--repair"]) == 0
    assert not any(p.exists() for p in stray)
    assert check_store(home).ok and not check_store(home).problems
    with Store.open(home) as store:
        assert store.episode(info.id).status == "complete"


def test_restore_of_an_unknown_backup_is_one_line(home, capsys):
    with Store.open(home) as store:
        record(store, n=3)
    assert main(["--home", str(home), "store", "restore", "nope"]) == 2
    assert "no backup named 'nope'" in capsys.readouterr().err
    with pytest.raises(StoreError):
        from recorder.store.check import restore_backup

        restore_backup(home, "nope")
