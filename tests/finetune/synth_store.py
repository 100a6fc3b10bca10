"""Synthetic datasets for fine-tune tests: episodes written with the real store writer, no sim.

Each tick shows a bright square whose position follows the first two action dimensions, so a model
can learn the mapping (image -> action) and a tiny one can overfit two episodes quickly.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest


def frame_for(action: np.ndarray, size: int, colour: int, cam_shift: int = 0) -> np.ndarray:
    img = np.full((size, size, 3), 30, np.uint8)
    img[..., 2] = colour
    cy = int((action[0] + 1) / 2 * (size - 12)) + 6
    cx = int((action[1] + 1) / 2 * (size - 12)) + 6
    cx = min(size - 7, max(6, cx + cam_shift))
    img[cy - 5:cy + 5, cx - 5:cx + 5] = (250, 250, 40)
    return img


def write_dataset(home: Path, name: str = "toy", episodes: int = 2, frames: int = 12, *, action_dim: int = 6,
                  size: int = 64, cameras=("front",), seed: int = 0, task: str = "pick up the red cube",
                  action_dims: list[int] | None = None) -> list[int]:
    """Write ``episodes`` complete episodes; returns their ids. ``action_dims`` gives one size per episode."""
    from recorder.store import CameraSpec, Store

    rng = np.random.default_rng(seed)
    ids = []
    store = Store.open(home)
    try:
        for e in range(episodes):
            dim = action_dims[e] if action_dims else action_dim
            w = store.begin_episode(dataset=name, task=task, fps=10.0, source="scripted",
                                    cameras={c: CameraSpec(width=size, height=size, queue_size=512) for c in cameras},
                                    lowdim={"observation.state": (dim,), "action": (dim,)})
            phase = rng.uniform(0, 2 * np.pi)
            for t in range(frames):
                a = np.sin(phase + 0.4 * t + np.arange(dim)).astype(np.float32)
                a_real = (a * 40.0).astype(np.float32)  # degrees-like units
                imgs = {c: frame_for(a, size, 40 + 60 * e, 3 * k) for k, c in enumerate(cameras)}
                w.add_tick(t=t / 10.0, frames=imgs, timestamps={c: t / 10.0 for c in cameras},
                           values={"observation.state": a_real * 0.9, "action": a_real})
            ids.append(w.finish(success=True).id)
    finally:
        store.close()
    return ids


@pytest.fixture(autouse=True)
def one_torch_thread():
    """Tiny models on a shared 2-core machine run several times faster on one intra-op thread."""
    try:
        import torch
    except ImportError:
        yield
        return
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


CHILD_ENV = {"OMP_NUM_THREADS": "1"}  # for training child processes started by tests
