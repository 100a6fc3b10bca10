"""The scripted experts solve their sim tasks (physics only, no rendering)."""

from __future__ import annotations

import pytest

from recorder.devices.configs import SimRobotConfig
from recorder.devices.sim import SimRobot, make_expert

FPS = 30
MAX_TICKS = 20 * FPS  # 20 s episodes


def run_expert(task: str, seed: int) -> bool:
    robot = SimRobot(SimRobotConfig(task=task, seed=seed, realtime=False))
    expert = make_expert(robot)
    with robot, expert:
        for _ in range(MAX_TICKS):
            action = expert.get_action(robot.get_observation())
            robot.send_action(action)
            robot.step_physics(1.0 / FPS)
            if robot.task.success():
                return True
    return False


@pytest.mark.parametrize("task", ["pick", "push"])
def test_scripted_expert_succeeds_on_most_seeds(task):
    results = [run_expert(task, seed) for seed in range(20)]
    assert sum(results) >= 18, (
        f"{task}: {sum(results)}/20 succeeded; failed seeds {[s for s, ok in enumerate(results) if not ok]}"
    )


def test_success_detectors_are_false_at_start():
    for task in ("pick", "push"):
        r = SimRobot(SimRobotConfig(task=task, seed=1, realtime=False))
        r.step_physics(0.5)
        assert not r.task.success()


@pytest.mark.slow
@pytest.mark.parametrize("task", ["pick", "push"])
def test_rig_with_scripted_teleop_solves_the_task_in_real_time_while_rendering(task):
    """The product path: a rig file with teleop = "scripted", physics following the clock, two cameras."""
    import time

    from recorder.devices.rig import load_rig, sim_rig_config

    rig = load_rig(sim_rig_config(task=task, teleop="scripted", width=160, height=120))
    with rig:
        rig.reset(seed=3)
        assert not rig.robot.task.success()
        next_t = time.monotonic()
        for _ in range(MAX_TICKS):
            frames = {name: cam.read_latest() for name, cam in rig.cameras.items()}
            rig.robot.send_action(rig.teleop.get_action(rig.robot.get_observation()))
            if rig.robot.task.success():
                break
            next_t += 1.0 / FPS
            time.sleep(max(0.0, next_t - time.monotonic()))
        assert rig.robot.task.success()
        assert all(f.image.shape == (120, 160, 3) for f in frames.values())
