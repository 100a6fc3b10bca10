"""OpenVLA (Prismatic) natively: no trust_remote_code, the published state-dict keys, strict loading.

Published layout (``openvla/openvla-7b`` and its fine-tunes): ``config.json`` (``model_type: openvla``,
``vision_backbone_id``, ``llm_backbone_id``, ``text_config``, ``n_action_bins``, ``pad_to_multiple_of``,
``norm_stats``, ...) and ``model.safetensors`` or sharded ``model-0000X-of-0000N.safetensors`` +
``model.safetensors.index.json`` with keys::

    vision_backbone.featurizer.*          timm vit_large_patch14_reg4_dinov2 (LayerScale ``scale_factor``)
    vision_backbone.fused_featurizer.*    timm vit_so400m_patch14_siglip_224 (with ``attn_pool``)
    projector.fc1/fc2/fc3                 fused GELU MLP (fc1/fc2 without the fused tower)
    language_model.model.* / language_model.lm_head.weight   transformers LlamaForCausalLM

Our own additions go under ``"vla_studio"`` in config.json (action head, chunk size, tiny ViT sizes) and
``chunk_head.*`` in the safetensors; published loaders ignore neither of those silently, so merged exports of
chunk-head models are ours only.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import torch
from torch import nn

from recorder.errors import ModelError

from .vit import TIMM_VIT_CONFIGS, VisionTransformer, ViTConfig
from .vla import VLA

__all__ = ["OpenVLA", "PrismaticVisionBackbone", "PrismaticProjector", "BACKBONE_TO_TIMM"]

BACKBONE_TO_TIMM = {
    "dinov2-vit-l": ["vit_large_patch14_reg4_dinov2.lvd142m"],
    "siglip-vit-so400m": ["vit_so400m_patch14_siglip_224"],
    "dinosiglip-vit-so-224px": ["vit_large_patch14_reg4_dinov2.lvd142m", "vit_so400m_patch14_siglip_224"],
}


class PrismaticVisionBackbone(nn.Module):
    def __init__(self, cfgs: list[ViTConfig]):
        super().__init__()
        if not 1 <= len(cfgs) <= 2:
            raise ModelError("Prismatic vision backbones have one or two towers")
        self.use_fused_vision_backbone = len(cfgs) == 2
        self.featurizer = VisionTransformer(cfgs[0])
        self.fused_featurizer = VisionTransformer(cfgs[1]) if len(cfgs) == 2 else None
        self.embed_dim = sum(c.embed_dim for c in cfgs)
        self.cfgs = cfgs
        for i, c in enumerate(cfgs):
            self.register_buffer(f"_mean{i}", torch.tensor(c.mean).view(1, 3, 1, 1), persistent=False)
            self.register_buffer(f"_std{i}", torch.tensor(c.std).view(1, 3, 1, 1), persistent=False)

    def normalize(self, pixels_u8: torch.Tensor, i: int, dtype) -> torch.Tensor:
        x = pixels_u8.to(torch.float32) / 255.0
        return ((x - getattr(self, f"_mean{i}")) / getattr(self, f"_std{i}")).to(dtype)

    def forward(self, pixels_u8: torch.Tensor, block_fn=None) -> torch.Tensor:
        """uint8 (N, 3, S, S) -> (N, P, embed_dim) channel-concatenated patch features."""
        dtype = self.featurizer.patch_embed.proj.weight.dtype
        feats = self.featurizer(self.normalize(pixels_u8, 0, dtype), block_fn)
        if self.fused_featurizer is None:
            return feats
        fused = self.fused_featurizer(self.normalize(pixels_u8, 1, dtype), block_fn)
        return torch.cat([feats, fused], dim=2)


class PrismaticProjector(nn.Module):
    def __init__(self, fused: bool, vision_dim: int, llm_dim: int):
        super().__init__()
        self.use_fused_vision_backbone = fused
        if fused:
            self.fc1 = nn.Linear(vision_dim, 4 * vision_dim)
            self.fc2 = nn.Linear(4 * vision_dim, llm_dim)
            self.fc3 = nn.Linear(llm_dim, llm_dim)
            self.act_fn1, self.act_fn2 = nn.GELU(), nn.GELU()
        else:
            self.fc1 = nn.Linear(vision_dim, llm_dim)
            self.fc2 = nn.Linear(llm_dim, llm_dim)
            self.act_fn1 = nn.GELU()

    def forward(self, x):
        if self.use_fused_vision_backbone:
            return self.fc3(self.act_fn2(self.fc2(self.act_fn1(self.fc1(x)))))
        return self.fc2(self.act_fn1(self.fc1(x)))


def tower_ids(config: dict) -> list[str]:
    """The timm ids of a published config.json's vision towers (one, or two when fused)."""
    ids = config.get("timm_model_ids") or BACKBONE_TO_TIMM.get(config.get("vision_backbone_id", ""))
    if not ids:
        raise ModelError(f"unsupported vision_backbone_id {config.get('vision_backbone_id')!r} in config.json")
    return list(ids)


def vit_configs_from(config: dict, shapes: dict[str, tuple] | None = None, weights: str = "",
                     image_transform=None) -> list[ViTConfig]:
    """The towers' configs. Ours: ``vla_studio.vit_configs``. Published: the timm ids in config.json give the
    kind of tower (head count, activation, pooling: what tensor shapes cannot tell); width, depth, MLP size,
    patch size, prefix tokens and resolution come from the weights' ``shapes`` when given, so a checkpoint with
    other tower sizes loads, or fails with one line naming the weights file. ``image_transform`` (a published
    preprocessor) supplies the normalization constants."""
    ours = (config.get("vla_studio") or {}).get("vit_configs")
    if ours:
        out = [ViTConfig.from_dict(c) for c in ours]
    else:
        ids = tower_ids(config)
        sizes = config.get("image_sizes") or [224] * len(ids)
        out = []
        for i, (tid, size) in enumerate(zip(ids, sizes)):
            if tid not in TIMM_VIT_CONFIGS:
                raise ModelError(f"unsupported vision tower {tid!r} in config.json "
                                 "(supported: DINOv2-L reg4, SigLIP so400m)")
            c = copy.deepcopy(TIMM_VIT_CONFIGS[tid])
            c.img_size = int(size)
            if shapes is not None:
                _fit_tower(c, shapes, "vision_backbone." + ("featurizer." if i == 0 else "fused_featurizer."),
                           tid, weights)
            out.append(c)
    if image_transform is not None:
        if len(image_transform.means) != len(out):
            raise ModelError(f"{image_transform.source}: normalization for {len(image_transform.means)} tower(s), "
                             f"the model has {len(out)}; the file belongs to another model")
        for c, m, s in zip(out, image_transform.means, image_transform.stds):
            c.mean, c.std = tuple(m), tuple(s)
            if c.img_size != image_transform.size:
                raise ModelError(f"{image_transform.source}: images of {image_transform.size} px, the vision "
                                 f"towers take {c.img_size} px; the file belongs to another model")
    return out


def _fit_tower(c: ViTConfig, shapes: dict[str, tuple], prefix: str, tid: str, weights: str) -> None:
    def need(key: str) -> tuple:
        if prefix + key not in shapes:
            raise ModelError(f"{weights}: no {prefix}{key}; the weights fit no {tid} tower "
                             "(is this an OpenVLA checkpoint?)")
        return tuple(shapes[prefix + key])

    pe = need("patch_embed.proj.weight")
    if len(pe) != 4 or pe[1] != 3 or pe[2] != pe[3]:
        raise ModelError(f"{weights}: {prefix}patch_embed.proj.weight has shape {pe}; it fits no ViT tower")
    c.embed_dim, c.patch_size = int(pe[0]), int(pe[2])
    blocks = {k[len(prefix) + 7:].split(".", 1)[0] for k in shapes if k.startswith(prefix + "blocks.")}
    c.depth = len(blocks)
    if c.depth < 2:
        raise ModelError(f"{weights}: {prefix[:-1]} has {c.depth} block(s); Prismatic needs at least 2")
    c.mlp_hidden = int(need("blocks.0.mlp.fc1.weight")[0])
    if c.embed_dim % c.num_heads:
        raise ModelError(f"{weights}: tower width {c.embed_dim} does not split into the {c.num_heads} heads of "
                         f"{tid}; the weights fit no supported tower")
    c.class_token = prefix + "cls_token" in shapes
    reg = shapes.get(prefix + "reg_token")
    c.reg_tokens = int(reg[1]) if reg is not None else 0
    c.global_pool = "map" if prefix + "attn_pool.latent" in shapes else "token"
    c.init_values = (c.init_values or 1e-5) if prefix + "blocks.0.ls1.scale_factor" in shapes else None
    n_pos = int(need("pos_embed")[1]) - (0 if c.no_embed_class else (int(c.class_token) + c.reg_tokens))
    grid = int(round(n_pos ** 0.5))
    if grid * grid != n_pos or grid * c.patch_size != c.img_size:
        raise ModelError(f"{weights}: {prefix}pos_embed holds {n_pos} patch positions, config.json says "
                         f"{c.img_size} px images of {c.patch_size} px patches; the weights fit no such tower")


def text_config_from(config: dict):
    from transformers import AutoConfig

    tc = dict(config.get("text_config") or {})
    model_type = tc.pop("model_type", "llama")
    tc.pop("torch_dtype", None)
    tc.pop("dtype", None)
    try:
        cfg = AutoConfig.for_model(model_type, **tc)
    except ValueError as exc:
        raise ModelError(f"config.json text_config: unsupported LLM type {model_type!r} ({exc})") from None
    cfg._attn_implementation = "sdpa"
    return cfg


class OpenVLA(VLA):
    """OpenVLA with our heads. ``state_dict()`` keys are the published ones (+ ``chunk_head.*``)."""

    def __init__(self, config: dict, tokenizer, *, action_head: str = "tokens", chunk_size: int = 1,
                 action_dim: int = 7, n_images: int = 1, state_dim: int | None = None, head_hidden: int = 1024,
                 vit_configs: list[ViTConfig] | None = None, image_transform=None, flow: dict | None = None,
                 fast_vocab: int | None = None):
        super().__init__()
        from transformers import AutoModelForCausalLM

        self.config = config
        # published checkpoints: the exact pixels of OpenVLA's processor; ours (None): the fast path
        self.image_transform = image_transform
        vits = vit_configs if vit_configs is not None else vit_configs_from(config, image_transform=image_transform)
        self.vision_backbone = PrismaticVisionBackbone(vits)
        self.text_config = text_config_from(config)
        self.projector = PrismaticProjector(len(vits) == 2, self.vision_backbone.embed_dim,
                                            self.text_config.hidden_size)
        self.language_model = AutoModelForCausalLM.from_config(self.text_config, attn_implementation="sdpa")
        pad_mult = int(config.get("pad_to_multiple_of", 64))
        vocab_for_actions = int(self.text_config.vocab_size) - pad_mult
        self._init_common(tokenizer, vocab_size_for_actions=vocab_for_actions,
                          n_bins=int(config.get("n_action_bins", 256)), action_head=action_head,
                          chunk_size=chunk_size, action_dim=action_dim, n_images=n_images,
                          image_size=vits[0].img_size, norm_stats=config.get("norm_stats"),
                          state_dim=state_dim, head_hidden=head_hidden, flow=flow, fast_vocab=fast_vocab)

    @property
    def hidden_size(self) -> int:
        return int(self.text_config.hidden_size)

    def vision_modules(self) -> list[str]:
        return ["vision_backbone"]

    def embed_images(self, pixel_values: torch.Tensor) -> torch.Tensor:
        B, n = pixel_values.shape[:2]
        flat = pixel_values.reshape(B * n, *pixel_values.shape[2:])
        frozen = not any(p.requires_grad for p in self.vision_backbone.parameters())
        if frozen and self.compile_decode and not self.training:
            fn = getattr(self, "_compiled_block", None)
            if fn is None:
                from .vit import block_forward

                fn = torch.compile(block_forward, dynamic=False, fullgraph=True)
                object.__setattr__(self, "_compiled_block", fn)
            with torch.no_grad():
                feats = self.vision_backbone(flat, fn)
        elif frozen:
            with torch.no_grad():
                feats = self.vision_backbone(flat)
        else:
            feats = self.vision_backbone(flat)
        proj = self.projector(feats.to(self.projector.fc1.weight.dtype))
        return proj.reshape(B, n * proj.shape[1], proj.shape[2])

    # ------------------------------------------------------------------ persistence
    def export_config(self) -> dict:
        cfg = copy.deepcopy(self.config)
        cfg["norm_stats"] = self.norm_stats
        ours = dict(cfg.get("vla_studio") or {})
        now = self.head_config()
        for k in list(ours):  # keys of another head (a chunk export re-saved as flow, ...) must not linger
            if k in ("head_hidden", "state_dim") or k.startswith(("flow_", "fast_")):
                if k not in now:
                    ours.pop(k)
        ours.update(now)
        if self.chunk_head is None and self.flow_head is None:
            ours.pop("state_dim", None)
        ours["image_pipeline"] = "published" if self.image_transform is not None else "fast"
        cfg["vla_studio"] = ours
        return cfg

    def save_pretrained(self, out_dir: str | Path, *, max_shard_bytes: int = 5 * 1024**3) -> Path:
        """Write config.json + model.safetensors (sharded with an index past ``max_shard_bytes``) + tokenizer."""
        from safetensors.torch import save_file

        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        sd = {k: v.detach().contiguous() for k, v in self.state_dict().items()}
        shards: list[dict] = [{}]
        size = 0
        for k, v in sd.items():
            nbytes = v.numel() * v.element_size()
            if shards[-1] and size + nbytes > max_shard_bytes:
                shards.append({})
                size = 0
            shards[-1][k] = v.cpu()
            size += nbytes
        meta = {"format": "pt"}
        if len(shards) == 1:
            save_file(shards[0], str(out / "model.safetensors"), metadata=meta)
        else:
            weight_map = {}
            n = len(shards)
            for i, sh in enumerate(shards, 1):
                name = f"model-{i:05d}-of-{n:05d}.safetensors"
                save_file(sh, str(out / name), metadata=meta)
                weight_map.update({k: name for k in sh})
            total = sum(v.numel() * v.element_size() for v in sd.values())
            (out / "model.safetensors.index.json").write_text(
                json.dumps({"metadata": {"total_size": total}, "weight_map": weight_map}, indent=2))
        cfg = self.export_config()
        cfg["torch_dtype"] = str(self.dtype).replace("torch.", "")
        (out / "config.json").write_text(json.dumps(cfg, indent=2))
        if self.tokenizer is not None:
            self.tokenizer.save_pretrained(str(out))
        for name, text in self.head.files().items():  # e.g. the FAST tokenizer
            (out / name).write_text(text)
        if self.image_transform is not None:  # a published base: its exact preprocessing travels with it
            from .preprocess import PREPROCESSOR_FILE

            (out / PREPROCESSOR_FILE).write_text(json.dumps(self.image_transform.raw, indent=2))
        return out


def read_config(folder: Path) -> dict[str, Any]:
    from finetune.run_config import read_json_object

    path = folder / "config.json"
    if not path.exists():
        raise ModelError(f"{folder}: no config.json; pick an OpenVLA model folder or a vla-studio checkpoint")
    return read_json_object(path, error=ModelError, fix="re-download or re-export the model")
