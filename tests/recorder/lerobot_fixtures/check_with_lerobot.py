# Acceptance as a LeRobot user (issue 18), run by hand with lerobot 0.6.1's own venv; pytest never runs it:
#
#   W=/work/wt/w18-venvs; V/bin/python tests/recorder/lerobot_fixtures/check_with_lerobot.py [WORKDIR]
#
# 1. records sim episodes with vla-studio's CLI (scripted expert, the built-in sim rig),
# 2. `vla-studio datasets export NAME --out DIR --codec av1` with no other option,
# 3. lerobot's own aggregate_datasets merges DIR with so101_lerobot_0_6_1 (recorded by lerobot 0.6.1 with
#    the same cameras and joints), and LeRobotDataset loads the merged result (frames decoded, delta_timestamps),
# 4. imports the koch fixture into a store, exports it again, and checks with lerobot that robot_type, feature
#    names, tasks, fps and episode order survived.
# VLA_PYTHON names the interpreter with vla-studio installed (default /work/main/.venv/bin/python); the
# checkout this file lies in goes first on its PYTHONPATH.
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch
from lerobot.datasets.aggregate import aggregate_datasets
from lerobot.datasets.lerobot_dataset import LeRobotDataset, LeRobotDatasetMetadata

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[2]
VLA_PYTHON = os.environ.get("VLA_PYTHON", "/work/main/.venv/bin/python")


def vla(home: Path, *args: str) -> str:
    env = dict(os.environ, PYTHONPATH=str(REPO), MUJOCO_GL=os.environ.get("MUJOCO_GL", "egl"))
    cmd = [VLA_PYTHON, "-m", "studio.cli", "--home", str(home), *args]
    res = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if res.returncode != 0:
        sys.exit(f"FAILED: {' '.join(args)}\n{res.stdout}\n{res.stderr}")
    print(f"$ vla-studio {' '.join(args)}\n{res.stdout.strip()}")
    return res.stdout


def main() -> None:
    work = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(tempfile.mkdtemp(prefix="lerobot_check_"))
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    home = work / "home"

    # 1-2: record in vla-studio, export with --codec av1 only
    vla(home, "record", "--rig", "sim", "--dataset", "sim_pick", "--scripted", "--episodes", "2",
        "--episode-time", "12", "--seed", "3")
    ours = work / "sim_pick_lerobot"
    vla(home, "datasets", "export", "sim_pick", "--out", str(ours), "--codec", "av1")

    # 3: lerobot merges it with its own SO-101 recording and loads the result
    theirs = HERE / "so101_lerobot_0_6_1"
    merged = work / "merged"
    m_ours, m_theirs = LeRobotDatasetMetadata("local/ours", root=ours), LeRobotDatasetMetadata("local/so101",
                                                                                               root=theirs)
    print(f"ours: robot_type={m_ours.robot_type} fps={m_ours.fps} episodes={m_ours.total_episodes} "
          f"frames={m_ours.total_frames}; theirs: robot_type={m_theirs.robot_type} fps={m_theirs.fps} "
          f"episodes={m_theirs.total_episodes}")
    aggregate_datasets(["local/ours", "local/so101"], "local/merged", roots=[ours, theirs], aggr_root=merged)
    ds = LeRobotDataset("local/merged", root=merged,
                        delta_timestamps={"action": [0.0, 1 / 30, 2 / 30], "observation.images.front": [0.0]})
    assert ds.num_episodes == m_ours.total_episodes + m_theirs.total_episodes, ds.num_episodes
    assert ds.num_frames == m_ours.total_frames + m_theirs.total_frames, ds.num_frames
    first, last = ds[0], ds[len(ds) - 1]
    for item in (first, last):
        assert tuple(item["observation.images.front"].shape[-3:]) == (3, 240, 320), item["observation.images.front"].shape
        assert item["action"].shape == (3, 6)
    tasks = sorted(set(ds.meta.tasks.index))
    # our frames decode in the merged set as they were stored (state bit-exact)
    ours_ds = LeRobotDataset("local/ours", root=ours)
    for i in (0, len(ours_ds) - 1):
        assert torch.equal(ours_ds[i]["observation.state"], ds[i]["observation.state"])
        diff = (ours_ds[i]["observation.images.wrist"] - ds[i]["observation.images.wrist"]).abs().max().item()
        assert diff < 1e-6, diff
    print(f"merged: {ds.num_episodes} episodes, {ds.num_frames} frames, tasks {tasks}, "
          f"robot_type {ds.meta.robot_type}; LeRobotDataset loads it (delta_timestamps ok)")

    # 4: a lerobot koch dataset comes in and goes out without loss of its metadata
    koch = HERE / "koch_lerobot_0_6_1"
    home2 = work / "home2"
    vla(home2, "datasets", "import", str(koch), "--dataset", "koch")
    back = work / "koch_back"
    vla(home2, "datasets", "export", "koch", "--out", str(back), "--codec", "av1")
    a, b = LeRobotDatasetMetadata("local/koch", root=koch), LeRobotDatasetMetadata("local/back", root=back)
    assert (b.robot_type, b.fps) == (a.robot_type, a.fps), (b.robot_type, b.fps)
    for key in ("observation.state", "action", "observation.effort"):
        assert b.features[key] == a.features[key], (key, b.features[key])
    a_ds, b_ds = LeRobotDataset("local/koch", root=koch), LeRobotDataset("local/back", root=back)
    a_tasks = [a_ds.meta.tasks.index[int(a_ds[int(i)]["task_index"])] for i in a_ds.meta.episodes["dataset_from_index"]]
    b_tasks = [b_ds.meta.tasks.index[int(b_ds[int(i)]["task_index"])] for i in b_ds.meta.episodes["dataset_from_index"]]
    assert a_tasks == b_tasks, (a_tasks, b_tasks)
    for i in range(len(a_ds)):
        assert torch.equal(a_ds[i]["observation.state"], b_ds[i]["observation.state"])
    print(f"koch round trip: robot_type {b.robot_type}, fps {b.fps}, names "
          f"{b.features['observation.state']['names'][:2]}.., episode tasks {b_tasks}, state bit-exact")
    print(json.dumps({"ok": True, "work": str(work)}))


if __name__ == "__main__":
    np.set_printoptions(precision=3)
    main()
