"""The policy runtime on a tiny checkpoint laid out as the training recipe writes it."""

import json

import numpy as np
import pytest
import torch

from finetune.models import build_tiny_openvla, load_vla
from finetune.norm import make_norm_stats
from finetune.runtime import load_policy
from recorder.errors import ModelError


def _make_checkpoint(root, base, head: str, K: int):
    from peft import LoraConfig, get_peft_model

    torch.manual_seed(0)
    vla = load_vla(base, device="cpu", action_head=head, chunk_size=K, action_dim=6)
    model = get_peft_model(vla, LoraConfig(r=4, lora_alpha=8, target_modules=vla.lora_target_modules(),
                                           modules_to_save=vla.trainable_modules() or None, init_lora_weights=False))
    ckpt = root / "runs" / "r1" / "checkpoints" / "0000010"
    ckpt.mkdir(parents=True)
    model.save_pretrained(str(ckpt / "adapter"))
    rng = np.random.default_rng(0)
    acts = np.concatenate([rng.uniform(-120, 120, (200, 5)), rng.uniform(0, 100, (200, 1))], 1)
    stats = make_norm_stats("pick", acts, proprio=acts)
    (ckpt / "norm_stats.json").write_text(json.dumps(stats))
    info = {"base_model": str(base), "action_head": head, "chunk_size": vla.chunk_size, "action_dim": 6,
            "cameras": ["front"], "unnorm_key": "pick", "center_crop": True, "use_state": False}
    (ckpt / "config.json").write_text(json.dumps({"config": {"model": str(base)}, "model": info}))
    (ckpt.parent / "last").write_text("0000010\n")
    return ckpt, stats, model


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    return build_tiny_openvla(tmp_path_factory.mktemp("base"))


@pytest.mark.parametrize("head,K", [("tokens", 1), ("chunk", 4)])
def test_policy_predicts_real_units_from_a_training_checkpoint(tmp_path, base, head, K):
    ckpt, stats, trained = _make_checkpoint(tmp_path, base, head, K)
    policy = load_policy(ckpt.parent.parent)  # the run folder resolves through checkpoints/last
    assert (policy.action_dim, policy.chunk_size, policy.camera_names) == (6, K, ["front"])
    img = np.random.default_rng(3).integers(0, 255, (240, 320, 3), dtype=np.uint8)
    out = policy.predict({"front": img}, np.zeros(6, np.float32), "pick up the red cube")
    assert out.actions.shape == (K, 6) and out.actions.dtype == np.float32
    q01, q99 = np.array(stats["pick"]["action"]["q01"]), np.array(stats["pick"]["action"]["q99"])
    assert (out.actions >= q01 - 1e-3).all() and (out.actions <= q99 + 1e-3).all()
    assert out.latency_s > 0
    if head == "tokens":
        assert out.confidence.shape == (K,) and 0 < out.confidence.min() <= 1
    # the merged runtime model gives the adapter's own predictions (LoRA applied, not dropped), on exactly
    # the image the training pipeline makes of this frame at evaluation (same crop, same resize kernel)
    from finetune.data import prepare_image

    crop = prepare_image(img, policy.vla.image_size, None, augment=False, crop=True)
    batch = trained.collate([trained.prepare([crop], "pick up the red cube", None)])
    trained.eval()
    ref, _ = trained.predict(batch)
    assert np.allclose(out.normalized, ref[0].numpy(), atol=1e-4)
    base_vla = load_vla(base, device="cpu", action_head=head, chunk_size=K, action_dim=6)
    plain, _ = base_vla.predict(base_vla.collate([base_vla.prepare([crop], "pick up the red cube", None)]))
    assert not np.allclose(out.normalized, plain[0].numpy())


def test_policy_errors_are_actionable(tmp_path, base):
    ckpt, _, _ = _make_checkpoint(tmp_path, base, "tokens", 1)
    policy = load_policy(ckpt)
    with pytest.raises(ModelError, match="front"):
        policy.predict({"wrist": np.zeros((64, 64, 3), np.uint8)}, None, "pick")
    with pytest.raises(ModelError, match="no such checkpoint"):
        load_policy(tmp_path / "nothing")
    with pytest.raises(ModelError, match="norm_stats"):
        load_policy(base)  # a base model has no statistics for real units


@pytest.mark.gpu
@pytest.mark.parametrize("head,K", [("tokens", 1), ("chunk", 4)])
def test_policy_on_cuda_uses_the_fast_path_and_matches_cpu(tmp_path, base, head, K):
    ckpt, _, _ = _make_checkpoint(tmp_path, base, head, K)
    cpu = load_policy(ckpt, device="cpu")
    gpu = load_policy(ckpt, device="cuda", dtype=torch.float32)
    assert gpu.vla.use_cuda_graphs and gpu.vla.compile_decode
    img = np.random.default_rng(5).integers(0, 255, (240, 320, 3), dtype=np.uint8)
    want = cpu.predict({"front": img}, None, "pick up the red cube")
    first = gpu.predict({"front": img}, None, "pick up the red cube")  # compiles + captures
    again = gpu.predict({"front": img}, None, "pick up the red cube")  # replays
    assert np.allclose(first.normalized, want.normalized, atol=1e-4)
    assert np.allclose(again.normalized, want.normalized, atol=1e-4)
    assert again.latency_s < first.latency_s
