"""A store without PyAV: low-dim episodes are written and read; the first video says what to install."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]

SCRIPT = r"""
import sys
sys.modules["av"] = None  # as if PyAV were not installed
import numpy as np
from recorder.errors import ConfigError
from recorder.store import Store

with Store.open(sys.argv[1]) as store:
    w = store.begin_episode(dataset="d", task="push", fps=10, lowdim={"action": (2,)})
    for t in range(5):
        w.add_tick(t=t / 10, values={"action": np.full(2, t, np.float32)})
    ep = w.finish(success=True)
    with store.open_episode(ep.id) as r:
        print("actions", r.lowdim()["action"][:, 0].tolist())
    try:
        store.begin_episode(dataset="d", task="push", fps=10, cameras={"front": {"width": 32, "height": 24}})
    except ConfigError as err:
        print("video:", err)
"""


def test_lowdim_episodes_need_no_pyav_and_a_video_names_it(tmp_path):
    out = subprocess.run([sys.executable, "-c", SCRIPT, str(tmp_path / "home")], cwd=ROOT, capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    lines = out.stdout.splitlines()
    assert lines[0] == "actions [0.0, 1.0, 2.0, 3.0, 4.0]"
    assert lines[1].startswith("video: episode videos need PyAV") and lines[1].endswith("pip install av")
