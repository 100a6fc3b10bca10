"""What the sim really showed: the cube's exact projection vs the stored frames (a test helper).

Production code never imports this module.
"""

from __future__ import annotations

import numpy as np


def red_centroid(img: np.ndarray) -> tuple[np.ndarray, int]:
    """Pixel centre (x, y) of the red cube's pixels in an RGB frame, and how many there are."""
    f = img.astype(np.int16)
    mask = (f[..., 0] > 120) & (f[..., 1] < 70) & (f[..., 2] < 70)
    ys, xs = np.nonzero(mask)
    if not len(xs):
        return np.array([np.nan, np.nan]), 0
    return np.array([xs.mean() + 0.5, ys.mean() + 0.5]), len(xs)


def assert_frames_show_the_cube(store, episode_ids, cubes_by_episode, robot, camera="front", tol_px=4.0):
    """For every stored frame i of each episode: the red pixels are where the sim's exact projection of
    the cube (its position at tick i) says, frame 0 included; no frame is flagged stale at 0."""
    assert len(episode_ids) == len(cubes_by_episode)
    for ep_id, cubes in zip(episode_ids, cubes_by_episode, strict=True):
        with store.open_episode(ep_id) as r:
            n = r.num_frames
            frames = r.frames(camera, range(n))
            stale = r.stale(camera)
            w, h = r.cameras[camera].width, r.cameras[camera].height
        assert len(cubes) >= n, f"episode {ep_id}: {len(cubes)} sim states for {n} frames"
        want = robot.project(np.asarray(cubes[:n]), camera, w, h)
        for i in range(n):
            got, count = red_centroid(frames[i])
            assert count >= 10, f"episode {ep_id} frame {i}: no cube visible"
            err = float(np.hypot(*(got - want[i])))
            assert err <= tol_px, (f"episode {ep_id} frame {i}: cube drawn at {got.round(1)}, the sim had it at "
                                   f"{want[i].round(1)} ({err:.1f} px off)")
        assert not stale[0], f"episode {ep_id}: frame 0 is flagged stale"


def note_cube_truth(session) -> dict[int, list]:
    """Wrap a running record session's tick callback so every recorded tick notes where the sim's cube really
    was: ``{episode index (saved so far): [cube position per tick]}``."""
    cubes: dict[int, list] = {}
    inner = session.cb.on_tick
    robot = session.rig.robot

    def on_tick(info, status):
        if info.recording:
            cubes.setdefault(status.saved, []).append(robot.cube_position())
        if inner is not None:
            inner(info, status)

    session.cb.on_tick = on_tick
    return cubes
