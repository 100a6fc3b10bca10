"""Export of a merged model folder: what the adapter checkpoint predicts, the merged folder predicts."""

from __future__ import annotations

import numpy as np
import pytest

from finetune.recipe import FinetuneRecipe, export_merged
from finetune.run_config import FinetuneConfig
from finetune.runtime import load_policy
from tests.finetune.synth_store import one_torch_thread, write_dataset  # noqa: F401


class _Quiet:
    def log_dict(self, payload, step=None):
        pass

    def close(self):
        pass


@pytest.fixture(scope="module")
def two_camera_home(tmp_path_factory):
    home = tmp_path_factory.mktemp("export") / "home"
    write_dataset(home, "duo", episodes=2, frames=6, cameras=("front", "wrist"))
    return home


def test_merged_export_of_a_two_camera_chunk_head_run_with_state_predicts_like_the_checkpoint(two_camera_home,
                                                                                             tmp_path):
    cfg = FinetuneConfig(dataset="duo", model="tiny", cameras=["front", "wrist"], use_state=True,
                         action_head="chunk", chunk_size=3, steps=3, batch_size=2, lr=3e-2, lora_rank=4,
                         eval_every=0, save_every=0, val_fraction=0.0, augment=False, seed=5)
    result = FinetuneRecipe(cfg, two_camera_home, run_id="duo-run", logger=_Quiet(),
                            install_signal_handlers=False).run()
    assert result.status == "done"
    out = export_merged(two_camera_home, "duo-run", tmp_path / "merged")

    adapter = load_policy(result.checkpoint, device="cpu", fast=False)
    merged = load_policy(out, device="cpu", fast=False)
    for policy in (adapter, merged):
        assert (policy.vla.n_images, policy.vla.state_dim, policy.chunk_size) == (2, 6, 3)
        assert policy.camera_names == ["front", "wrist"]
    rng = np.random.default_rng(1)
    for _ in range(3):
        images = {c: rng.integers(0, 255, (64, 64, 3), dtype=np.uint8) for c in ("front", "wrist")}
        state = rng.uniform(-30, 30, 6).astype(np.float32)
        a = adapter.predict(images, state, "pick up the red cube")
        b = merged.predict(images, state, "pick up the red cube")
        assert a.actions.shape == (3, 6)
        np.testing.assert_allclose(b.normalized, a.normalized, atol=1e-5)
    # the state and the second camera reach the exported head: changing either changes the actions
    base = merged.predict(images, state, "pick up the red cube").normalized
    moved = merged.predict(images, state + 25.0, "pick up the red cube").normalized
    other = dict(images, wrist=255 - images["wrist"])
    swapped = merged.predict(other, state, "pick up the red cube").normalized
    assert not np.allclose(base, moved, atol=1e-6) and not np.allclose(base, swapped, atol=1e-6)
