"""`vla-studio demo`: record scripted sim demos -> fine-tune the tiny model (child process) -> roll out."""

import numpy as np
import pytest

from recorder.rollout import EXTRA_CHUNK, EXTRA_PATH
from recorder.store import Store
from studio.cli import main

pytestmark = pytest.mark.slow

TINY = ["--demos", "1", "--steps", "3", "--rollouts", "1", "--size", "64x48", "--fps", "10",
        "--episode-time", "1.5", "--rollout-time", "1.5"]


@pytest.fixture(scope="module")
def demo_home(tmp_path_factory):
    import contextlib
    import io

    from recorder.devices.rig import load_rig, sim_rig_config
    from recorder.session import rig_features

    home = tmp_path_factory.mktemp("demo") / "home"
    # a used store: it already holds rollouts of another rig shape (issue 12: the demo failed on it)
    with Store.open(home) as store:
        store.get_or_create_dataset("rollouts", features=rig_features(load_rig(sim_rig_config()), 30.0))
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        rc = main(["--home", str(home), "demo", "--headless", *TINY])
    return home, rc, buf.getvalue()


def test_demo_headless_end_to_end(demo_home):
    home, rc, out = demo_home
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
        assert len(rollouts) == 1 and rollouts[0].dataset == "rollouts-64x48-10fps"
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


def test_serve_cli_serves_the_tuned_checkpoint(demo_home, tmp_path):
    """`vla-studio serve` on the demo's checkpoint answers like the policy loaded in-process."""
    import os
    import signal
    import socket
    import subprocess
    import sys
    import time
    from pathlib import Path

    from finetune.server import RemotePolicy
    from recorder.errors import ModelError
    from studio.rollout.policy import load_local_policy

    home, rc, _ = demo_home
    assert rc == 0
    run = next((home / "runs").iterdir())
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    root = Path(__file__).resolve().parents[2]
    env = dict(os.environ, PYTHONPATH=str(root))
    proc = subprocess.Popen([sys.executable, "-X", "faulthandler", "-m", "studio.cli", "--home", str(home), "serve", "--checkpoint",
                             str(run), "--port", str(port), "--token", "tk", "--device", "cpu"],
                            stderr=subprocess.PIPE, text=True, env=env)
    try:
        remote = None
        deadline = time.monotonic() + 60
        while remote is None:
            try:
                remote = RemotePolicy(f"ws://127.0.0.1:{port}", token="tk", timeout=5)
            except ModelError:
                assert proc.poll() is None, proc.stderr.read()
                assert time.monotonic() < deadline
                time.sleep(0.5)
        with remote:
            local = load_local_policy(run, device="cpu")
            img = np.random.default_rng(1).integers(0, 255, (48, 64, 3), dtype=np.uint8)
            images = {c: img for c in local.camera_names}
            state = np.zeros(6, np.float32)
            out_r = remote.predict(images, state, "pick up the red cube")
            out_l = local.predict(images, state, "pick up the red cube")
            assert remote.chunk_size == local.chunk_size and remote.camera_names == local.camera_names
            np.testing.assert_allclose(out_r.actions, out_l.actions, atol=1e-4)
            assert remote.checkpoint_label.startswith(f"{run.name}/")
            from recorder.policy import Policy as RolloutPolicy

            assert isinstance(local, RolloutPolicy) and isinstance(remote, RolloutPolicy)
            assert local.checkpoint_dir is not None and remote.checkpoint_dir is None
    finally:
        proc.send_signal(signal.SIGINT)
        # Ctrl-C stops it cleanly; the bound only catches a hang (1.8 s on a quiet machine, over 20 s once on a
        # fresh CI clone with four test workers on two cores: the interpreter's teardown of torch, CPU-starved)
        try:
            rc = proc.wait(90)
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGABRT)  # faulthandler: every thread's stack, to see where it hangs
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
            pytest.fail(f"`vla-studio serve` did not stop on Ctrl-C: {proc.stderr.read()[-8000:]}")
        assert rc == 0


@pytest.mark.gui
def test_demo_window_shows_each_stage(qtbot, home, demo_home, monkeypatch):
    """The window shows recording, the loss curve and the rollout with overlays. To keep the test
    short the fine-tune stage replays the module's demo run (its metrics.jsonl) instead of training again."""
    import json

    from studio.commands.demo import _config
    from studio.demo.pipeline import DemoPipeline
    from studio.demo.window import DemoWindow

    run = next((demo_home[0] / "runs").iterdir())

    def replay_finetune(self):
        self.cb.on_stage("finetune", "replaying the fine-tune of the demo run")
        for line in (run / "metrics.jsonl").read_text().splitlines():
            ev = json.loads(line)
            if ev.get("event") == "train":
                self.result.final_loss = ev["loss"]
            self.cb.on_train_event(ev)
        self.result.checkpoint = run
        return run

    monkeypatch.setattr(DemoPipeline, "finetune", replay_finetune)

    class A:
        pass

    args = A()
    args.home, args.task, args.dataset, args.seed = home, "pick", "demo", 0
    args.demos, args.steps, args.rollouts, args.size = 1, 3, 1, "64x48"
    args.fps, args.episode_time, args.rollout_time = 10.0, 1.0, 1.5
    win = DemoWindow(_config(args))
    qtbot.addWidget(win)
    win.show()
    with qtbot.waitSignal(win.thread.completed, timeout=120000):
        win.start()
    assert win.error is None
    assert all(it.text().startswith("✓") for it in win.stage_items.values())
    assert win.rollout_ticks_shown > 0 and win.views["front"].frames_shown > 0
    assert len(win._losses) == 3
    assert "rollouts succeeded" in win.result_label.text()
    win.close()
