"""A writer process killed with SIGKILL mid-episode: completed episodes intact, the partial one recovered."""

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np

from recorder.store import Store

from .helpers import action, smooth_image, state

CHILD = textwrap.dedent("""
    import sys, time
    sys.path.insert(0, {repo!r})
    from recorder.store import Store
    from tests.recorder.store.helpers import CAMERAS, LOWDIM, record, smooth_image, state, action
    store = Store.open(sys.argv[1])
    record(store, n=12, task="first")
    w = store.begin_episode(dataset="demo", task="second", fps=30.0, cameras=CAMERAS, lowdim=LOWDIM,
                            flush_s=0.05)
    for i in range(100000):
        w.add_tick(t=100.0 + i / 30, frames={{c: smooth_image(i, k) for k, c in enumerate(CAMERAS)}},
                   values={{"observation.state": state(i), "action": action(i)}})
        if i == 40:
            print("ready", flush=True)
        time.sleep(0.01)
""")


def test_sigkill_mid_episode_recovers(home, tmp_path):
    repo = str(Path(__file__).resolve().parents[3])
    script = tmp_path / "child.py"
    script.write_text(CHILD.format(repo=repo))
    proc = subprocess.Popen([sys.executable, str(script), str(home)], stdout=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        line = ""
        while "ready" not in line and time.monotonic() < deadline:
            line = proc.stdout.readline()
            assert line or proc.poll() is None, "child died before recording"
        time.sleep(0.3)
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        proc.stdout.close()

    with Store.open(home) as store:
        assert [(r.task, r.status) for r in store.recovered] == [("second", "recovered")]
        first, second = store.episodes(dataset="demo")
        assert first.status == "complete" and first.num_frames == 12
        assert second.status == "recovered" and second.num_frames >= 20
        for info in (first, second):
            with store.open_episode(info.id) as r:
                n = r.num_frames
                ld = r.lowdim()
                np.testing.assert_array_equal(ld["action"], np.stack([action(i) for i in range(n)]))
                np.testing.assert_array_equal(ld["observation.state"], np.stack([state(i) for i in range(n)]))
                for i in (n - 1, 0, n // 2):
                    assert np.abs(r.frame("wrist", i).astype(int) - smooth_image(i, 1)).mean() < 6
    # recovered files are clean: a check finds nothing and a reopen salvages nothing more
    from recorder.store.check import check_store

    assert check_store(home).ok
    with Store.open(home) as store:
        assert store.recovered == []


def test_crash_before_any_frame_is_discarded(home):
    with Store.open(home) as store:
        w = store.begin_episode(dataset="demo", fps=30.0, cameras={}, lowdim={"action": (6,)})
        folder = w.path
        # simulate the process dying: the lock is dropped, nothing was flushed
        from recorder.store.writer import release_lock

        release_lock(w._lock_fd)
        w._lock_fd = None
        w._done = True
    with Store.open(home) as store:
        assert [r.status for r in store.recovered] == ["discarded"]
        assert folder.is_dir()  # nothing deleted without --repair


def test_live_episode_is_not_salvaged_by_a_second_open(home):
    with Store.open(home) as store:
        w = store.begin_episode(dataset="demo", fps=30.0, cameras={}, lowdim={"action": (6,)})
        for i in range(5):
            w.add_tick(values={"action": np.full(6, i)})
        with Store.open(home) as other:  # e.g. a DataLoader worker
            assert other.recovered == []
            assert other.episodes(status="recording")[0].id == w.episode_id
        info = w.finish()
        assert info.status == "complete" and info.num_frames == 5


def test_death_inside_finish_keeps_labels_and_completes(home, monkeypatch):
    from .helpers import CAMERAS, LOWDIM

    store = Store.open(home)
    w = store.begin_episode(dataset="demo", fps=30.0, cameras=CAMERAS, lowdim=LOWDIM, tags=["a"])
    for i in range(8):
        w.add_tick(
            frames={c: smooth_image(i, k) for k, c in enumerate(CAMERAS)},
            values={"observation.state": state(i), "action": action(i)},
        )

    def power_cut(*a, **k):
        raise RuntimeError("power cut before the index commit")

    monkeypatch.setattr(store, "_commit_episode", power_cut)
    try:
        w.finish(success=False, notes="dropped the cube", tags=["b"])
    except RuntimeError:
        pass
    store.close()
    monkeypatch.undo()
    with Store.open(home) as store:
        (info,) = store.recovered
        assert info.status == "complete" and info.num_frames == 8
        assert info.success is False and info.notes == "dropped the cube" and info.tags == ("a", "b")
