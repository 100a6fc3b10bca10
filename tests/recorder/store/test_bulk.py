"""Store.bulk_import: batched, crash-safe writing of whole episodes (issue 21: a 100k store that can be built)."""

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from recorder.errors import DatasetError
from recorder.store import CameraSpec, Store
from recorder.store.bulk import IMPORTING_DIR
from recorder.store.check import check_store

from .helpers import LOWDIM, action, smooth_image, state

CAMS = {"front": CameraSpec(width=64, height=48)}


def write(imp, i: int, n: int = 8, dataset: str = "bulk"):
    w = imp.begin_episode(dataset=dataset, task=f"task {i % 2}", fps=30.0, cameras=CAMS, lowdim=LOWDIM,
                          source="scripted", tags=("synthetic",), rig={"imported_from": "test"})
    for t in range(n):
        w.add_tick(t=t / 30, frames={"front": smooth_image(t + i, 0, 48, 64)}, timestamps={"front": t / 30},
                   values={"observation.state": state(t + i), "action": action(t + i)})
    w.finish(success=i % 2 == 0, notes=f"episode {i}")


def test_bulk_episodes_read_back_like_recorded_ones(home):
    batches = []
    with Store.open(home) as store:
        with store.bulk_import(batch_size=2, on_commit=batches.append) as imp:
            for i in range(5):
                write(imp, i, n=8 + i)
            assert imp.pending == 1  # two batches of 2 committed, the fifth waits for the end
        assert [len(b) for b in batches] == [2, 2, 1]
        eps = store.episodes(dataset="bulk")
        assert [e.notes for e in eps] == [f"episode {i}" for i in range(5)]
        assert [e.id for b in batches for e in b] == [e.id for e in eps]
        for info in eps:
            assert info == store.episode(info.id)  # what on_commit gave is what the index holds
        assert store.dataset("bulk").num_episodes == 5
        assert store.dataset("bulk").num_frames == sum(8 + i for i in range(5))
        for i, info in enumerate(eps):
            assert (info.num_frames, info.success, info.tags, info.source) == (8 + i, i % 2 == 0, ("synthetic",),
                                                                                "scripted")
            with store.open_episode(info) as r:
                ld = r.lowdim()
                np.testing.assert_array_equal(ld["action"], np.stack([action(t + i) for t in range(8 + i)]))
                np.testing.assert_array_equal(ld["observation.state"], np.stack([state(t + i) for t in range(8 + i)]))
                for t in (0, 7 + i, 3):
                    assert np.abs(r.frame("front", t).astype(int) - smooth_image(t + i, 0, 48, 64)).mean() < 6
    assert not (home / IMPORTING_DIR).exists()
    report = check_store(home)
    assert report.ok and not report.issues and report.episodes_checked == 5


def test_an_exception_loses_only_the_uncommitted_batch(home):
    with Store.open(home) as store:
        with pytest.raises(RuntimeError, match="converter failed"):
            with store.bulk_import(batch_size=2) as imp:
                for i in range(3):
                    write(imp, i)
                imp.begin_episode(dataset="bulk", fps=30.0, cameras=CAMS, lowdim=LOWDIM)
                raise RuntimeError("converter failed")
        assert [e.notes for e in store.episodes()] == ["episode 0", "episode 1"]
    assert not (home / IMPORTING_DIR).exists()
    assert sorted(os.listdir(home / "episodes")) == sorted(e.uuid for e in Store.open(home).episodes())
    assert check_store(home).ok


def test_an_episode_that_does_not_fit_its_dataset_is_refused_before_writing(home):
    with Store.open(home) as store:
        with store.bulk_import() as imp:
            write(imp, 0)
            with pytest.raises(DatasetError, match="does not fit dataset 'bulk'"):
                imp.begin_episode(dataset="bulk", fps=30.0, cameras={"front": CameraSpec(width=32, height=24)},
                                  lowdim=LOWDIM)
            write(imp, 1)
        assert len(store.episodes(dataset="bulk")) == 2


CHILD = textwrap.dedent("""
    import os, sys, time
    sys.path.insert(0, {repo!r})
    from recorder.store import Store
    from recorder.store.bulk import BulkImport
    from tests.recorder.store.test_bulk import CAMS, LOWDIM, action, smooth_image, state, write
    mode = sys.argv[2]
    store = Store.open(sys.argv[1])
    commits = []
    if mode == "mid-commit":  # die after the batch's folders are moved into episodes/, before its rows
        real = BulkImport._insert_rows
        def insert(self, batch):
            if len(commits) == 2:
                os._exit(9)
            return real(self, batch)
        BulkImport._insert_rows = insert
    def committed(infos):
        commits.append(len(infos))
        print("committed", sum(commits), flush=True)
    with store.bulk_import(batch_size=4, on_commit=committed) as imp:
        for i in range(1000):
            write(imp, i)
            if mode == "mid-batch" and len(commits) == 2 and imp.pending == 2:
                w = imp.begin_episode(dataset="bulk", fps=30.0, cameras=CAMS, lowdim=LOWDIM)
                for t in range(5):  # a third episode half-written when the kill comes
                    w.add_tick(frames={{"front": smooth_image(t, 0, 48, 64)}},
                               values={{"observation.state": state(t), "action": action(t)}})
                print("mid-batch", flush=True)
                time.sleep(60)
""")


@pytest.mark.parametrize("mode", ["mid-batch", "mid-commit"])
def test_killed_bulk_import_keeps_committed_batches_and_checks_clean(home, tmp_path, mode):
    repo = str(Path(__file__).resolve().parents[3])
    script = tmp_path / "child.py"
    script.write_text(CHILD.format(repo=repo))
    proc = subprocess.Popen([sys.executable, str(script), str(home), mode], stdout=subprocess.PIPE, text=True)
    lines = []
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break  # the child died (mid-commit: by itself)
            lines.append(line.strip())
            if line.strip() == "mid-batch":
                break
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        proc.stdout.close()
    assert "committed 8" in lines and "committed 12" not in lines
    staged = list((home / IMPORTING_DIR).iterdir())
    assert len(staged) == 1  # what the dead import left: its staging folder (and, mid-commit, its journal)
    if mode == "mid-commit":
        assert len(os.listdir(home / "episodes")) == 12  # the third batch's folders were already moved in

    report = check_store(home)  # read-only, right after the crash
    assert report.ok, [i.message for i in report.problems]
    assert not report.problems and report.episodes_checked == 8
    (note,) = [i for i in report.issues if i.kind == "import-interrupted"]
    lost = 3 if mode == "mid-batch" else 4  # mid-batch: two finished, one half-written
    assert f"its last batch ({lost} episodes) was never committed" in note.message

    with Store.open(home) as store:  # the next open removes what the crash left
        eps = store.episodes(dataset="bulk")
        assert [e.notes for e in eps] == [f"episode {i}" for i in range(8)]
        for info in eps:
            with store.open_episode(info) as r:
                assert r.num_frames == 8 and r.frame("front", 7).shape == (48, 64, 3)
    assert not (home / IMPORTING_DIR).exists()
    assert sorted(os.listdir(home / "episodes")) == sorted(e.uuid for e in eps)
    report = check_store(home, full=True)
    assert report.ok and not report.issues and report.episodes_checked == 8


def test_a_full_disk_stops_the_import_in_one_line_and_keeps_committed_batches(small_disk):
    from recorder.store.faults import DiskFullError
    from tests.diskfull import fill

    home = small_disk / "home"
    rng = np.random.default_rng(0)
    cams = {"front": CameraSpec(width=160, height=120)}
    with Store.open(home) as store:
        fill(small_disk, leave=6 << 20)  # room for one batch or two of these episodes
        with pytest.raises(DiskFullError) as err:
            with store.bulk_import(batch_size=4, then="'vla-studio datasets import SRC' again") as imp:
                for _ in range(1000):  # noise frames encode large: the disk fills
                    with imp.begin_episode(dataset="bulk", fps=30.0, cameras=cams, lowdim=LOWDIM) as w:
                        for t in range(30):
                            w.add_tick(frames={"front": rng.integers(0, 255, (120, 160, 3), dtype=np.uint8)},
                                       values={"observation.state": state(t), "action": action(t)})
        msg = str(err.value)
        assert msg.startswith(f"disk full at {home}") and "\n" not in msg and "Errno" not in msg
        assert msg.endswith("free space and run 'vla-studio datasets import SRC' again (episodes of batches "
                            "already committed are kept)")
        eps = store.episodes(dataset="bulk")
        assert eps and len(eps) % 4 == 0  # whole batches only
        for info in eps:
            with store.open_episode(info) as r:
                assert r.frames("front", range(30)).shape == (30, 120, 160, 3)
    assert not (home / IMPORTING_DIR).exists()
    assert sorted(os.listdir(home / "episodes")) == sorted(e.uuid for e in eps)
    report = check_store(home, full=True)
    assert report.ok and not report.problems
