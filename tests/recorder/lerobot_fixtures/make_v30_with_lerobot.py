# How tests/recorder/lerobot_fixtures/v30_lerobot_0_4_4 was made: lerobot 0.4.4 in a separate venv
# (torch CPU + datasets + pandas; torchvision stubbed). Not run by pytest; our code never imports lerobot.
import shutil

import numpy as np
from lerobot.datasets.lerobot_dataset import LeRobotDataset

root = "/tmp/lrmade"
shutil.rmtree(root, ignore_errors=True)
features = {
    "observation.state": {"dtype": "float32", "shape": (6,), "names": ["a","b","c","d","e","f"]},
    "action": {"dtype": "float32", "shape": (6,), "names": ["a","b","c","d","e","f"]},
    "observation.images.cam": {"dtype": "video", "shape": (48, 64, 3), "names": ["height", "width", "channels"]},
}
ds = LeRobotDataset.create("local/made", fps=10, root=root, features=features, use_videos=True)
for ep in range(2):
    for i in range(6 + ep):
        img = np.zeros((48, 64, 3), np.uint8)
        img[:] = ((i*53)%200+28, (i*97)%200+28, (i*29)%200+28)
        ds.add_frame({"observation.state": np.full(6, i + 10*ep, np.float32), "action": np.full(6, -i, np.float32),
                      "observation.images.cam": img, "task": f"task {ep}"})
    ds.save_episode()
ds.finalize()
print("ok")
