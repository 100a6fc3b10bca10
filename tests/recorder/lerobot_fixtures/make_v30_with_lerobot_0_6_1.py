# Makes the two lerobot 0.6.1 fixtures beside this file, with lerobot's own writer
# (LeRobotDataset.create / add_frame / save_episode / finalize). Not run by pytest; our code never imports lerobot.
#
#   PYENV_VERSION=3.12.1 python3.12 -m venv V && V/bin/pip install "lerobot[dataset]==0.6.1"
#   V/bin/python tests/recorder/lerobot_fixtures/make_v30_with_lerobot_0_6_1.py
#
# koch_lerobot_0_6_1: robot_type koch_follower, 15 fps, non-SO-101 feature names (state_j0..5, act_j0..5, an
#   extra 2-D observation.effort), two tasks over three episodes (task order B, A, B), an RGB camera "top" and a
#   depth camera "depth" (lerobot's depth path: is_depth_map, HEVC gray12le).
# so101_lerobot_0_6_1: what lerobot-record writes for an SO-101 follower with cameras "front" and "wrist" at
#   320x240, 30 fps (the shape of vla-studio's simulated rig), AV1, for the aggregate_datasets acceptance check.
import shutil
import sys
from pathlib import Path

import numpy as np
from lerobot.datasets.lerobot_dataset import LeRobotDataset

HERE = Path(__file__).resolve().parent


def pattern(i: int, w: int, h: int, offset: int = 0) -> np.ndarray:
    """A frame a decoder cannot fake: a colour per frame plus a bright square that moves one step per frame."""
    img = np.empty((h, w, 3), np.uint8)
    img[:] = ((i * 53 + offset) % 200 + 28, (i * 97 + 2 * offset) % 200 + 28, (i * 29 + 3 * offset) % 200 + 28)
    s = max(4, h // 6)
    x = (i * 3) % (w - s)
    img[h // 3:h // 3 + s, x:x + s] = 250
    return img


def make_koch(root: Path) -> None:
    w, h = 64, 48
    features = {
        "observation.state": {"dtype": "float32", "shape": (6,), "names": [f"state_j{i}" for i in range(6)]},
        "action": {"dtype": "float32", "shape": (6,), "names": [f"act_j{i}" for i in range(6)]},
        "observation.effort": {"dtype": "float32", "shape": (2,), "names": ["effort_a", "effort_b"]},
        "observation.images.top": {"dtype": "video", "shape": (h, w, 3), "names": ["height", "width", "channels"]},
        "observation.images.depth": {"dtype": "video", "shape": (h, w, 1), "names": ["height", "width", "channels"],
                                     "info": {"is_depth_map": True}},
    }
    ds = LeRobotDataset.create("local/koch_fixture", fps=15, root=root, features=features,
                               robot_type="koch_follower", use_videos=True)
    tasks = ["stack the blue block on the red block", "open the top drawer", "stack the blue block on the red block"]
    for ep, task in enumerate(tasks):
        for i in range(8 + 2 * ep):
            depth = np.full((h, w, 1), 400 + 50 * i + 100 * ep, np.uint16)  # millimetres
            ds.add_frame({
                "observation.state": (np.arange(6) + 100 * ep + i).astype(np.float32) * 0.5,
                "action": -(np.arange(6) + 100 * ep + i).astype(np.float32) * 0.25,
                "observation.effort": np.array([i, -i], np.float32) + ep,
                "observation.images.top": pattern(i + 20 * ep, w, h),
                "observation.images.depth": depth,
                "task": task,
            })
        ds.save_episode()
    ds.finalize()


def make_so101(root: Path) -> None:
    w, h = 320, 240
    joints = ["shoulder_pan", "shoulder_lift", "elbow_flex", "wrist_flex", "wrist_roll", "gripper"]
    names = [f"{j}.pos" for j in joints]
    features = {
        "observation.state": {"dtype": "float32", "shape": (6,), "names": names},
        "action": {"dtype": "float32", "shape": (6,), "names": names},
        "observation.images.front": {"dtype": "video", "shape": (h, w, 3), "names": ["height", "width", "channels"]},
        "observation.images.wrist": {"dtype": "video", "shape": (h, w, 3), "names": ["height", "width", "channels"]},
    }
    ds = LeRobotDataset.create("local/so101_fixture", fps=30, root=root, features=features,
                               robot_type="so101_follower", use_videos=True)
    rng = np.random.default_rng(0)
    for ep in range(2):
        for i in range(12):
            q = rng.uniform(-90, 90, 6).astype(np.float32)
            ds.add_frame({
                "observation.state": q, "action": q + 1.0,
                "observation.images.front": pattern(i + 7 * ep, w, h),
                "observation.images.wrist": pattern(i + 7 * ep, w, h, offset=101),
                "task": "pick up the red cube",
            })
        ds.save_episode()
    ds.finalize()


if __name__ == "__main__":
    which = sys.argv[1:] or ["koch", "so101"]
    for name, fn in (("koch", make_koch), ("so101", make_so101)):
        if name in which:
            root = HERE / f"{name}_lerobot_0_6_1"
            shutil.rmtree(root, ignore_errors=True)
            fn(root)
            print(f"wrote {root}")
