"""Presets chosen from the detected GPU memory, and a memory estimate shown before a run starts.

Torch-free at import (the Fine-tune tab uses it): the GPU is found with ``nvidia-smi`` first and
torch only when torch is already imported.

The activation term is calibrated on measurements of an OpenVLA-7B-shaped model (LoRA r=32
all-linear, 224 px, ~30 text tokens) on an H100 (see ../shared/ENVIRONMENT.md): without activation
checkpointing ~3.2 GiB per sample, with it ~0.94 GiB per sample, over 286 LLM tokens x 4096 hidden
x 32 layers. That is plain transformers + peft (``lean=False``); the recipe's own path (``lean=True``, the
default: bf16 adapters, frozen towers under no_grad) is calibrated on bench/finetune_gpu.py's "ours" rows.
The estimate errs on the high side; it is a guide, not a promise.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import struct
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from recorder.errors import ConfigError

GiB = 1024**3
# bytes of activations per (token x hidden x layer) per sample, from the measurements above
ACT_BYTES = 91.6
ACT_BYTES_CHECKPOINTED = 26.9
# the lean recipe (finetune/recipe.py default: bf16 adapters, no autocast, towers frozen under no_grad, logits only
# at the label positions), measured on the same model with bench/finetune_gpu.py: batch 8 without checkpointing
# 26.6 GiB; all 32 layers checkpointed: batch 8 15.7 GiB, batch 32 19.2 GiB (allocated; 20.8 reserved)
LEAN_ACT_BYTES = 42.0
# refit on the H200 table below (bench/qlora_gpu.py, 2026-12-01): 4.0 keeps every bf16 and 4-bit row, checkpointed
# or not, and the H100 rows above between 1.0x and 1.1x of the measured peak
LEAN_ACT_BYTES_CHECKPOINTED = 4.0
# NF4 weight + its double-quantized block scales, per parameter of a quantized (decoder Linear) layer: 5.13 GiB
# resident for the 7B (6.48B quantized + 1.07B bf16 in the towers, projector, embeddings and lm_head)
NF4_BYTES_PER_PARAM = 0.522
RUNTIME_OVERHEAD_GIB = 0.6  # CUDA context, allocator slack
TRAINABLE_BYTES = 16  # fp32 LoRA weight + grad + AdamW m and v
LEAN_TRAINABLE_BYTES = 8  # bf16 LoRA weight + grad + AdamW m and v


@dataclass(frozen=True)
class Preset:
    """A starting point for a fine-tune on one class of machine."""

    name: str
    title: str
    model_hint: str  # what base model this preset is meant for
    settings: dict = field(default_factory=dict)  # FinetuneConfig fields


PRESETS: dict[str, Preset] = {
    "gpu-80gb": Preset("gpu-80gb", "80 GB GPU: 7B bf16 LoRA, batch 16", "openvla/openvla-7b",
                       {"dtype": "bf16", "batch_size": 16, "grad_accum": 1, "activation_checkpointing": False,
                        "lora_rank": 32, "lora_alpha": 16, "lr": 5e-4, "num_workers": 4}),
    # measured on an H100 (bench/finetune_gpu.py, docs/benchmarks.md): batch 32 with every LLM layer checkpointed,
    # bf16 adapters on the LLM + projector, frozen towers: 29.8 samples/s at 19.2 GiB allocated / 20.8 reserved
    "gpu-24gb": Preset("gpu-24gb", "24 GB GPU: 7B bf16 LoRA, batch 32, all LLM layers checkpointed", "openvla/openvla-7b",
                       {"dtype": "bf16", "batch_size": 32, "grad_accum": 1, "activation_checkpointing": True,
                        "checkpoint_layers": 0, "lora_rank": 32, "lora_alpha": 16, "lr": 5e-4, "num_workers": 4}),
    # the consumer presets: the fastest row of MEASURED_7B whose peak reserved memory leaves 1 GiB of the card to
    # the desktop; bf16 wins ties within 10% (no quantization error): 24 GB is bf16 though 4-bit batch 8 without
    # checkpointing measured 34.6 samples/s against 32.7
    "gpu-16gb": Preset("gpu-16gb", "16 GB GPU: 7B QLoRA (4-bit base), batch 16, first 24 LLM layers checkpointed",
                       "openvla/openvla-7b",
                       {"dtype": "bf16", "quantize_4bit": True, "batch_size": 16, "grad_accum": 1,
                        "activation_checkpointing": True, "checkpoint_layers": 24, "lora_rank": 32, "lora_alpha": 16,
                        "lr": 5e-4, "num_workers": 4}),
    "gpu-12gb": Preset("gpu-12gb", "12 GB GPU: 7B QLoRA (4-bit base), batch 24, all LLM layers checkpointed",
                       "openvla/openvla-7b",
                       {"dtype": "bf16", "quantize_4bit": True, "batch_size": 24, "grad_accum": 1,
                        "activation_checkpointing": True, "checkpoint_layers": 0, "lora_rank": 32, "lora_alpha": 16,
                        "lr": 5e-4, "num_workers": 4}),
    "gpu-8gb": Preset("gpu-8gb", "8 GB GPU: 7B QLoRA (4-bit base), batch 4 x 4 accumulated, all LLM layers checkpointed",
                      "openvla/openvla-7b",
                      {"dtype": "bf16", "quantize_4bit": True, "batch_size": 4, "grad_accum": 4,
                       "activation_checkpointing": True, "checkpoint_layers": 0, "lora_rank": 32, "lora_alpha": 16,
                       "lr": 5e-4, "num_workers": 2}),
    "cpu": Preset("cpu", "CPU: the tiny model (demo and tests)", "tiny",
                  {"dtype": "fp32", "batch_size": 8, "grad_accum": 1, "activation_checkpointing": False,
                   "lora_rank": 8, "lora_alpha": 16, "lr": 1e-3, "num_workers": 0}),
}


# bench/qlora_gpu.py on an H200, 2026-12-01 (docs/benchmarks.md): OpenVLA-7B shape, lean LoRA r=32 on LLM +
# projector (81.0M params), 224 px, 30 text tokens. (weights, batch, checkpointed LLM layers (0 = all, -1 = none),
# peak allocated GiB, peak reserved GiB, samples/s). The presets above are read off this table and a test checks
# the memory estimate against every row.
MEASURED_7B = [
    ("4bit", 4, 0, 6.29, 6.81, 10.2), ("4bit", 6, 0, 6.56, 7.13, 14.1), ("4bit", 8, 0, 6.84, 7.58, 17.9),
    ("4bit", 12, 0, 7.39, 8.29, 26.6), ("4bit", 16, 0, 7.94, 8.91, 29.2), ("4bit", 24, 0, 9.08, 10.30, 30.1),
    ("4bit", 32, 0, 10.22, 11.93, 31.0), ("4bit", 16, 24, 12.98, 14.20, 31.5), ("4bit", 24, 28, 12.45, 14.04, 31.2),
    ("4bit", 24, 20, 20.79, 22.46, 34.1), ("4bit", 16, 16, 18.50, 20.14, 33.9), ("4bit", 8, -1, 17.60, 18.83, 34.6),
    ("bf16", 16, 0, 16.86, 17.81, 31.3), ("bf16", 32, 0, 19.15, 20.78, 32.7), ("bf16", 16, 28, 19.11, 20.22, 32.7),
]


@dataclass(frozen=True)
class GpuInfo:
    name: str
    total_gib: float


def detect_gpu() -> GpuInfo | None:
    """The first GPU and its memory, or None on a machine without one."""
    if shutil.which("nvidia-smi"):
        try:
            out = subprocess.run(["nvidia-smi", "--query-gpu=name,memory.total", "--format=csv,noheader,nounits"],
                                 capture_output=True, text=True, timeout=10).stdout.strip().splitlines()
            if out:
                name, mib = out[0].rsplit(",", 1)
                return GpuInfo(name.strip(), float(mib) / 1024.0)
        except (OSError, ValueError, subprocess.SubprocessError):
            pass
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        return GpuInfo(props.name, props.total_memory / GiB)
    return None


# (preset, smallest card memory it is for, GiB as the driver reports it: an "8 GB" card shows ~7.6-8.0)
_BY_MEMORY = (("gpu-80gb", 60.0), ("gpu-24gb", 20.0), ("gpu-16gb", 14.0), ("gpu-12gb", 10.0), ("gpu-8gb", 7.0))


def preset_for(gpu: GpuInfo | None) -> Preset:
    if gpu is None:
        return PRESETS["cpu"]
    for name, least in _BY_MEMORY:
        if gpu.total_gib >= least:
            return PRESETS[name]
    return PRESETS["cpu"]


def preset_reason(gpu: GpuInfo | None) -> str:
    """One line for the Fine-tune tab: the card, its memory and the preset picked for it (and why)."""
    p = preset_for(gpu)
    if gpu is None:
        return f"No CUDA GPU found: preset {p.name} ({p.title})"
    if p.name == "cpu":
        return (f"{gpu.name}, {gpu.total_gib:.1f} GiB: too small for the 7B even in 4 bits (needs ~7 GiB); "
                f"preset cpu (the tiny model)")
    return f"{gpu.name}, {gpu.total_gib:.1f} GiB: preset {p.name} ({p.title})"


def resolve_preset(name: str) -> Preset:
    if name in ("", "auto"):
        return preset_for(detect_gpu())
    if name not in PRESETS:
        raise ConfigError(f"--preset {name!r} is not known: use auto or one of {', '.join(PRESETS)}")
    return PRESETS[name]


# ----------------------------------------------------------------------------- memory estimate


@dataclass(frozen=True)
class ModelShape:
    """What the estimate needs to know about a model."""

    n_params: int
    hidden: int
    layers: int
    intermediate: int
    tokens: int  # LLM tokens per sample (image patches + text + action tokens)
    lora_params_per_rank: int  # trainable LoRA params at r=1 (all-linear)
    extra_trainable: int = 0  # non-LoRA trainable params (e.g. a chunk head)


@dataclass(frozen=True)
class MemoryEstimate:
    params: int
    lora_params: int
    weights_gib: float
    trainable_gib: float  # LoRA weights + grads + optimizer state
    activations_per_sample_gib: float
    overhead_gib: float
    batch_size: int

    @property
    def total_gib(self) -> float:
        return self.weights_gib + self.trainable_gib + self.overhead_gib + self.activations_per_sample_gib * self.batch_size

    def max_batch(self, budget_gib: float) -> int:
        free = budget_gib - self.weights_gib - self.trainable_gib - self.overhead_gib
        return max(0, int(free // max(self.activations_per_sample_gib, 1e-9)))

    def to_dict(self) -> dict:
        return {"params": self.params, "lora_params": self.lora_params, "weights_gib": round(self.weights_gib, 3),
                "trainable_gib": round(self.trainable_gib, 3),
                "activations_per_sample_gib": round(self.activations_per_sample_gib, 4),
                "overhead_gib": self.overhead_gib, "batch_size": self.batch_size,
                "total_gib": round(self.total_gib, 3)}

    def summary(self) -> str:
        return (f"{self.params / 1e6:,.1f}M params ({self.weights_gib:.2f} GiB), LoRA {self.lora_params / 1e6:.1f}M "
                f"(+{self.trainable_gib:.2f} GiB with optimizer), activations {self.activations_per_sample_gib:.3f} "
                f"GiB/sample x {self.batch_size} -> ~{self.total_gib:.1f} GiB")


def estimate_memory(shape: ModelShape, *, batch_size: int, lora_rank: int, dtype: str, quantize_4bit: bool,
                    activation_checkpointing: bool, on_gpu: bool = True, lean: bool = True,
                    checkpointed_fraction: float = 1.0) -> MemoryEstimate:
    """``lean`` (default): the recipe's default path (bf16 adapters, no autocast, frozen towers under no_grad; LoRA on the
    LLM + projector, so ``shape.lora_params_per_rank`` should count those only); otherwise plain transformers +
    peft (fp32 adapters under autocast, towers with autograd). ``checkpointed_fraction``: the share of LLM layers
    checkpointed when ``activation_checkpointing`` (the first N of L layers: N / L)."""
    if quantize_4bit:  # the decoder Linears in NF4, the rest (towers, projector, embeddings, lm_head) in bf16
        quantized = min(shape.n_params, shape.layers * (4 * shape.hidden * shape.hidden
                                                        + 3 * shape.hidden * shape.intermediate))
        weight_bytes = quantized * NF4_BYTES_PER_PARAM + (shape.n_params - quantized) * 2
    else:
        weight_bytes = shape.n_params * (2 if dtype == "bf16" else 4)
    lora = shape.lora_params_per_rank * lora_rank
    trainable = lora + shape.extra_trainable
    full, ckpt = (LEAN_ACT_BYTES, LEAN_ACT_BYTES_CHECKPOINTED) if lean else (ACT_BYTES, ACT_BYTES_CHECKPOINTED)
    f = min(1.0, max(0.0, float(checkpointed_fraction))) if activation_checkpointing else 0.0
    per_tok = f * ckpt + (1.0 - f) * full
    act = per_tok * shape.tokens * shape.hidden * shape.layers
    if dtype == "fp32" and not quantize_4bit:
        act *= 2
    lean_adapters = lean and (dtype == "bf16" or quantize_4bit)  # QLoRA's adapters are bf16 too
    per_trainable = LEAN_TRAINABLE_BYTES if lean_adapters else TRAINABLE_BYTES
    return MemoryEstimate(params=shape.n_params, lora_params=lora, weights_gib=weight_bytes / GiB,
                          trainable_gib=trainable * per_trainable / GiB, activations_per_sample_gib=act / GiB,
                          overhead_gib=RUNTIME_OVERHEAD_GIB if on_gpu else 0.2, batch_size=batch_size)


def llama_lora_params_per_rank(hidden: int, intermediate: int, layers: int, kv_hidden: int | None = None) -> int:
    kv = kv_hidden or hidden
    per_layer = (hidden + hidden) * 2 + (hidden + kv) * 2 + (hidden + intermediate) * 3
    return per_layer * layers


def _safetensors_numel(folder: Path) -> int:
    total = 0
    for f in sorted(folder.glob("*.safetensors")):
        with open(f, "rb") as fh:
            (n,) = struct.unpack("<Q", fh.read(8))
            header = json.loads(fh.read(n))
        for key, meta in header.items():
            if key == "__metadata__":
                continue
            numel = 1
            for d in meta["shape"]:
                numel *= d
            total += numel
    return total


def shape_from_folder(folder: Path, *, n_images: int = 1, text_tokens: int = 30, action_tokens: int = 7) -> ModelShape | None:
    """Read a model folder's config.json (and safetensors headers) without loading weights."""
    cfg_path = Path(folder) / "config.json"
    if not cfg_path.is_file():
        return None
    try:
        cfg = json.loads(cfg_path.read_text())
    except json.JSONDecodeError:
        return None
    text = cfg.get("text_config") or cfg.get("llm_config") or cfg
    hidden = int(text.get("hidden_size", 4096))
    layers = int(text.get("num_hidden_layers", 32))
    inter = int(text.get("intermediate_size", 4 * hidden))
    heads = int(text.get("num_attention_heads", max(1, hidden // 128)))
    kv_heads = int(text.get("num_key_value_heads", heads))
    image_size = int(cfg.get("image_size", (cfg.get("image_sizes") or [224])[0]) if not isinstance(cfg.get("image_size"), list)
                     else cfg["image_size"][0])
    patch = int((cfg.get("vision_config") or {}).get("patch_size", 14))
    patches = (image_size // patch) ** 2 * n_images
    n_params = _safetensors_numel(Path(folder))
    if not n_params:
        vocab = int(text.get("vocab_size", 32000))
        n_params = layers * (4 * hidden * hidden + 3 * hidden * inter) + 2 * vocab * hidden
    lora = int(llama_lora_params_per_rank(hidden, inter, layers, hidden * kv_heads // heads) * 1.4)  # + vision towers
    return ModelShape(n_params, hidden, layers, inter, patches + text_tokens + action_tokens, lora)


def head_shape(shape: ModelShape, head: str, chunk_size: int, action_dim: int, *, base_action_tokens: int = 0,
               head_hidden: int = 1024) -> ModelShape:
    """``shape`` with the LLM tokens and fully trained parameters of an action head
    (``finetune/models/action_heads.py``). ``base_action_tokens``: the action tokens ``shape.tokens`` already
    counts (``shape_from_folder`` counts 7). tokens: D bins + EOS (K = 1); chunk: K*D query positions + the MLP
    head; flow: no LLM action tokens, the action expert (width hidden/4, at most 8 layers) trained in full;
    fast: about K*D/4 + 1 tokens (a smooth chunk's FAST length)."""
    K, D, H = int(chunk_size), int(action_dim), int(shape.hidden)
    extra, n_act = 0, D + 1
    if head == "chunk":
        n_act = K * D
        extra = K * D * H + D * H * head_hidden + head_hidden * head_hidden + head_hidden * D
    elif head == "flow":
        n_act = 0
        W = H // 4 if H >= 1024 else H
        per_layer = W * 3 * H + H * W + W * 8 * W + 4 * W * W  # qkv, o, gate/up, down (kv width ~ hidden)
        extra = min(shape.layers, 8) * per_layer + 4 * W * W
    elif head == "fast":
        n_act = max(1, (K * D + 3) // 4) + 1
    tokens = max(1, shape.tokens - int(base_action_tokens) + n_act)
    return dataclasses.replace(shape, tokens=tokens, n_params=shape.n_params + extra,
                               extra_trainable=shape.extra_trainable + extra)


def shape_from_module(model, *, tokens: int) -> ModelShape:
    """Exact counts from a loaded (not yet LoRA-wrapped) model; hidden/layers from its config if any."""
    import torch

    n_params = sum(p.numel() for p in model.parameters())
    lora = 0
    for module in model.modules():
        if isinstance(module, torch.nn.Linear):
            lora += module.in_features + module.out_features
    cfg = getattr(model, "config", None)
    text = getattr(cfg, "text_config", None) or cfg
    hidden = int(getattr(text, "hidden_size", 0) or 0)
    layers = int(getattr(text, "num_hidden_layers", 0) or 0)
    if not hidden or not layers:
        linears = [m for m in model.modules() if isinstance(m, torch.nn.Linear)]
        hidden = max((m.in_features for m in linears), default=64)
        layers = max(1, len(linears) // 7)
    return ModelShape(n_params, hidden, layers, 4 * hidden, tokens, lora)


def check_fits(est: MemoryEstimate, budget_gib: float, where: str) -> None:
    """Raise a ConfigError before training when the estimate exceeds the budget."""
    if est.total_gib <= budget_gib:
        return
    fit = est.max_batch(budget_gib)
    if fit >= 1:
        hint = f"use --batch {fit} (and --grad-accum {max(1, est.batch_size // fit)} to keep the global batch)"
    else:
        hint = "use --4bit, activation checkpointing (a 24 GB/12 GB preset), or a smaller model"
    raise ConfigError(f"batch {est.batch_size} needs ~{est.total_gib:.1f} GiB but {where} has {budget_gib:.1f} GiB: {hint}")
