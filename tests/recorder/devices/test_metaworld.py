"""The Meta-World rig: expert demonstrations into the store, LeRobot's camera protocol, seeded tasks, bad input."""

import io

import numpy as np
import pytest

from recorder.devices.metaworld import MT10, MT50, resolve_tasks
from recorder.devices.rig import load_rig, metaworld_rig_config, read_rig_config
from recorder.errors import ConfigError
from recorder.store import Store
from studio.cli import main
from studio.commands.record import run_record


def test_task_lists_match_the_benchmark():
    assert len(MT10) == 10 and len(MT50) == 50 and len(set(MT50)) == 50
    assert [len(resolve_tasks(g)) for g in ("easy", "medium", "hard", "very_hard")] == [28, 11, 6, 5]
    assert resolve_tasks("reach, pick-place-v3,mt10")[:3] == ["reach-v3", "pick-place-v3", "push-v3"]
    with pytest.raises(ConfigError, match="unknown Meta-World task 'pick-plaec'.*mt10"):
        resolve_tasks("pick-plaec")


@pytest.mark.slow
def test_expert_episodes_are_stored_with_their_shapes_tasks_and_success(home, tmp_path):
    rig = tmp_path / "mw.toml"
    rig.write_text('teleop = "scripted"\n[robot]\ntype = "metaworld"\ntasks = "reach-v3,button-press-topdown-v3"\n'
                   '[cameras.corner2]\ntype = "metaworld"\nwidth = 64\nheight = 64\nshadows = false\n')
    out = io.StringIO()
    rc = run_record(home, str(rig), "mw", None, 2, fps=None, scripted=True, seed=0, out=out)
    assert rc == 0, out.getvalue()
    with Store.open(home) as store:
        eps = store.episodes(dataset="mw")
        assert [e.task for e in eps] == ["Reach a goal position", "Press a button from the top"]
        assert all(e.success is True and e.source == "scripted" and e.status == "complete" for e in eps)
        assert eps[0].fps == 80.0  # Meta-World's control rate
        assert eps[0].rig["robot"]["type"] == "metaworld"
        assert [e.rig["robot_info"]["task"]["name"] for e in eps] == ["reach-v3", "button-press-topdown-v3"]
        for e in eps:
            assert 10 < e.num_frames < 500  # ends at the expert's first successful step
            with store.open_episode(e.id) as r:
                low = r.lowdim()
                assert low["observation.state"].shape == (e.num_frames, 4)
                assert low["action"].shape == (e.num_frames, 4)
                assert np.abs(low["action"]).max() <= 1.0
                # the state is the end effector's position in the Sawyer's workspace and the gripper opening
                assert 0.3 < low["observation.state"][:, 1].mean() < 1.0
                assert r.frames("corner2", [0, e.num_frames - 1]).shape == (2, 64, 64, 3)
    assert out.getvalue().count("label success") == 2

    # the LeRobot export uses the names of LeRobot's own Meta-World dataset (lerobot/metaworld_mt50)
    import json

    from recorder.interop.lerobot import export_lerobot

    with Store.open(home) as store:
        export_lerobot(store, tmp_path / "lr", store.episodes(dataset="mw"))
    info = json.loads((tmp_path / "lr" / "meta" / "info.json").read_text())
    feats = info["features"]
    assert info["robot_type"] == "metaworld" and info["fps"] == 80
    assert feats["observation.image"]["shape"] == [64, 64, 3] and "observation.images.corner2" not in feats
    assert feats["action"]["names"] == ["x", "y", "z", "gripper"] and feats["observation.state"]["shape"] == [4]
    assert info["total_episodes"] == 2 and info["total_tasks"] == 2


@pytest.mark.slow
def test_camera_frames_are_lerobots_after_every_step():
    """Same seed, same actions: our camera's frame equals LeRobot's env image (corner2 moved and turned)."""
    import metaworld

    task = "push-v3"
    rig = load_rig(metaworld_rig_config(task, teleop="scripted", width=48, height=48, seed=5))
    mt1 = metaworld.MT1(task, seed=42)
    env = mt1.train_classes[task](render_mode="rgb_array", camera_name="corner2", width=48, height=48)
    env.set_task(mt1.train_tasks[0])
    env.model.cam_pos[2] = [0.75, 0.075, 0.7]
    env.reset()
    env._freeze_rand_vec, env.seeded_rand_vec = False, True
    env.seed(5)
    env.reset(seed=5)
    try:
        rig.connect()
        cam = rig.cameras["corner2"]
        for _ in range(3):
            frame = cam.read_latest(timeout=30).image
            np.testing.assert_array_equal(frame, np.flip(env.render(), (0, 1)))
            obs = rig.robot.get_observation()
            action = rig.teleop.get_action(obs)
            rig.robot.send_action(action)
            env.step(action)
        assert not np.array_equal(frame, cam.read_latest(timeout=30).image)  # a new frame for the new step
    finally:
        rig.disconnect()
        env.close()


@pytest.mark.slow
def test_reset_seed_picks_the_task_and_the_object_positions():
    rig = load_rig(metaworld_rig_config("reach-v3,push-v3", teleop="none", width=32, height=32, seed=0))
    robot = rig.robot
    seen = {}
    for seed in (0, 1, 2, 4):
        robot.reset(seed)
        seen[seed] = (robot.task.name, robot.sim.obs[4:7].copy())
    assert [seen[s][0] for s in (0, 1, 2)] == ["reach-v3", "push-v3", "reach-v3"]
    assert not np.allclose(seen[0][1], seen[2][1])  # same task, new seed: the object moved
    robot.reset(2)
    np.testing.assert_allclose(robot.sim.obs[4:7], seen[2][1])  # same seed: same layout
    # the episode ends by itself after its steps, actions are held to [-1, 1]
    robot.connect()
    robot.sim.max_steps = 3
    for _ in range(5):
        sent = robot.send_action(np.array([3.0, 0, 0, -2.0]))
    assert robot.done and robot.steps == 3 and sent.tolist() == [1.0, 0.0, 0.0, -1.0]
    # the rollout's safety layer keeps a closing gripper (-1) and only holds actions to [-1, 1]
    from recorder.safety import SafetyLayer

    out, report = SafetyLayer.for_robot(robot, max_delta=0.01)(np.array([0.5, -2.0, 0.0, -1.0]),
                                                              robot.get_observation())
    assert out.tolist() == [0.5, -1.0, 0.0, -1.0] and report.rules == ("joint_limits",)


def test_bad_rig_files_name_the_problem(tmp_path, capsys):
    rig = tmp_path / "mw.toml"
    rig.write_text('teleop = "scripted"\n[robot]\ntype = "metaworld"\ntasks = "pick-plaec"\n')
    with pytest.raises(ConfigError, match="unknown Meta-World task 'pick-plaec'"):
        load_rig(read_rig_config(rig))
    rig.write_text('[robot]\ntype = "sim"\n[cameras.c]\ntype = "metaworld"\n')
    assert main(["record", "--rig", str(rig), "--dataset", "x", "--episodes", "1", "--task", "t"]) == 2
    err = capsys.readouterr().err
    assert "type 'metaworld' needs the Meta-World robot" in err and "Traceback" not in err


def test_smaller_shadow_maps_draw_nearly_lerobots_frames(tmp_path, capsys):
    """shadow_size = 1024 (4.6x the frame rate of 16 renderers on an H200): the frame stays within a fraction of a
    grey level of the default 4096 px shadows, unlike no shadows; the scene's own setting is left alone."""
    from recorder.devices.metaworld.env import SceneRenderer

    rig_file = tmp_path / "mw.toml"
    rig_file.write_text('teleop = "none"\n[robot]\ntype = "metaworld"\ntasks = "push-v3"\nseed = 5\n'
                        '[cameras.corner2]\ntype = "metaworld"\nwidth = 112\nheight = 112\nshadow_size = 1024\n')
    rig = load_rig(read_rig_config(rig_file))
    rig.connect()
    renderers = {}
    try:
        rig.robot.reset(5)
        sim = rig.robot.sim
        frame = rig.cameras["corner2"].read_latest(timeout=30).image.astype(int)
        renderers = {"4096": SceneRenderer(112, 112), "1024": SceneRenderer(112, 112, shadow_size=1024),
                     "none": SceneRenderer(112, 112, shadows=False)}
        with rig.robot._lock:
            drawn = {k: r.render(sim.model, sim.data, "corner2").astype(int) for k, r in renderers.items()}
        own = int(sim.model.vis.quality.shadowsize)
    finally:
        for r in renderers.values():
            r.close()
        rig.disconnect()
    np.testing.assert_array_equal(frame, drawn["1024"])  # the rig's camera draws with the file's shadow maps
    assert not np.array_equal(drawn["1024"], drawn["4096"])  # ... which are not the default ones
    assert np.abs(drawn["1024"] - drawn["4096"]).mean() < 0.5  # yet nearly LeRobot's frame
    assert np.abs(drawn["none"] - drawn["4096"]).mean() > 2.0  # no shadows is far off
    assert own == 4096

    rig_file.write_text(rig_file.read_text().replace("shadow_size = 1024", "shadow_size = 20"))
    assert main(["record", "--rig", str(rig_file), "--dataset", "x", "--episodes", "1", "--task", "t"]) == 2
    err = capsys.readouterr().err
    assert "shadow_size must be 0 (the scene's own) or 64..16384 px (got 20)" in err and "Traceback" not in err
