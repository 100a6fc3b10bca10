"""`vla-studio demo`: record scripted sim demos -> fine-tune the tiny model (child process) -> roll out."""

import numpy as np
import pytest

from recorder.rollout import EXTRA_CHUNK, EXTRA_PATH
from recorder.store import Store
from studio.cli import main

pytestmark = pytest.mark.slow

TINY = ["--demos", "1", "--steps", "3", "--rollouts", "1", "--size", "64x48", "--fps", "10",
        "--episode-time", "1.5", "--rollout-time", "1.5"]


def test_demo_headless_end_to_end(home, capsys):
    rc = main(["--home", str(home), "demo", "--headless", *TINY])
    out = capsys.readouterr().out
    assert rc == 0, out
    assert "== record" in out and "== finetune" in out and "== rollout" in out and "demo done" in out
    store = Store.open(home)
    try:
        demos = store.episodes(dataset="demo")
        assert len(demos) == 1 and all(e.source == "scripted" for e in demos)
        runs = store.runs()
        assert len(runs) == 1 and runs[0].dataset == "demo"
        ckpts = store.checkpoints(runs[0].run_id)
        assert ckpts
        rollouts = store.episodes(source="policy")
        assert len(rollouts) == 1
        ro = rollouts[0]
        assert ro.success is not None  # labelled by the sim task's detector
        assert ro.checkpoint_id == ckpts[-1].id  # linked to the tuned checkpoint in the index
        low = store.open_episode(ro.id).lowdim()
        chunks = np.asarray(low[EXTRA_CHUNK])
        assert chunks.shape[0] == ro.num_frames > 0
        assert np.isfinite(chunks[-1]).all()  # the tuned model's predictions were stored
        assert np.isfinite(np.asarray(low[EXTRA_PATH + "front"])[-1]).all()
    finally:
        store.close()


@pytest.mark.gui
def test_demo_window_shows_each_stage(qtbot, home):
    from studio.commands.demo import _config
    from studio.rollout_demo_window import DemoWindow

    class A:
        pass

    args = A()
    args.home, args.task, args.dataset, args.seed = home, "pick", "demo", 0
    args.demos, args.steps, args.rollouts, args.size = 1, 2, 1, "64x48"
    args.fps, args.episode_time, args.rollout_time = 10.0, 1.0, 1.5
    win = DemoWindow(_config(args))
    qtbot.addWidget(win)
    win.show()
    with qtbot.waitSignal(win.thread.completed, timeout=120000):
        win.start()
    assert win.error is None
    assert all(it.text().startswith("✓") for it in win.stage_items.values())
    assert win.rollout_ticks_shown > 0 and win.views["front"].frames_shown > 0
    assert len(win._losses) == 2
    assert "rollouts succeeded" in win.result_label.text()
    win.close()
