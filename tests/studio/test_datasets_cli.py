"""`vla-studio datasets ...` end to end on a small store."""

from __future__ import annotations

import json

from recorder.store import Store
from studio.cli import main
from tests.recorder.test_lerobot import make_episode


def run(home, *args):
    return main(["--home", str(home), "datasets", *args])


def test_list_show_edit_trash_restore_purge(home, capsys):
    with Store.open(home) as store:
        a, _, _ = make_episode(store, n=3, seed=1, success=True)
        b, _, _ = make_episode(store, n=3, seed=2, source="scripted")
    assert run(home, "list") == 0
    out = capsys.readouterr().out
    assert "demo" in out and " 2 " in out

    assert run(home, "edit", str(a.id), "--task", "wipe the table", "--success", "no", "--tags", "a, b",
               "--notes", "slipped") == 0
    assert run(home, "show", "demo", "--success", "no") == 0
    out = capsys.readouterr().out
    assert "wipe the table" in out and "1 episodes" in out and "a,b" in out

    assert run(home, "show", "demo", "--source", "scripted") == 0
    assert f"\n{b.id:>5} " in capsys.readouterr().out

    assert run(home, "trash", str(b.id)) == 0
    assert run(home, "show", "demo") == 0
    assert "1 episodes" in capsys.readouterr().out
    assert run(home, "restore", str(b.id)) == 0
    assert run(home, "purge", str(b.id)) == 2
    assert "--yes" in capsys.readouterr().err
    assert b.path.exists()
    assert run(home, "purge", str(b.id), "--yes") == 0
    assert not b.path.exists()


def test_export_filter_import_stats_split_merge(home, tmp_path, capsys):
    with Store.open(home) as store:
        make_episode(store, n=4, seed=1, success=True, task="pick")
        make_episode(store, n=5, seed=2, success=False, task="push")
        make_episode(store, dataset="other", n=3, seed=3)
    out_dir = tmp_path / "lr"
    assert run(home, "export", "demo", "--out", str(out_dir), "--success", "yes") == 0
    info = json.loads((out_dir / "meta/info.json").read_text())
    assert info["total_episodes"] == 1 and info["total_frames"] == 4
    assert run(home, "export", "demo", "--out", str(out_dir)) == 2
    assert "already exists" in capsys.readouterr().err

    assert run(home, "import", str(out_dir), "--dataset", "back") == 0
    assert "imported 1 episodes, 4 frames" in capsys.readouterr().out
    assert run(home, "import", str(tmp_path)) == 2
    assert "not a LeRobot dataset" in capsys.readouterr().err

    assert run(home, "stats", "demo") == 0
    out = capsys.readouterr().out
    assert "observation.state" in out and "q99" in out
    assert run(home, "split", "demo", "--val", "0.5", "--seed", "1") == 0
    assert "1 train, 1 val" in capsys.readouterr().out
    assert run(home, "merge", "demo", "other", "--into", "all") == 0
    with Store.open(home) as store:
        assert len(store.episodes(dataset="all")) == 3
    assert run(home, "stats", "missing") == 2


def test_export_leaves_failed_episodes_out_unless_asked(home, tmp_path, capsys):
    """Issue 18 items 3-5 at the CLI: failed episodes stay out by default (said so), --include-failed takes
    them, every label is in meta/episodes; --help says the sim arm goes out as so101_follower; --gop picks."""
    import pyarrow.parquet as pq
    import pytest

    with Store.open(home) as store:
        for i, ok in enumerate((True, False, None)):
            make_episode(store, n=3, seed=i, success=ok)
        make_episode(store, dataset="bad", n=3, success=False)
    assert run(home, "export", "demo", "--out", str(tmp_path / "a")) == 0
    assert "left out 1 failed episodes" in capsys.readouterr().out
    rows = pq.read_table(tmp_path / "a/meta/episodes/chunk-000/file-000.parquet").column("success").to_pylist()
    assert rows == [True, None]
    assert run(home, "export", "demo", "--out", str(tmp_path / "b"), "--include-failed", "--gop", "5") == 0
    rows = pq.read_table(tmp_path / "b/meta/episodes/chunk-000/file-000.parquet").column("success").to_pylist()
    assert rows == [True, False, None]
    info = json.loads((tmp_path / "b/meta/info.json").read_text())
    assert info["features"]["observation.images.front"]["info"]["video.g"] == 5
    assert run(home, "export", "bad", "--out", str(tmp_path / "c")) == 2
    assert "--include-failed" in capsys.readouterr().err and not (tmp_path / "c").exists()
    assert run(home, "export", "demo", "--out", str(tmp_path / "d"), "--gop", "0") == 2
    assert "GOP" in capsys.readouterr().err

    with pytest.raises(SystemExit):
        run(home, "export", "--help")
    text = " ".join(capsys.readouterr().out.split())
    assert "so101_follower" in text and "--include-failed" in text and "--gop" in text


def test_show_prints_the_first_rows_of_a_big_dataset_and_says_how_many_are_left(home, capsys):
    with Store.open(home) as store:
        ids = [make_episode(store, n=2, seed=i)[0].id for i in range(7)]
    assert run(home, "show", "demo", "--limit", "3") == 0
    out = capsys.readouterr().out
    shown = [int(line.split()[0]) for line in out.splitlines()[1:-1]]
    assert shown == ids[:3]
    assert out.rstrip().endswith("3 of 7 episodes shown (--limit 0 shows all, --limit N the first N)")
    assert run(home, "show", "demo", "--limit", "0") == 0
    out = capsys.readouterr().out
    assert out.rstrip().endswith("\n7 episodes") and len(out.splitlines()) == 9
    assert run(home, "show", "demo", "--limit", "7") == 0  # exactly the limit: nothing left to mention
    assert capsys.readouterr().out.rstrip().endswith("\n7 episodes")
    assert run(home, "show", "demo", "--limit", "-1") == 2
    assert "--limit must be 0 (all)" in capsys.readouterr().err
