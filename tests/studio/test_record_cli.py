"""`vla-studio record` end to end: scripted sim demos into the store."""

import io

import numpy as np
import pytest

from recorder.store import Store
from studio.cli import main
from studio.commands.record import run_record


@pytest.mark.slow
def test_three_scripted_sim_episodes_into_the_store(home, capsys):
    out = io.StringIO()
    rc = run_record(home, "sim", "scripted-pick", None, 3, episode_time=10.0, scripted=True, seed=3, out=out)
    assert rc == 0
    lines = out.getvalue().strip().splitlines()
    assert len(lines) == 3 and all("saved" in x and "label success" in x for x in lines)
    with Store.open(home) as store:
        eps = store.episodes(dataset="scripted-pick")
        assert len(eps) == 3
        assert {e.source for e in eps} == {"scripted"} and all(e.success for e in eps)
        assert all(e.task == "pick up the red cube" for e in eps)
        seeds = [e.rig["robot_info"]["seed"] for e in eps] if eps[0].rig else []
        for e in eps:
            assert e.status == "complete" and 30 < e.num_frames < 300
            with store.open_episode(e.id) as r:
                low = r.lowdim()
                assert len(low["t"]) == e.num_frames
                assert np.all(np.diff(low["t"]) > 0)
                assert low["action"].shape == (e.num_frames, 6)
                # the expert lifted the cube: the gripper closed during the episode
                assert low["action"][:, 5].min() < low["action"][0, 5]
                assert r.frames("front", [0, e.num_frames - 1]).shape == (2, 240, 320, 3)
        assert seeds == [] or len(set(seeds)) == 3

    # appending with a rig whose cameras differ is refused, saying what differs
    rc = main(["--home", str(home), "record", "--rig", "sim", "--dataset", "scripted-pick", "--scripted",
               "--episodes", "1", "--size", "160x120"])
    err = capsys.readouterr().err
    assert rc == 2
    assert "scripted-pick" in err and "camera front is 320x240 in the dataset but 160x120 on the rig" in err


def test_record_help_documents_the_keys(capsys):
    with pytest.raises(SystemExit):
        main(["record", "--help"])
    out = capsys.readouterr().out
    for text in ("--scripted", "--episodes", "space", "re-record", "Esc", "--reset-time"):
        assert text in out


def test_bad_rig_file_is_a_one_line_error(home, capsys, tmp_path):
    rc = main(["--home", str(home), "record", "--rig", str(tmp_path / "nope.toml"), "--dataset", "x", "--task", "t"])
    assert rc == 2
    assert "nope.toml" in capsys.readouterr().err


@pytest.mark.slow
def test_terminal_keys_record_save_and_quit(home):
    """A person at a terminal: space starts, space stops, f labels, s saves, Esc e-stops and quits."""
    import os
    import pty
    import threading
    import time

    master, slave = pty.openpty()
    out = io.StringIO()
    result = {}

    def run():
        result["rc"] = run_record(home, "sim", "keys", "wave at the camera", 5, episode_time=30.0, reset_time=0.0,
                                  interactive=True, out=out, key_fd=slave)

    t = threading.Thread(target=run)
    t.start()

    def wait_text(text, timeout=20.0):
        t0 = time.monotonic()
        while text not in out.getvalue():
            assert time.monotonic() - t0 < timeout, out.getvalue()
            time.sleep(0.05)

    try:
        wait_text("rig connected")
        time.sleep(0.3)
        os.write(master, b" ")
        wait_text("recording episode 1/5")
        time.sleep(1.0)
        os.write(master, b" ")
        wait_text("stopped: s save")
        os.write(master, b"f")
        time.sleep(0.2)
        os.write(master, b"s")
        wait_text("episode 1 saved")
        os.write(master, b"\x1b")
        t.join(20)
        assert not t.is_alive() and result["rc"] == 0
    finally:
        os.close(master)
        os.close(slave)
    with Store.open(home) as store:
        (ep,) = store.episodes(dataset="keys", status=("complete",))
        assert ep.success is True and ep.task == "wave at the camera" and ep.num_frames >= 20
        # auto-advance had started episode 2 (no reset time): the e-stop kept it, marked recovered
        for other in store.episodes(dataset="keys", status=("recovered",)):
            assert "e-stop" in other.notes


@pytest.mark.parametrize("content, message", [
    (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(range(128, 256)), "is not a text (UTF-8) file"),
    (b'name = "r"\n[robot]\ntype = "sim"\n[cameras.front]\ntype = "sim"\nwidth = "320"\n',
     'width must be a whole number, not "320" (str); e.g. width = 320'),
    (b'name = "r"\n[robot]\ntype = "sim"\n[cameras.front]\ntype = "sim"\nfps = "fast"\n',
     'fps must be a number, not "fast"'),
])
def test_hostile_rig_file_is_one_clear_line(home, capsys, tmp_path, content, message):
    rig = tmp_path / "rig.toml"
    rig.write_bytes(content)
    rc = main(["--home", str(home), "record", "--rig", str(rig), "--dataset", "x", "--task", "t"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1, err
    assert str(rig) in err[0] and message in err[0], err
