"""One loader builds base model + adapter for the runtime and the merged export: a checkpoint whose head
block lacks its chunk size is rebuilt with the run's (the runtime used to fall back to 8 and fail)."""

import json

import numpy as np

from finetune.checkpoint import load_trained_model
from finetune.runtime import load_policy
from tests.finetune.test_runtime import _make_checkpoint, base  # noqa: F401 - the tiny base model fixture


def test_a_chunk_checkpoint_without_its_chunk_size_loads_with_the_runs(tmp_path, base):  # noqa: F811
    ckpt, _, trained = _make_checkpoint(tmp_path, base, "chunk", 4)
    meta = json.loads((ckpt / "config.json").read_text())
    del meta["model"]["chunk_size"]  # written by an older vla-studio: only the run config has it
    meta["config"]["chunk_size"] = 4
    (ckpt / "config.json").write_text(json.dumps(meta))

    policy = load_policy(ckpt)
    assert policy.chunk_size == 4
    img = np.random.default_rng(3).integers(0, 255, (240, 320, 3), dtype=np.uint8)
    out = policy.predict({"front": img}, np.zeros(6, np.float32), "pick up the red cube")
    assert out.actions.shape == (4, 6)

    # the export's build of the same checkpoint is the same model: same shape, same predictions
    built = load_trained_model(ckpt, device="cpu", quantize="none")
    assert built.vla.chunk_size == 4 and built.unnorm_key == "pick"
    from finetune.data import prepare_image

    crop = prepare_image(img, policy.vla.image_size, None, augment=False, crop=True)
    batch = built.vla.collate([built.vla.prepare([crop], "pick up the red cube", None)])
    built.vla.eval()
    ref, _ = built.vla.predict(batch)
    assert np.allclose(out.normalized, ref[0].numpy(), atol=1e-4)
