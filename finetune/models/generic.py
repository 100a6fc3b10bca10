"""Any transformers image-text-to-text VLM + our action tokenizer / chunk head.

The VLM is loaded with ``AutoModelForImageTextToText``; we use its vision encoder (+ connector/projector) to
turn each camera image into embeddings, and its text decoder + ``lm_head`` exactly as the OpenVLA path does:
``[BOS] [image embeddings] prompt [▁] actions``. Action tokens are the last 256 ids of the tokenizer's base
vocabulary (OpenVLA's convention). This is our own input format, not the VLM's chat template: it is learned
during fine-tuning.

Image features by family: Idefics3 / SmolVLM (vision_model + connector, called directly so an all-black frame
is not dropped as padding), otherwise the model's ``get_image_features`` (Llava, PaliGemma, ...).
Tested here: a tiny random Idefics3. Not tested: real SmolVLM / PaliGemma / Qwen2.5-VL weights (Qwen2.5-VL's
``get_image_features`` needs ``image_grid_thw``, which this wrapper does not build: it is rejected).
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from torch import nn

from recorder.errors import ModelError

from .vla import VLA

__all__ = ["GenericVLA", "load_generic_vlm"]

_UNSUPPORTED = {"qwen2_vl", "qwen2_5_vl", "qwen3_vl"}


class GenericVLA(VLA):
    def __init__(self, vlm: nn.Module, tokenizer, *, image_size: int, mean, std, action_head: str, chunk_size: int,
                 action_dim: int, n_images: int, state_dim: int | None, head_hidden: int, norm_stats: dict | None):
        super().__init__()
        self.vlm = vlm
        self.family = getattr(vlm.config, "model_type", "")
        tc = vlm.config.get_text_config() if hasattr(vlm.config, "get_text_config") else vlm.config.text_config
        self._text_config = tc
        self.register_buffer("_mean", torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("_std", torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1), persistent=False)
        self._init_common(tokenizer, vocab_size_for_actions=int(tokenizer.vocab_size), n_bins=256,
                          action_head=action_head, chunk_size=chunk_size, action_dim=action_dim, n_images=n_images,
                          image_size=image_size, norm_stats=norm_stats, state_dim=state_dim, head_hidden=head_hidden)
        self.chunk_head = self.chunk_head.to(self.dtype) if self.chunk_head is not None else None

    @property
    def hidden_size(self) -> int:
        return int(self._text_config.hidden_size)

    @property
    def llm(self) -> nn.Module:
        return self.vlm

    @property
    def decoder(self) -> nn.Module:
        inner = self.vlm.model
        for name in ("text_model", "language_model"):
            if hasattr(inner, name):
                return getattr(inner, name)
        raise ModelError(f"{self.family}: cannot find the text decoder of this VLM")

    @property
    def lm_head_module(self) -> nn.Module:
        return self.vlm.lm_head

    @property
    def llm_config(self):
        return self._text_config

    def vision_modules(self) -> list[str]:
        inner = self.vlm.model
        return [f"vlm.model.{n}" for n in ("vision_model", "vision_tower", "visual") if hasattr(inner, n)]

    def lora_target_modules(self, include_vision: bool = False) -> list[str]:
        # the LLM + the connector/projector (all-linear semantics), as for OpenVLA
        return super().lora_target_modules(include_vision)

    def embed_images(self, pixel_values: torch.Tensor) -> torch.Tensor:
        B, n = pixel_values.shape[:2]
        x = pixel_values.reshape(B * n, *pixel_values.shape[2:]).to(torch.float32) / 255.0
        x = ((x - self._mean) / self._std).to(self.dtype)
        inner = self.vlm.model
        vision = getattr(inner, "vision_model", None) or getattr(inner, "vision_tower", None)
        frozen = vision is not None and not any(p.requires_grad for p in vision.parameters())
        if self.family in ("idefics3", "smolvlm"):
            with torch.set_grad_enabled(torch.is_grad_enabled() and not frozen):
                h = inner.vision_model(pixel_values=x).last_hidden_state
            feats = inner.connector(h)
        else:
            out = inner.get_image_features(pixel_values=x)
            feats = _features_tensor(out)
        if feats.dim() == 2:
            feats = feats.view(B * n, -1, feats.shape[-1])
        if feats.shape[-1] != self.hidden_size:
            raise ModelError(f"{self.family}: image features have width {feats.shape[-1]}, the LLM {self.hidden_size}")
        return feats.reshape(B, n * feats.shape[1], feats.shape[2])

    def save_pretrained(self, out_dir: str | Path, **_) -> Path:
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        self.vlm.save_pretrained(str(out))
        if self.tokenizer is not None:
            self.tokenizer.save_pretrained(str(out))
        cfg = json.loads((out / "config.json").read_text())
        ours = self.head_config()
        ours["mean"], ours["std"] = self._mean.flatten().tolist(), self._std.flatten().tolist()
        cfg["vla_studio"] = ours
        cfg["norm_stats"] = self.norm_stats
        (out / "config.json").write_text(json.dumps(cfg, indent=2))
        if self.chunk_head is not None:
            from safetensors.torch import save_file

            save_file({k: v.contiguous().cpu() for k, v in self.chunk_head.state_dict().items()},
                      str(out / "chunk_head.safetensors"))
        for name, text in self.head.files().items():  # e.g. the FAST tokenizer (load_vla reads it back)
            (out / name).write_text(text)
        return out


def _features_tensor(out) -> torch.Tensor:
    if torch.is_tensor(out):
        return out
    pooled = getattr(out, "pooler_output", None)
    if pooled is not None:
        return torch.cat(list(pooled)) if isinstance(pooled, (list, tuple)) else pooled
    if isinstance(out, (list, tuple)):
        return torch.cat([o if o.dim() == 3 else o[None] for o in out])
    return out.last_hidden_state


def load_generic_vlm(folder: Path, config: dict, device: torch.device, dtype: torch.dtype, *, action_head: str,
                     chunk_size: int, action_dim: int, n_images: int, state_dim: int | None, head_hidden: int) -> GenericVLA:
    from transformers import AutoModelForImageTextToText, AutoTokenizer

    mt = config.get("model_type", "")
    if mt in _UNSUPPORTED:
        raise ModelError(f"{folder}: {mt} models need image grids this wrapper does not build; use OpenVLA, "
                         "SmolVLM/Idefics3, Llava or PaliGemma")
    try:
        vlm = AutoModelForImageTextToText.from_pretrained(str(folder), dtype=dtype,
                                                          trust_remote_code=False).to(device)
    except (ValueError, KeyError, OSError) as exc:
        raise ModelError(f"{folder}: not an OpenVLA folder nor a transformers image-text-to-text model "
                         f"({type(exc).__name__}: {exc})") from None
    try:
        tok = AutoTokenizer.from_pretrained(str(folder), trust_remote_code=False)  # never a prompt
    except Exception as exc:  # noqa: BLE001
        raise ModelError(f"{folder}: cannot load the tokenizer ({type(exc).__name__}); copy it into the folder") from None
    ours = dict(config.get("vla_studio") or {})
    vc = getattr(vlm.config, "vision_config", None)
    size = int(ours.get("image_size") or getattr(vc, "image_size", 224))
    mean, std = ours.get("mean"), ours.get("std")
    pp = folder / "preprocessor_config.json"
    if (mean is None or std is None) and pp.exists():
        pcfg = json.loads(pp.read_text())
        mean, std = pcfg.get("image_mean"), pcfg.get("image_std")
    mean, std = mean or [0.5, 0.5, 0.5], std or [0.5, 0.5, 0.5]
    model = GenericVLA(vlm, tok, image_size=size, mean=mean, std=std, action_head=action_head, chunk_size=chunk_size,
                       action_dim=action_dim, n_images=n_images, state_dim=state_dim, head_hidden=head_hidden,
                       norm_stats=config.get("norm_stats"))
    model.to(device)
    head_file = folder / "chunk_head.safetensors"
    if model.chunk_head is not None:
        if head_file.exists() and ours.get("action_head") == "chunk":
            from safetensors.torch import load_file

            model.chunk_head.load_state_dict(load_file(str(head_file), device=str(device)), strict=True)
        else:
            from .loader import _init_head

            _init_head(model)
    return model
