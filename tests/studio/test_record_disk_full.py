"""`vla-studio record` into a full disk (issue 13 item 1): one line, exit 2, the episode kept as recovered."""



from recorder.store import Store, faults
from studio.cli import main
from tests.diskfull import encoder_enospc_from, fill

ARGS = ["record", "--rig", "sim", "--dataset", "d", "--scripted", "--episodes", "1", "--episode-time", "5",
        "--size", "160x120"]


def _one_line_and_kept(home, capsys, rc, size=(120, 160)):
    err = capsys.readouterr().err
    assert rc == 2, err
    lines = [x for x in err.splitlines() if x.strip()]
    assert len(lines) == 1 and "disk full at" in lines[0] and "MB needed" in lines[0], err
    assert "free space and run the recording again" in lines[0] and "Traceback" not in err
    with Store.open(home) as store:
        (ep,) = store.episodes(dataset="d", status=None)
        assert ep.status == "recovered" and ep.num_frames > 0
        assert f"kept as 'recovered' with {ep.num_frames} ticks" in lines[0]
        with store.open_episode(ep.id) as r:
            assert r.frames("front", range(ep.num_frames)).shape == (ep.num_frames, *size, 3)
    assert main(["--home", str(home), "datasets", "list"]) == 0
    return ep


def test_record_with_injected_enospc(home, capsys, monkeypatch):
    encoder_enospc_from(monkeypatch, 10)
    ep = _one_line_and_kept(home, capsys, main(["--home", str(home), *ARGS]))
    assert ep.num_frames <= 10


def test_record_into_a_full_tmpfs(small_disk, capsys, monkeypatch):
    home = small_disk / "home"
    real = Store.begin_episode

    def begin_then_fill(self, **kw):
        writer = real(self, **kw)
        fill(small_disk, leave=faults.MIN_FREE_BYTES + 30_000)  # the first second of video, then the disk is full
        return writer

    monkeypatch.setattr(Store, "begin_episode", begin_then_fill)
    _one_line_and_kept(home, capsys, main(["--home", str(home), *ARGS, "--size", "320x240"]), (240, 320))


def test_record_does_not_start_on_a_full_disk(small_disk, capsys):
    home = small_disk / "home"
    with Store.open(home):
        pass
    fill(small_disk, leave=500_000)
    rc = main(["--home", str(home), *ARGS])
    err = capsys.readouterr().err
    assert rc == 2 and "disk full at" in err and "Traceback" not in err, err
    with Store.open(home) as store:
        assert all(e.status == "discarded" for e in store.episodes(status=None))
