"""Shared helpers for the store tests: smooth synthetic frames and a small episode recorder."""

from __future__ import annotations

import numpy as np

from recorder.store import CameraSpec, Store

H, W = 120, 160


def smooth_image(i: int, k: int = 0, h: int = H, w: int = W) -> np.ndarray:
    """A smooth moving gradient (codec-friendly) that differs per tick ``i`` and camera ``k``."""
    y, x = np.mgrid[0:h, 0:w]
    r = (x * 200 // w + 3 * i) % 256
    g = (y * 200 // h + 2 * i + 40 * k) % 256
    b = np.full_like(r, (60 + 4 * i + 30 * k) % 256)
    return np.dstack([r, g, b]).astype(np.uint8)


def state(i: int) -> np.ndarray:
    return (np.arange(6, dtype=np.float32) * 1.5 + i * 0.25).astype(np.float32)


def action(i: int) -> np.ndarray:
    return (np.arange(6, dtype=np.float32) * -0.5 + i * 0.125 + 0.1).astype(np.float32)


CAMERAS = {"front": CameraSpec(width=W, height=H), "wrist": CameraSpec(width=W, height=H)}
LOWDIM = {"observation.state": (6,), "action": (6,)}


def record(
    store: Store,
    n: int = 12,
    dataset: str = "demo",
    task: str = "pick up the red cube",
    success: bool | None = True,
    source: str = "teleop",
    tags=(),
    cameras=None,
    **kw,
):
    cams = cameras or CAMERAS
    w = store.begin_episode(
        dataset=dataset,
        task=task,
        fps=30.0,
        rig={"robot": "sim"},
        source=source,
        cameras=cams,
        lowdim=LOWDIM,
        tags=tags,
        **kw,
    )
    for i in range(n):
        w.add_tick(
            t=100.0 + i / 30,
            frames={c: smooth_image(i, k) for k, c in enumerate(cams)},
            timestamps={c: 100.0 + i / 30 - 0.01 for c in cams},
            values={"observation.state": state(i), "action": action(i)},
        )
    return w.finish(success=success)


def drop_index_row(home, episode_id: int) -> None:
    """Delete an episode's index row behind the store's back (its folder stays: an orphan)."""
    import sqlite3

    con = sqlite3.connect(home / "index.sqlite")
    con.execute("PRAGMA foreign_keys=ON")
    con.execute("DELETE FROM episodes WHERE id = ?", (episode_id,))
    con.commit()
    con.close()
