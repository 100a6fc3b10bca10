"""A small OpenVLA-layout model for the sim-learning benchmark: the tiny model of finetune.models.tiny scaled up.

Same architecture and checkpoint layout as ``build_tiny_openvla`` (fused DINO+SigLIP towers, projector, Llama
decoder), only wider, deeper and at a larger input size, written with the same deterministic random init.
"""

from __future__ import annotations

import copy
from pathlib import Path

# (image px, vision width, vision depth, vision heads, llm hidden, llm layers, llm heads)
SIZES = {
    "tiny": (56, 32, 3, 2, 64, 2, 4),
    "small": (112, 128, 4, 4, 256, 4, 8),
    "base": (112, 192, 6, 6, 384, 6, 8),
}


def small_config(size: str = "small") -> dict:
    from finetune.models.tiny import tiny_config

    img, vw, vd, vh, hid, layers, heads = SIZES[size]
    cfg = copy.deepcopy(tiny_config())
    cfg["image_sizes"] = [img, img]
    dino, siglip = cfg["vla_studio"]["vit_configs"]
    for vit in (dino, siglip):
        vit.update(img_size=img, embed_dim=vw, depth=vd, num_heads=vh, mlp_hidden=4 * vw)
    tc = cfg["text_config"]
    tc.update(hidden_size=hid, intermediate_size=2 * hid, num_hidden_layers=layers, num_attention_heads=heads,
              num_key_value_heads=heads)
    cfg["vla_studio"]["sim_learning_size"] = size
    return cfg


def build_small_openvla(out_dir: str | Path, size: str = "small", seed: int = 0) -> Path:
    """Write config.json + model.safetensors + tokenizer of the scaled tiny model (random init) to ``out_dir``."""
    from finetune.models.tiny import write_random_openvla

    out = Path(out_dir)
    if (out / "model.safetensors").exists() and (out / "config.json").exists():
        return out
    return write_random_openvla(out, small_config(size), seed=seed)


def count_params(model_dir: str | Path) -> int:
    from safetensors import safe_open

    n = 0
    with safe_open(str(Path(model_dir) / "model.safetensors"), framework="pt") as f:
        for k in f.keys():
            n += _prod(f.get_slice(k).get_shape())
    return n


def _prod(shape) -> int:
    p = 1
    for s in shape:
        p *= int(s)
    return p


def prepare_small_model(work: str | Path, size: str, *, chunk: int, action_dim: int, n_images: int,
                        state_dim: int, action_head: str = "chunk") -> tuple[Path, str]:
    """Write the scaled model under ``work`` and list its LoRA targets: every linear layer, the vision towers
    included (a random-init base has no features to keep). Returns (model folder, comma-separated targets)."""
    from finetune.models import load_vla

    model_dir = Path(work) / f"model-{size}"
    build_small_openvla(model_dir, size)
    probe = load_vla(str(model_dir), device="cpu", action_head=action_head, chunk_size=chunk, action_dim=action_dim,
                     n_images=n_images, state_dim=state_dim)
    return model_dir, ",".join(probe.lora_target_modules(include_vision=True))
