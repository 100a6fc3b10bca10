"""The tiny OpenVLA on CPU: published layout, strict loading, both heads, save -> load, LoRA."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from finetune.models import build_tiny_openvla, load_vla
from recorder.errors import ModelError


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return build_tiny_openvla(tmp_path_factory.mktemp("tiny"), seed=0)


def _img(seed=0, shape=(240, 320, 3)):
    return np.random.default_rng(seed).integers(0, 255, shape, dtype=np.uint8)


def test_tiny_is_written_in_the_published_layout_and_is_deterministic(tiny, tmp_path):
    from safetensors import safe_open

    cfg = json.loads((tiny / "config.json").read_text())
    assert cfg["model_type"] == "openvla" and cfg["vision_backbone_id"] == "dinosiglip-vit-so-224px"
    assert cfg["text_config"]["vocab_size"] % 64 == 0
    with safe_open(str(tiny / "model.safetensors"), "pt") as f:
        keys = set(f.keys())
    for k in ("vision_backbone.featurizer.cls_token", "vision_backbone.featurizer.reg_token",
              "vision_backbone.featurizer.blocks.0.ls1.scale_factor", "vision_backbone.fused_featurizer.attn_pool.latent",
              "vision_backbone.fused_featurizer.blocks.2.mlp.fc2.weight", "projector.fc3.weight",
              "language_model.model.embed_tokens.weight", "language_model.lm_head.weight"):
        assert k in keys
    assert not any("gamma" in k for k in keys)
    again = build_tiny_openvla(tmp_path / "again", seed=0)
    assert (again / "model.safetensors").read_bytes() == (tiny / "model.safetensors").read_bytes()
    assert (tiny / "model.safetensors").stat().st_size < 8 * 1024**2


def test_strict_loading_rejects_extra_or_missing_keys(tiny, tmp_path):
    from safetensors.torch import load_file, save_file

    bad = tmp_path / "bad"
    bad.mkdir()
    for f in tiny.iterdir():
        (bad / f.name).write_bytes(f.read_bytes())
    sd = load_file(str(tiny / "model.safetensors"))
    sd["vision_backbone.featurizer.blocks.0.ls1.gamma"] = sd.pop("vision_backbone.featurizer.blocks.0.ls1.scale_factor")
    save_file(sd, str(bad / "model.safetensors"))
    with pytest.raises(ModelError, match="ls1"):
        load_vla(bad, device="cpu")
    with pytest.raises(ModelError, match="no such folder"):
        load_vla(tmp_path / "absent")
    with pytest.raises(ModelError, match="hub"):
        load_vla("nobody/not-a-model")  # offline here: a clear error, not a traceback


def test_token_head_predicts_and_fast_decode_equals_transformers(tiny):
    vla = load_vla(tiny, device="cpu")
    assert vla.action_head == "tokens" and vla.chunk_size == 1 and vla.action_dim == 7
    assert vla.image_size == 56
    batch = vla.collate([vla.prepare([_img()], "pick up the red cube", None)])
    # OpenVLA prompt format, ending with the empty-space token before the actions
    ids = batch["input_ids"][0].tolist()
    assert ids[0] == vla.bos_token_id and ids[-1] == vla.space_token_id
    assert vla.tokenizer.decode(ids[1:-1]).strip() == "In: What action should the robot take to pick up the red cube?\nOut:"
    acts, conf = vla.predict(batch)
    ref, ref_conf = vla.predict(batch, reference=True)
    assert acts.shape == (1, 1, 7) and conf.shape == (1, 1)
    assert torch.equal(acts, ref)
    assert torch.allclose(conf, ref_conf, atol=1e-5)
    assert acts.abs().max() <= 1


def test_a_batch_decodes_per_prompt_length_and_equals_each_row_alone(tiny, monkeypatch):
    # a validation batch (many rows, two instructions): one decode pass per prompt length, not one per row, and
    # each row's actions and confidence as if it were decoded alone (row order kept)
    vla = load_vla(tiny, device="cpu")
    texts = ["pick up the red cube", "push the red cube onto the green square"]
    samples = [vla.prepare([_img(i)], texts[i % 2], None) for i in range(5)]
    alone = [vla.predict(vla.collate([s])) for s in samples]
    calls = []
    decode = vla._decode_fn
    monkeypatch.setattr(vla, "_decode_fn", lambda p, ids, n: calls.append(p.shape[0]) or decode(p, ids, n))
    acts, conf = vla.predict(vla.collate(samples))
    assert sorted(calls) == [2, 3]
    assert torch.equal(acts, torch.cat([a for a, _ in alone]))
    assert torch.allclose(conf, torch.cat([c for _, c in alone]), atol=1e-5)


def test_training_forward_metrics_and_loss_falls_with_lora(tiny):
    from peft import LoraConfig, get_peft_model

    vla = load_vla(tiny, device="cpu", action_dim=6)
    targets = vla.lora_target_modules()
    assert any(t.startswith("projector.") for t in targets) and any(".q_proj" in t for t in targets)
    assert not any("lm_head" in t or t.startswith("vision_backbone") for t in targets)
    vla.checkpoint_layers = "all"
    model = get_peft_model(vla, LoraConfig(r=8, lora_alpha=16, target_modules=targets))
    rng = np.random.default_rng(1)
    samples = [vla.prepare([_img(i)], t, rng.uniform(-1, 1, (1, 6)).astype(np.float32))
               for i, t in enumerate(["pick the cube", "push the red cube onto the green square"])]
    batch = vla.collate(samples)
    assert batch["labels"].shape == batch["input_ids"].shape
    assert int((batch["labels"] != -100).sum()) == 2 * (6 + 1)  # action tokens + EOS
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=5e-3)
    model.train()
    first = None
    for _ in range(25):
        out = model(**batch)
        first = first if first is not None else out.loss.item()
        out.loss.backward()
        opt.step()
        opt.zero_grad()
    assert out.logits.shape[:2] == (2, 7)
    assert out.loss.item() < 0.5 * first
    assert float(out.action_accuracy) > 0.5 and float(out.l1) < 0.3


def test_chunk_head_predicts_K_by_D_and_save_load_gives_identical_actions(tiny, tmp_path):
    vla = load_vla(tiny, device="cpu", action_head="chunk", chunk_size=4, action_dim=6, state_dim=6)
    assert vla.trainable_modules() == ["chunk_head"]
    samples = [vla.prepare([_img(i)], "pick", np.zeros((4, 6), np.float32), state=np.ones(6, np.float32) * i)
               for i in range(2)]
    batch = vla.collate(samples)
    out = vla(**batch)
    assert out.actions.shape == (2, 4, 6) and out.loss is not None
    acts, conf = vla.predict(batch)
    assert acts.shape == (2, 4, 6) and conf is None
    assert not torch.equal(acts[0], acts[1])  # the state token changes the prediction
    vla.save_pretrained(tmp_path / "merged")
    back = load_vla(tmp_path / "merged", device="cpu")
    assert (back.action_head, back.chunk_size, back.action_dim, back.state_dim) == ("chunk", 4, 6, 6)
    acts2, _ = back.predict(back.collate(samples))
    assert torch.equal(acts, acts2)


def test_two_cameras_make_a_longer_sequence(tiny):
    one = load_vla(tiny, device="cpu")
    two = load_vla(tiny, device="cpu", n_images=2)
    b1 = one.collate([one.prepare([_img()], "pick", None)])
    b2 = two.collate([two.prepare([_img(), _img(1)], "pick", None)])
    e1, p1 = one._assemble(b1["pixel_values"], b1["input_ids"])
    e2, p2 = two._assemble(b2["pixel_values"], b2["input_ids"])
    assert p2 == 2 * p1 and e2.shape[1] == e1.shape[1] + p1
    with pytest.raises(ModelError, match="2 camera"):
        two.prepare([_img()], "pick", None)


def test_openvla_7b_architecture_matches_the_published_parameter_count(tiny):
    from finetune.models.loader import load_tokenizer
    from finetune.models.openvla import OpenVLA

    cfg = {"model_type": "openvla", "vision_backbone_id": "dinosiglip-vit-so-224px", "llm_backbone_id": "llama2-7b-pure",
           "pad_to_multiple_of": 64, "pad_token_id": 32000, "n_action_bins": 256,
           "text_config": {"model_type": "llama", "pad_token_id": 32000, "torch_dtype": "bfloat16", "vocab_size": 32064}}
    with torch.device("meta"):
        m = OpenVLA(cfg, load_tokenizer(tiny))
    assert sum(p.numel() for p in m.parameters()) == 7_541_237_184  # openvla/openvla-7b
    sd = m.state_dict()
    assert sd["vision_backbone.featurizer.pos_embed"].shape == (1, 256, 1024)
    assert sd["vision_backbone.fused_featurizer.pos_embed"].shape == (1, 256, 1152)
    assert sd["projector.fc1.weight"].shape == (8704, 2176)
    assert m.action_tokenizer.vocab_size == 32000


def tiny_idefics3(folder, llm: str = "llama"):
    """A tiny random Idefics3 (the SmolVLM family) whose LLM is ``llm`` (a transformers model_type), saved with
    our tiny tokenizer into ``folder``."""
    from transformers import AutoModelForImageTextToText, Idefics3Config

    from finetune.models.tiny import build_tiny_tokenizer

    text = dict(model_type=llm, vocab_size=704, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                num_attention_heads=4, num_key_value_heads=4, pad_token_id=640, tie_word_embeddings=False)
    if llm != "llama":
        text["head_dim"] = 16
    cfg = Idefics3Config(
        vision_config=dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
                           image_size=56, patch_size=14),
        text_config=text, scale_factor=2, image_token_id=600)
    torch.manual_seed(0)
    AutoModelForImageTextToText.from_config(cfg).save_pretrained(folder)
    build_tiny_tokenizer(folder)
    return folder


def test_generic_image_text_to_text_vlm_with_both_heads(tmp_path):
    """A tiny random Idefics3 (the SmolVLM family) through AutoModelForImageTextToText + our action heads."""
    tiny_idefics3(tmp_path / "vlm")
    black = np.zeros((240, 320, 3), np.uint8)  # an all-black frame is a real frame, not padding
    tok = load_vla(tmp_path / "vlm", device="cpu", action_dim=6)
    assert type(tok).__name__ == "GenericVLA" and tok.image_size == 56
    assert not any("vision_model" in t for t in tok.lora_target_modules())
    b = tok.collate([tok.prepare([black], "pick", np.zeros((1, 6), np.float32))])
    assert tok(**b).loss.item() > 0
    p = tok.collate([tok.prepare([black], "pick", None)])
    acts, conf = tok.predict(p)
    assert acts.shape == (1, 1, 6) and torch.equal(acts, tok.predict(p, reference=True)[0])
    chunk = load_vla(tmp_path / "vlm", device="cpu", action_head="chunk", chunk_size=2, action_dim=6)
    pc = chunk.collate([chunk.prepare([black], "pick", None)])
    a1, _ = chunk.predict(pc)
    chunk.save_pretrained(tmp_path / "out")
    back = load_vla(tmp_path / "out", device="cpu")
    assert back.action_head == "chunk" and torch.equal(a1, back.predict(back.collate([back.prepare([black], "pick", None)]))[0])


def test_tiny_is_built_once_per_seed_into_a_cache_keyed_by_its_version(tmp_path, monkeypatch):
    from finetune.models import tiny as tiny_mod

    monkeypatch.setenv("VLA_STUDIO_CACHE", str(tmp_path / "cache"))
    built = []
    real_build = tiny_mod.build_tiny_openvla

    def counting_build(out, *, seed=0):
        built.append(seed)
        return real_build(out, seed=seed)

    monkeypatch.setattr(tiny_mod, "build_tiny_openvla", counting_build)
    first = tiny_mod.tiny_dir(0)
    assert tiny_mod.tiny_version() in first.name and built == [0]
    vla = load_vla("tiny", device="cpu")  # a later load (any process) finds the folder: no rebuild
    assert tiny_mod.tiny_dir(0) == first and Path(vla.model_dir) == first and built == [0]
    assert tiny_mod.tiny_dir(1) != first and built == [0, 1]
    # a changed architecture gets a new key instead of loading the stale folder
    real_config = tiny_mod.tiny_config
    monkeypatch.setattr(tiny_mod, "tiny_config", lambda: {**real_config(), "llm_max_length": 1024})
    assert tiny_mod.tiny_dir(0) != first and built == [0, 1, 0]
