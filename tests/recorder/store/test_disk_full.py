"""A full disk under the store (issue 13 items 1-3): one line, nothing lost, never called corruption.

Each case runs on a real 30 MB tmpfs where the machine allows mounting one, and again with ENOSPC (or a
SQLite I/O error) injected at the write call, which always runs."""

import errno
import hashlib
import sqlite3

import av
import numpy as np
import pytest

from recorder.store import Store, faults
from recorder.store.check import check_store
from recorder.store.faults import DiskFullError
from recorder.store.recovery import remux_prefix
from studio.cli import main
from tests.diskfull import encoder_enospc_from, fill

from .helpers import CAMERAS, LOWDIM, action, record, state


def _sha(p):
    return hashlib.sha1(p.read_bytes()).hexdigest()


def _record_until_full(store, max_ticks=2000):
    """Record noise frames (large after encoding) until the writer says the disk is full."""
    rng = np.random.default_rng(0)
    w = store.begin_episode(dataset="d", task="t", fps=30.0, cameras=CAMERAS, lowdim=LOWDIM, flush_s=0.05)
    err = None
    for i in range(max_ticks):
        frames = {c: rng.integers(0, 255, (120, 160, 3), dtype=np.uint8) for c in CAMERAS}
        try:
            w.add_tick(t=i / 30, frames=frames, values={"observation.state": state(i), "action": action(i)})
        except DiskFullError as e:
            err = e
            break
    assert err is not None, "the disk never filled"
    with pytest.raises(DiskFullError) as fin:
        w.finish(success=True)
    return w, str(err), str(fin.value)


def _assert_kept_recovered(store, msg):
    assert "disk full at" in msg and "MB needed" in msg and "free space and run" in msg
    assert "\n" not in msg and "Errno" not in msg
    (ep,) = store.episodes(dataset="d", status=None)
    assert ep.status == "recovered" and ep.num_frames > 0
    assert f"kept as 'recovered' with {ep.num_frames} ticks" in msg
    with store.open_episode(ep.id) as r:  # every kept tick reads back
        assert r.frames("front", range(ep.num_frames)).shape == (ep.num_frames, 120, 160, 3)
        assert len(r.lowdim()["action"]) == ep.num_frames
    return ep


def test_recording_into_a_full_tmpfs_keeps_the_episode(small_disk):
    home = small_disk / "home"
    with Store.open(home) as store:
        fill(small_disk, leave=faults.RESERVE_BYTES + faults.MIN_FREE_BYTES + 1_500_000)
        _w, first, last = _record_until_full(store)
        assert first.startswith(f"disk full at {home}")
        _assert_kept_recovered(store, last)
        assert check_store(home).ok


def test_recording_with_injected_enospc_keeps_the_episode(home, monkeypatch):
    encoder_enospc_from(monkeypatch, 20)
    with Store.open(home) as store:
        _w, first, last = _record_until_full(store)
        ep = _assert_kept_recovered(store, last)
        assert 0 < ep.num_frames <= 20


def test_a_recording_does_not_start_without_room(small_disk):
    home = small_disk / "home"
    with Store.open(home) as store:
        fill(small_disk, leave=1_000_000)
        with pytest.raises(DiskFullError, match=rf"disk full at {home}: .* MB needed .*free space and run"):
            record(store, n=5)
        assert store.episodes(status=None) == [] or all(e.status == "discarded" for e in store.episodes(status=None))


def test_a_new_store_on_a_full_disk_is_one_line(small_disk, capsys):
    fill(small_disk, leave=0)
    assert main(["--home", str(small_disk / "new"), "datasets", "list"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "disk full at" in err and "sqlalche" not in err and "SQL" not in err


def _full_index(small_disk):
    home = small_disk / "home"
    with Store.open(home) as store:
        record(store, n=10)
    filler = fill(small_disk, leave=0)
    return home, filler


def test_index_on_a_full_disk_is_not_called_corrupt_and_repair_refuses(small_disk, capsys):
    home, filler = _full_index(small_disk)
    before = _sha(home / "index.sqlite")
    for argv in (["datasets", "list"], ["store", "check"], ["store", "check", "--repair"]):
        assert main(["--home", str(home), *argv]) == 2, argv
        err = capsys.readouterr().err
        assert "disk full at" in err and "corrupt" not in err and "not a readable" not in err, err
    assert _sha(home / "index.sqlite") == before
    assert not list(home.glob("index.sqlite.corrupt-*"))  # nothing moved aside
    filler.unlink()
    assert main(["--home", str(home), "datasets", "list"]) == 0
    assert "demo" in capsys.readouterr().out


def test_injected_sqlite_io_error_on_a_full_disk_is_not_corrupt(home, monkeypatch, capsys):
    with Store.open(home) as store:
        record(store, n=5)
    real = sqlite3.connect

    def connect(*a, **kw):
        err = sqlite3.OperationalError("disk I/O error")
        err.sqlite_errorcode = 10 | (23 << 8)  # SQLITE_IOERR_SHMOPEN
        raise err

    monkeypatch.setattr(sqlite3, "connect", connect)
    monkeypatch.setattr(faults, "free_bytes", lambda _p: 0)
    assert main(["--home", str(home), "store", "check", "--repair"]) == 2
    err = capsys.readouterr().err
    assert "disk full at" in err and "not a readable" not in err
    monkeypatch.setattr(sqlite3, "connect", real)
    assert not list(home.glob("index.sqlite.corrupt-*"))


def test_a_locked_index_is_one_line_naming_the_store(home):
    from recorder.store.faults import known_sqlite_error

    with Store.open(home) as store:
        record(store, n=3)
    holder = sqlite3.connect(home / "index.sqlite")
    holder.execute("BEGIN EXCLUSIVE")
    try:
        other = sqlite3.connect(home / "index.sqlite", timeout=0)
        with pytest.raises(sqlite3.OperationalError) as info:
            other.execute("INSERT INTO datasets(name, version) VALUES ('x', 0)")
        other.close()
    finally:
        holder.rollback()
        holder.close()
    err = known_sqlite_error(info.value, home / "index.sqlite")
    assert err is not None and "locked by another process" in str(err) and str(home) in str(err)


def _cut_video(tmp, home=None):
    src = tmp / "front.mp4"
    with Store.open(tmp / "h") as store:
        info = record(store, n=40)
    path = info.path / "video" / "front.mp4"
    size = path.stat().st_size
    with open(path, "r+b") as f:
        f.truncate(size * 2 // 3)
    return path, src


class _FullDst:
    """An output container whose writes fail with ENOSPC, as FFmpeg's do on a full disk."""

    def __init__(self, real):
        self._real = real

    def __enter__(self):
        self._real.__enter__()
        return self

    def __exit__(self, *exc):
        return self._real.__exit__(*exc)

    def add_stream_from_template(self, s):
        return self._real.add_stream_from_template(s)

    def mux(self, packet):
        raise av.error.OSError(errno.ENOSPC, "No space left on device", "dst.mp4")


@pytest.mark.parametrize("how", ["tmpfs", "injected"])
def test_remux_on_a_full_disk_never_empties_the_video(how, tmp_path, request, monkeypatch):
    if how == "tmpfs":
        disk = request.getfixturevalue("small_disk")
        path, _ = _cut_video(disk)
        fill(disk, leave=0)
    else:
        path, _ = _cut_video(tmp_path)
        real_open = av.open
        monkeypatch.setattr(av, "open", lambda f, mode="r", **kw: _FullDst(real_open(f, mode, **kw))
                            if mode == "w" else real_open(f, mode, **kw))
    before, size = _sha(path), path.stat().st_size
    with pytest.raises(DiskFullError, match="disk full at"):
        remux_prefix(path, 30.0, 40)
    assert path.stat().st_size == size and _sha(path) == before
    assert not list(path.parent.glob("*.salvage.mp4"))


def test_a_store_write_on_a_full_disk_is_one_line(small_disk):
    home = small_disk / "home"
    with Store.open(home) as store:
        infos = [record(store, n=3) for _ in range(3)]
        filler = fill(small_disk, leave=0)
        with pytest.raises(DiskFullError, match=rf"^disk full at {home}: .*free space and run"):
            for i in range(200):  # the WAL grows until SQLite finds no room
                store.update_episode(infos[i % 3].id, notes="x" * 4000 + str(i))
        filler.unlink()
        store.update_episode(infos[0].id, notes="fine again")
        assert store.episode(infos[0].id).notes == "fine again"


def test_an_io_error_reading_a_stream_is_not_called_damage(home, monkeypatch, capsys):
    import pyarrow as pa

    with Store.open(home) as store:
        info = record(store, n=8)
    real = pa.ipc.open_stream

    def eio(*a, **kw):
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(pa.ipc, "open_stream", eio)
    for argv in (["store", "check"], ["store", "check", "--repair"]):
        assert main(["--home", str(home), *argv]) == 2
        err = capsys.readouterr().err
        assert "I/O error reading" in err and "lowdim.arrows" in err and "nothing is changed" in err
    monkeypatch.setattr(pa.ipc, "open_stream", real)
    with Store.open(home) as store:
        ep = store.episode(info.id)
        assert ep.status == "complete" and ep.num_frames == 8
    assert not (home / "backups").exists()


def test_an_export_into_a_full_disk_is_one_line_and_leaves_nothing(home, small_disk, capsys):
    with Store.open(home) as store:
        rng = np.random.default_rng(1)
        w = store.begin_episode(dataset="d", task="t", fps=30.0, cameras=CAMERAS, lowdim=LOWDIM)
        for i in range(30):  # noise: the export's videos are large
            w.add_tick(t=i / 30, frames={c: rng.integers(0, 255, (120, 160, 3), dtype=np.uint8) for c in CAMERAS},
                       values={"observation.state": state(i), "action": action(i)})
        w.finish(success=True)
    fill(small_disk, leave=100_000)
    out = small_disk / "export"
    assert main(["--home", str(home), "datasets", "export", "d", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    lines = [x for x in err.splitlines() if x.strip() and not x.startswith(("export", "  "))]
    assert any(x.startswith(f"vla-studio: error: disk full at {small_disk}") and "MB needed" in x for x in lines), err
    assert "Traceback" not in err
    assert not out.exists() and not list(small_disk.glob("export*"))


def test_repair_refuses_to_start_without_room_for_what_it_rewrites(home, monkeypatch, capsys):
    with Store.open(home) as store:
        info = record(store, n=30)
    video = info.path / "video" / "front.mp4"
    with open(video, "r+b") as f:
        f.truncate(video.stat().st_size * 2 // 3)
    before = _sha(video)
    monkeypatch.setattr(faults, "free_bytes", lambda _p: 100_000)  # readable, but almost no room left
    assert main(["--home", str(home), "store", "check", "--repair"]) == 2
    err = capsys.readouterr().err
    assert "disk full at" in err and "store check --repair' again" in err
    assert _sha(video) == before
    with Store.open(home) as store:
        assert store.episode(info.id).status == "complete" and store.episode(info.id).num_frames == 30


def test_a_sqlite_error_that_is_a_bug_is_not_disguised(home):
    import sqlalchemy as sa

    from recorder.store import models as m

    with Store.open(home) as store:
        store.get_or_create_dataset("d")
        with pytest.raises(sa.exc.IntegrityError):  # a broken invariant of ours: raised as it is, with its trace
            with store._write() as s:
                s.add(m.Dataset(name="d", version=0))
