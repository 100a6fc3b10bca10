"""`vla-studio rollout`, the Rollout tab and the demo set a rollout up through one RolloutSession (issue 19, item 1)."""

import json

import pytest

from recorder.devices.rig import load_rig, sim_rig_config
from recorder.rollout import RolloutResult, RolloutSession
from recorder.session import rig_features
from recorder.store import Store
from studio.cli import main
from tests.rollout_doubles import FixedChunkPolicy

PUSH = "push the red cube onto the green square"


@pytest.fixture
def sessions(monkeypatch):
    """Every RolloutSession that is run, in order; running it stores nothing (the set-up is under test)."""
    seen = []

    def run(self):
        seen.append(self)
        self.result = RolloutResult(dataset=self.dataset)
        return self.result

    monkeypatch.setattr(RolloutSession, "run", run)
    return seen


def _taken_rollouts(home):
    """'rollouts' already holds another rig's episodes (64x48), so both must pick the same other name."""
    with Store.open(home) as store:
        store.get_or_create_dataset("rollouts", features=rig_features(
            load_rig(sim_rig_config(teleop="scripted", width=64, height=48, fps=15.0)), 15.0))


def _roll_out_in_the_tab(qtbot, home, policy, rig, *, episodes, max_seconds, execute=0):
    """One batch from the Rollout tab at 15 fps, the task left empty (the placeholder says: the sim task's)."""
    from studio.context import AppContext
    from studio.rollout.tab import RolloutTab

    ctx = AppContext(home=home)
    tab = RolloutTab(ctx)
    qtbot.addWidget(tab)
    try:
        tab.policy_object = policy
        tab.rig_spec = rig
        tab.task_edit.setText("")
        tab.fps_spin.setValue(15)
        tab.episodes_spin.setValue(episodes)
        tab.max_s_spin.setValue(max_seconds)
        tab.execute_spin.setValue(execute)
        tab.start_rollout()
        qtbot.waitUntil(lambda: tab.thread is not None and tab.thread.isFinished(), timeout=30000)
        qtbot.waitUntil(lambda: tab.start_button.isEnabled(), timeout=5000)
    finally:
        tab.shutdown()
        ctx.close()


@pytest.mark.gui
def test_the_cli_and_the_tab_set_up_the_same_rollout(qtbot, home, monkeypatch, sessions, capsys):
    import studio.rollout.policy

    _taken_rollouts(home)
    policy = FixedChunkPolicy(chunk_size=4, step=0.0, camera_names=("front",), checkpoint_id="double/3")
    monkeypatch.setattr(studio.rollout.policy, "open_policy", lambda *a, **k: policy)
    rc = main(["--home", str(home), "rollout", "--checkpoint", "double", "--rig", "sim:push", "--fps", "15",
               "--episodes", "2", "--max-seconds", "3", "--execute", "2"])
    out = capsys.readouterr().out
    assert rc == 0, out
    assert "into dataset 'rollouts-320x240-15fps'" in out and repr(PUSH) in out

    _roll_out_in_the_tab(qtbot, home, policy, "sim:push", episodes=2, max_seconds=3, execute=2)

    cli, gui = sessions
    for s in (cli, gui):
        assert s.dataset == "rollouts-320x240-15fps"  # not 'rollouts': that holds the 64x48 rig's episodes
        assert s.instruction == PUSH  # the rig's own task, nothing typed
        assert s.checkpoint == "double/3"
        assert (s.cfg.episodes, s.cfg.fps, s.cfg.max_seconds, s.cfg.chunk.execute) == (2, 15.0, 3.0, 2)
        assert s.safety.config.max_delta == 10.0
        assert s.cb.on_episode is not None  # each stored episode is reported (a line / a signal)
    assert gui.cb.on_tick is not None and gui.cb.on_status is not None  # the tab also draws every tick


def test_a_calibration_of_a_camera_the_rig_lacks_is_refused_by_the_cli_too(home, tmp_path, monkeypatch, sessions,
                                                                           capsys):
    import studio.rollout.policy

    monkeypatch.setattr(studio.rollout.policy, "open_policy", lambda *a, **k: FixedChunkPolicy())
    calib = tmp_path / "calib.json"
    calib.write_text(json.dumps({"top": {"intrinsics": [[1, 0, 0], [0, 1, 0], [0, 0, 1]],
                                         "world_to_camera": [[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]]}}))
    rc = main(["--home", str(home), "rollout", "--checkpoint", "double", "--rig", "sim", "--calibration", str(calib)])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and "camera(s) top that the rig does not have (front, wrist)" in err[0]
    assert sessions == []  # nothing moved


@pytest.mark.gui
def test_the_cli_and_the_tab_roll_out_from_the_same_first_seed(qtbot, home, monkeypatch):
    """The sim scene of a rollout is the one its reset seed lays out: the CLI and the tab start from the same."""
    import studio.rollout.policy
    from recorder.devices.sim.robot import SimRobot

    seeds = []
    real_reset = SimRobot.reset

    def reset(self, seed=None):
        seeds.append(seed)
        return real_reset(self, seed)

    monkeypatch.setattr(SimRobot, "reset", reset)
    policy = FixedChunkPolicy(chunk_size=2, step=0.0, camera_names=("front",))
    monkeypatch.setattr(studio.rollout.policy, "open_policy", lambda *a, **k: policy)
    assert main(["--home", str(home), "rollout", "--checkpoint", "double", "--rig", "sim", "--fps", "15",
                 "--episodes", "2", "--max-seconds", "0.2", "--sync"]) == 0
    cli, seeds[:] = list(seeds), []

    _roll_out_in_the_tab(qtbot, home, policy, "sim", episodes=2, max_seconds=0.2)
    gui = [s for s in seeds if s is not None]  # a reset without a seed is the rig's own (at connect)
    assert [s for s in cli if s is not None] == gui and len(gui) == 2
    assert gui[1] == gui[0] + 1
