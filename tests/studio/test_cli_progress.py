"""The CLI for people: progress bars and readable lines on a terminal (a pty), JSON lines everywhere else."""

from __future__ import annotations

import contextlib
import fcntl
import io
import json
import os
import pty
import re
import struct
import sys
import termios
import threading

import pytest

from studio.cli import main
from tests.finetune.synth_store import one_torch_thread, write_dataset  # noqa: F401

ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b\][^\x07]*\x07")


@contextlib.contextmanager
def terminal_stdout(columns: int = 160):
    """sys.stdout is a pseudo-terminal (isatty() is true) while inside; yields a function giving what a person
    saw (escape codes removed)."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 50, columns, 0, 0))
    chunks: list[bytes] = []

    def pump():
        while True:
            try:
                data = os.read(master, 65536)
            except OSError:
                return
            if not data:
                return
            chunks.append(data)

    reader = threading.Thread(target=pump, daemon=True)
    reader.start()
    tty = os.fdopen(slave, "w", buffering=1, closefd=False)
    old, sys.stdout = sys.stdout, tty
    old_env = {k: os.environ.pop(k, None) for k in ("NO_COLOR", "TERM", "COLUMNS", "FORCE_COLOR")}
    os.environ["TERM"] = "xterm-256color"
    try:
        yield lambda: ANSI.sub("", b"".join(chunks).decode(errors="replace")).replace("\r", "\n")
    finally:
        sys.stdout = old
        tty.close()
        os.close(slave)
        reader.join(5)
        os.close(master)
        os.environ.pop("TERM", None)
        for k, v in old_env.items():
            if v is not None:
                os.environ[k] = v


@pytest.fixture(scope="module")
def toy_home(tmp_path_factory):
    home = tmp_path_factory.mktemp("progress") / "home"
    write_dataset(home, "toy", episodes=2, frames=6)
    return home


TRAIN = ["finetune", "--dataset", "toy", "--model", "tiny", "--steps", "3", "--batch", "2", "--eval-every", "2",
         "--eval-batches", "1", "--val-fraction", "0.5", "--lora-rank", "4"]


def test_finetune_on_a_terminal_shows_a_progress_bar_and_sentences(toy_home):
    with terminal_stdout() as seen:
        rc = main(["--home", str(toy_home), *TRAIN, "--logger", "tensorboard", "--run-id", "tty-run"])
    text = seen()
    assert rc == 0
    assert '{"event"' not in text  # no raw JSON for a person
    assert re.search(r"step\s+3/3", text), text
    assert re.search(r"loss \d+\.\d{4}", text) and "samples/s" in text and "ETA 0:00:00" in text
    assert re.search(r"eval at step 2: val loss \d+\.\d+", text), text
    assert re.search(r"checkpoint at step 3 saved: .*tty-run", text), text
    assert re.search(r"done in \d+:\d\d:\d\d: best val loss \d", text) and "fine-tune tty-run on cpu" in text
    # the run folder still has every event as JSON lines (the studio re-attaches from it)
    events = [json.loads(x) for x in (toy_home / "runs" / "tty-run" / "metrics.jsonl").read_text().splitlines()]
    assert [e["event"] for e in events][0] == "start" and events[-1]["event"] == "done"

    # --logger tensorboard: event files beside metrics.jsonl, with the same numbers
    run = toy_home / "runs" / "tty-run"
    assert list((run / "tensorboard").glob("events.out.tfevents.*"))
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(run / "tensorboard"))
    acc.Reload()
    tags = acc.Tags()["scalars"]
    assert "train/loss" in tags and "eval/val_loss" in tags and "train/samples_per_s" in tags
    train = [e for e in events if e["event"] == "train"]
    assert [e.step for e in acc.Scalars("train/loss")] == [e["step"] for e in train] == [1, 2, 3]
    assert [e.value for e in acc.Scalars("train/loss")] == pytest.approx([e["loss"] for e in train], rel=1e-5)


def test_finetune_json_flag_on_a_terminal_prints_json_lines(toy_home):
    with terminal_stdout() as seen:
        rc = main(["--home", str(toy_home), *TRAIN, "--steps", "1", "--eval-every", "0", "--json",
                   "--run-id", "tty-json"])
    lines = [x for x in seen().splitlines() if x.strip()]
    assert rc == 0
    events = [json.loads(x) for x in lines]  # every line is one JSON object, nothing else
    assert events[0]["event"] == "start" and events[-1]["event"] == "done"
    on_disk = (toy_home / "runs" / "tty-json" / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(x) for x in on_disk] == events  # byte-compatible with the file the studio reads


def test_item_progress_without_a_terminal_prints_only_the_lines():
    from studio.commands.progress import ItemProgress

    buf = io.StringIO()
    with ItemProgress("episodes", 2, stream=buf) as bar:
        bar.update(1, note="saving")
        bar.print("episode 1 saved")
    assert buf.getvalue() == "episode 1 saved\n"


def test_record_episodes_on_a_terminal_shows_episode_progress(tmp_path):
    from recorder.store import Store
    from studio.commands.record import run_record

    home = tmp_path / "home"
    with terminal_stdout() as seen:
        rc = run_record(home, "sim", "bar", None, 2, fps=15.0, episode_time=0.7, reset_time=0.0, scripted=True,
                        size="64x48", out=sys.stdout)
    text = seen()
    assert rc == 0
    assert re.search(r"episodes\s+2/2", text), text
    assert re.search(r"episode \d+ saved: \d+ frames", text)
    with Store.open(home) as store:
        assert len(store.episodes(dataset="bar", status=("complete",))) == 2


def test_dataset_export_on_a_terminal_shows_frame_progress(toy_home, tmp_path):
    with terminal_stdout() as seen:
        rc = main(["--home", str(toy_home), "datasets", "export", "toy", "--out", str(tmp_path / "lr")])
    text = seen()
    assert rc == 0
    assert re.search(r"frames\s+12/12", text), text
    assert "exported 2 episodes, 12 frames" in text


def test_rollout_on_a_terminal_shows_episode_progress(tmp_path):
    from finetune.server import PolicyServer
    from tests.rollout_doubles import FixedChunkPolicy

    policy = FixedChunkPolicy(chunk_size=4, step=0.5, camera_names=("front",), checkpoint_id="7")
    with PolicyServer(policy, port=0, token="t0k") as srv, terminal_stdout() as seen:
        rc = main(["--home", str(tmp_path / "home"), "rollout", "--rig", "sim", "--policy-url", srv.url, "--token",
                   "t0k", "--episodes", "2", "--max-seconds", "0.5", "--fps", "10"])
    text = seen()
    assert rc == 0
    assert re.search(r"rollout episodes\s+2/2", text) and "0/2 successes" in text, text
    assert "episode 2/2: failure" in text
