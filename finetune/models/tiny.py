"""The tiny OpenVLA: same architecture and state-dict layout as openvla-7b, random init, ~1 MB.

``build_tiny_openvla(out_dir, seed=0)`` writes config.json + model.safetensors in the published layout and an
offline Llama-style tokenizer (a byte-fallback BPE over single characters built with ``tokenizers``; no
download). Deterministic: the same seed writes the same bytes.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path

import torch

__all__ = ["build_tiny_openvla", "build_tiny_tokenizer", "tiny_config", "tiny_dir", "tiny_version"]

TINY_IMAGE = 56  # 4x4 patches of 14 px: short sequences for CPU tests
BASE_VOCAB = 640  # tokenizer vocabulary (the last 256 ids, all unused fillers, carry the action bins)
PAD_MULTIPLE = 64


def build_tiny_tokenizer(out_dir: Path, base_vocab: int = BASE_VOCAB) -> None:
    from tokenizers import AddedToken, Tokenizer, decoders, models, normalizers, processors

    vocab = {"<unk>": 0, "<s>": 1, "</s>": 2}
    for b in range(256):
        vocab[f"<0x{b:02X}>"] = len(vocab)
    vocab["\u2581"] = len(vocab)
    for c in range(33, 127):
        vocab[chr(c)] = len(vocab)
    while len(vocab) < base_vocab:
        vocab[f"<unused_{len(vocab)}>"] = len(vocab)
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[], unk_token="<unk>", byte_fallback=True, fuse_unk=True))
    tok.normalizer = normalizers.Sequence([normalizers.Prepend("\u2581"), normalizers.Replace(" ", "\u2581")])
    tok.decoder = decoders.Sequence(
        [decoders.Replace("\u2581", " "), decoders.ByteFallback(), decoders.Fuse(), decoders.Strip(" ", 1, 0)])
    tok.post_processor = processors.TemplateProcessing(
        single="<s> $A", pair="<s> $A <s> $B", special_tokens=[("<s>", 1)])
    tok.add_special_tokens([AddedToken(t, special=True) for t in ("<unk>", "<s>", "</s>", "<PAD>")])
    tok.save(str(out_dir / "tokenizer.json"))
    (out_dir / "tokenizer_config.json").write_text(json.dumps({
        "tokenizer_class": "LlamaTokenizer", "bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>",
        "pad_token": "<PAD>", "add_bos_token": True, "add_eos_token": False, "legacy": False,
        "model_max_length": 2048, "padding_side": "right",
    }, indent=2))
    (out_dir / "special_tokens_map.json").write_text(json.dumps(
        {"bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>", "pad_token": "<PAD>"}, indent=2))


def tiny_config() -> dict:
    vocab = ((BASE_VOCAB + 1 + PAD_MULTIPLE - 1) // PAD_MULTIPLE) * PAD_MULTIPLE  # 641 -> 704, as 32001 -> 32064
    dino = dict(img_size=TINY_IMAGE, patch_size=14, embed_dim=32, depth=3, num_heads=2, mlp_hidden=64,
                class_token=True, reg_tokens=4, no_embed_class=True, init_values=1e-5, global_pool="token",
                act="gelu", eps=1e-6, mean=[0.485, 0.456, 0.406], std=[0.229, 0.224, 0.225])
    siglip = dict(img_size=TINY_IMAGE, patch_size=14, embed_dim=48, depth=3, num_heads=2, mlp_hidden=96,
                  class_token=False, reg_tokens=0, no_embed_class=False, init_values=None, global_pool="map",
                  act="gelu", eps=1e-6, mean=[0.5, 0.5, 0.5], std=[0.5, 0.5, 0.5])
    return {
        "architectures": ["OpenVLAForActionPrediction"],
        "model_type": "openvla",
        "vision_backbone_id": "dinosiglip-vit-so-224px",
        "llm_backbone_id": "llama2-7b-pure",
        "arch_specifier": "no-align+fused-gelu-mlp",
        "use_fused_vision_backbone": True,
        "image_resize_strategy": "resize-naive",
        "image_sizes": [TINY_IMAGE, TINY_IMAGE],
        "timm_model_ids": ["vit_large_patch14_reg4_dinov2.lvd142m", "vit_so400m_patch14_siglip_224"],
        "timm_override_act_layers": [None, None],
        "llm_max_length": 2048,
        "n_action_bins": 256,
        "norm_stats": None,
        "output_projector_states": False,
        "pad_to_multiple_of": PAD_MULTIPLE,
        "pad_token_id": BASE_VOCAB,
        "text_config": {
            "model_type": "llama", "vocab_size": vocab, "hidden_size": 64, "intermediate_size": 128,
            "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 4,
            "max_position_embeddings": 2048, "rms_norm_eps": 1e-6, "tie_word_embeddings": False,
            "pad_token_id": BASE_VOCAB, "bos_token_id": 1, "eos_token_id": 2,
        },
        "torch_dtype": "float32",
        # our own model: the fast cv2 image path (finetune.data.prepare_image), not a published processor's
        "vla_studio": {"tiny": True, "vit_configs": [dino, siglip], "image_pipeline": "fast"},
    }


@torch.no_grad()
def init_random_(model: torch.nn.Module, seed: int = 0, std: float = 0.02) -> None:
    """Deterministic init, device-side: normal(0, std) matrices (lm_head: 1/sqrt(hidden)), ones for norm
    weights, zeros for biases, LayerScale at 1e-5 (its timm init)."""
    gen = torch.Generator(device=next(model.parameters()).device).manual_seed(seed)
    for name, p in model.named_parameters():
        if name.endswith("scale_factor"):
            p.fill_(1e-5)
        elif p.ndim == 1 and ("norm" in name or name.endswith("layernorm.weight")):
            p.fill_(1.0 if name.endswith("weight") else 0.0)
        elif p.ndim == 1:
            p.zero_()
        elif name.endswith("lm_head.weight"):
            # wide enough that LoRA can move the logits: |h| ~ sqrt(hidden) after the final RMSNorm
            p.normal_(0.0, p.shape[1] ** -0.5, generator=gen)
        else:
            p.normal_(0.0, std, generator=gen)


def write_random_openvla(out_dir: str | Path, cfg: dict, *, seed: int = 0) -> Path:
    """Write a random-init OpenVLA of config ``cfg`` in the published layout (config.json + safetensors +
    our offline tokenizer); deterministic per seed. The tiny model and benchmark-sized variants use it."""
    from ..models.openvla import OpenVLA
    from .loader import load_tokenizer

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    build_tiny_tokenizer(out)
    tok = load_tokenizer(out)
    torch_state = torch.random.get_rng_state()
    try:
        torch.manual_seed(seed)
        model = OpenVLA(cfg, tok)
    finally:
        torch.random.set_rng_state(torch_state)
    init_random_(model, seed)
    model.save_pretrained(out)
    # save_pretrained adds our head keys to "vla_studio"; the base checkpoint stays head-neutral
    config = json.loads((out / "config.json").read_text())
    config["vla_studio"] = cfg["vla_studio"]
    (out / "config.json").write_text(json.dumps(config, indent=2))
    return out


def build_tiny_openvla(out_dir: str | Path, *, seed: int = 0) -> Path:
    return write_random_openvla(out_dir, tiny_config(), seed=seed)


TINY_BUILDER_VERSION = "3"  # bump when build_tiny_openvla / init_random_ / the tokenizer builder change


def tiny_version() -> str:
    """The cache key of the tiny checkpoint: the builder version plus a digest of the architecture config and
    the tokenizer size, so a changed config never loads a stale cached folder."""
    blob = json.dumps({"builder": TINY_BUILDER_VERSION, "config": tiny_config(), "vocab": BASE_VOCAB},
                      sort_keys=True).encode()
    return f"v{TINY_BUILDER_VERSION}-{hashlib.sha1(blob).hexdigest()[:10]}"


def tiny_cache_root() -> Path:
    return Path(os.environ.get("VLA_STUDIO_CACHE") or Path(tempfile.gettempdir()) / "vla-studio-cache")


def tiny_dir(seed: int = 0) -> Path:
    """The tiny checkpoint of ``seed``, built once into the cache (``VLA_STUDIO_CACHE`` or the temp dir) under a
    folder keyed by :func:`tiny_version`; later calls (any process) only check that the folder is there.

    Where the time of ``load_vla("tiny")`` goes (2-core machine, idle): building the folder ~25 ms, loading it
    ~25 ms; the rest of the ~4 s (8 s under load) a fresh process needs is importing torch (~1.2-1.5 s) and
    transformers' Llama modelling (~2.5 s: it pulls in torch._dynamo, torch.distributed.tensor, sympy, jinja2),
    paid once per process whatever the model. Meta-device construction costs nothing measurable here."""
    root = tiny_cache_root()
    d = root / f"tiny-openvla-{tiny_version()}-seed{seed}"
    if not (d / "model.safetensors").exists() or not (d / "config.json").exists():
        root.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=".tiny-", dir=str(root)))
        build_tiny_openvla(tmp, seed=seed)
        try:
            os.replace(tmp, d)
        except OSError:  # another process won the race
            import shutil

            shutil.rmtree(tmp, ignore_errors=True)
    return d


def openvla_7b_config() -> dict:
    """openvla/openvla-7b's config.json architecture fields (no norm_stats)."""
    return {
        "architectures": ["OpenVLAForActionPrediction"], "model_type": "openvla",
        "vision_backbone_id": "dinosiglip-vit-so-224px", "llm_backbone_id": "llama2-7b-pure",
        "arch_specifier": "no-align+fused-gelu-mlp", "use_fused_vision_backbone": True,
        "image_resize_strategy": "resize-naive", "image_sizes": [224, 224],
        "timm_model_ids": ["vit_large_patch14_reg4_dinov2.lvd142m", "vit_so400m_patch14_siglip_224"],
        "timm_override_act_layers": [None, None], "llm_max_length": 2048, "n_action_bins": 256,
        "norm_stats": None, "pad_to_multiple_of": 64, "pad_token_id": 32000,
        "text_config": {"model_type": "llama", "pad_token_id": 32000, "torch_dtype": "bfloat16", "vocab_size": 32064},
    }


def build_random_openvla(size: str = "7b", *, device="cuda", dtype=torch.bfloat16, seed: int = 0, **head_kw):
    """An OpenVLA of the real architecture with random weights, materialised directly on ``device`` (meta
    construction, no CPU copy, no slow init): for memory and speed benchmarks. ``size``: "7b" or "tiny"."""
    from .loader import _init_head, build_openvla_empty, load_tokenizer

    tok_dir = Path(tempfile.mkdtemp(prefix="vla-tok-"))
    if size == "7b":
        build_tiny_tokenizer(tok_dir, base_vocab=32000)
        cfg = openvla_7b_config()
    elif size == "tiny":
        build_tiny_tokenizer(tok_dir)
        cfg = tiny_config()
    else:
        raise ValueError(f"size must be '7b' or 'tiny', got {size!r}")
    tok = load_tokenizer(tok_dir)
    model = build_openvla_empty(cfg, tok, torch.device(device), dtype, **head_kw)
    init_random_(model, seed)
    if model.chunk_head is not None:
        _init_head(model, seed)
    if model.flow_head is not None:
        model.flow_head.reset_parameters(seed)
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model
