"""Parity with timm (where timm imports) and the CUDA-graph fast paths (on a GPU)."""

import numpy as np
import pytest
import torch

from finetune.models import load_vla


def _timm_tower(timm_id: str):
    timm = pytest.importorskip("timm")
    # exactly as Prismatic builds its towers (act_layer=None is dropped by create_model)
    m = timm.create_model(timm_id, pretrained=False, num_classes=0, img_size=224, act_layer=None)
    return m.eval()


@pytest.mark.parametrize("timm_id", ["vit_large_patch14_reg4_dinov2.lvd142m", "vit_so400m_patch14_siglip_224"])
def test_vit_features_match_timm_get_intermediate_layers(timm_id):
    from finetune.models.vit import TIMM_VIT_CONFIGS, VisionTransformer

    ref = _timm_tower(timm_id)
    dev = "cuda" if torch.cuda.is_available() else "cpu"
    torch.manual_seed(0)
    with torch.no_grad():
        for p in ref.parameters():  # non-trivial LayerScale / norms
            p.add_(torch.randn_like(p) * 0.02)
    # Prismatic's LayerScale patch: gamma -> scale_factor
    sd = {k.replace(".gamma", ".scale_factor"): v for k, v in ref.state_dict().items()}
    ours = VisionTransformer(TIMM_VIT_CONFIGS[timm_id])
    ours.load_state_dict(sd, strict=True)
    ref, ours = ref.to(dev), ours.to(dev).eval()
    x = torch.randn(2, 3, 224, 224, device=dev)
    with torch.no_grad():
        want = ref.get_intermediate_layers(x, n={len(ref.blocks) - 2})[0]
        got = ours(x)
    assert got.shape == want.shape == (2, 256, ours.embed_dim)
    assert torch.allclose(got, want, atol=1e-4, rtol=1e-4), (got - want).abs().max()


@pytest.mark.gpu
@pytest.mark.parametrize("head", ["tokens", "chunk"])
def test_cuda_graph_predictions_equal_eager(head):
    vla = load_vla("tiny", device="cuda", dtype=torch.float32, action_head=head, chunk_size=4, action_dim=6)
    img = np.random.default_rng(0).integers(0, 255, (240, 320, 3), dtype=np.uint8)
    batch = vla.collate([vla.prepare([img], "pick up the red cube", None)])
    eager, conf_e = vla.predict(batch)
    vla.use_cuda_graphs = True
    first, _ = vla.predict(batch)  # captures
    again, conf_g = vla.predict(batch)  # replays
    assert torch.equal(eager, first) and torch.equal(eager, again)
    if head == "tokens":
        ref, _ = vla.predict(batch, reference=True)
        assert torch.equal(eager, ref)
        assert torch.allclose(conf_e, conf_g)
    img2 = np.random.default_rng(1).integers(0, 255, (240, 320, 3), dtype=np.uint8)
    b2 = vla.collate([vla.prepare([img2], "pick up the red cube", None)])
    vla.use_cuda_graphs = False
    e2, _ = vla.predict(b2)
    vla.use_cuda_graphs = True
    g2, _ = vla.predict(b2)  # same graph, new inputs
    assert torch.equal(e2, g2)


@pytest.mark.gpu
def test_fused_compiled_decode_equals_transformers():
    vla = load_vla("tiny", device="cuda", dtype=torch.float32)
    img = np.random.default_rng(0).integers(0, 255, (240, 320, 3), dtype=np.uint8)
    batch = vla.collate([vla.prepare([img], "pick up the red cube", None)])
    ref, ref_conf = vla.predict(batch, reference=True)
    assert vla.fuse_for_inference() == len(vla.decoder.layers)
    vla.use_cuda_graphs = True
    vla.compile_decode = True
    got, conf = vla.predict(batch)
    assert vla.compile_decode  # did not fall back
    assert torch.equal(got, ref) and torch.allclose(conf, ref_conf, atol=1e-5)
