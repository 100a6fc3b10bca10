"""Load a Meta-World export of ours with lerobot's own LeRobotDataset (lerobot 0.6.1, Python 3.12 venv).

    .venv/bin/vla-studio record --rig metaworld:reach-v3,button-press-topdown-v3 --scripted --episodes 2 --dataset mw --size 64x64
    .venv/bin/vla-studio datasets export mw --out /tmp/mw-lerobot
    V/bin/python tests/recorder/lerobot_fixtures/check_metaworld_with_lerobot.py /tmp/mw-lerobot

Checks what a Meta-World user of LeRobot expects (lerobot/metaworld_mt50's names): one camera feature
``observation.image``, 4-D ``observation.state`` and ``action`` (names x, y, z, gripper), robot_type metaworld,
80 fps, one task string per episode.
"""

import sys

from lerobot.datasets.lerobot_dataset import LeRobotDataset

root = sys.argv[1]
ds = LeRobotDataset("local/metaworld", root=root)
meta = ds.meta
assert meta.robot_type == "metaworld" and meta.fps == 80, (meta.robot_type, meta.fps)
assert meta.camera_keys == ["observation.image"], meta.camera_keys
assert meta.features["action"]["names"] == ["x", "y", "z", "gripper"], meta.features["action"]
item = ds[0]
assert tuple(item["observation.image"].shape) == (3, 64, 64), item["observation.image"].shape
assert tuple(item["observation.state"].shape) == (4,) and tuple(item["action"].shape) == (4,)
last = ds[len(ds) - 1]
print("lerobot", meta.total_episodes, "episodes", len(ds), "frames; tasks:", item["task"], "|", last["task"])
