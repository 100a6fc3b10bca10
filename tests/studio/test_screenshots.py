"""The README's screenshots come from a script in the repo, run here into a tmp folder under Xvfb: each
tab of the real window, as real pictures (not blank, not all the same)."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from studio.screenshots import SHOTS

ROOT = Path(__file__).resolve().parents[2]
pytestmark = [pytest.mark.gui, pytest.mark.slow]


def _pixels(path: Path) -> np.ndarray:
    from PyQt6.QtGui import QImage

    img = QImage(str(path)).convertToFormat(QImage.Format.Format_RGB32)
    assert not img.isNull(), path
    ptr = img.constBits()
    ptr.setsize(img.sizeInBytes())
    bgra = np.frombuffer(ptr, np.uint8).reshape(img.height(), img.bytesPerLine() // 4, 4)[:, :img.width()]
    return bgra[..., 2::-1].copy()  # RGB


@pytest.mark.skipif(shutil.which("xvfb-run") is None, reason="needs xvfb-run (a virtual X display)")
def test_screenshot_script_takes_a_real_picture_of_each_tab(tmp_path, qapp):
    env = {k: v for k, v in os.environ.items() if k != "QT_QPA_PLATFORM"}  # a real X window, not offscreen
    env.update(MUJOCO_GL=env.get("MUJOCO_GL", "egl"), OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT))
    out = tmp_path / "shots"
    proc = subprocess.run(["xvfb-run", "-a", "-s", "-screen 0 1600x1000x24", sys.executable, "-m", "studio.screenshots",
                           "--out", str(out), "--home", str(tmp_path / "home"), "--steps", "6"],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=420)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    assert "platform xcb; grabbed from: " + ", ".join(["screen"] * len(SHOTS)) in proc.stdout
    digests = set()
    for name in SHOTS:
        px = _pixels(out / f"{name}.png")
        h, w = px.shape[:2]
        assert w >= 1200 and h >= 750, (name, w, h)
        assert px.std() > 20, name  # not a blank picture
        colors = len(np.unique(px.reshape(-1, 3)[:: 7], axis=0))
        assert colors > 200, (name, colors)  # widgets, text, camera pictures
        digests.add(hashlib.sha256(px.tobytes()).hexdigest())
    assert len(digests) == len(SHOTS)  # every tab is a different picture
    # the live previews (right of the controls column) show the sim's cameras: its red cube is there
    live = _pixels(out / "record.png").astype(int)
    live = live[:, live.shape[1] * 2 // 5:]
    red = (live[..., 0] > 150) & (live[..., 1] < 70) & (live[..., 2] < 70)
    assert red.sum() > 30
