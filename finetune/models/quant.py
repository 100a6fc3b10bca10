"""4-bit (NF4) and 8-bit LLM weights with bitsandbytes, quantized on the GPU while the checkpoint loads.

The decoder's Linear layers are the only quantized ones (6.5B of openvla-7b's 7.5B parameters); the vision towers,
projector, embeddings and lm_head stay in the model dtype. Loading never holds the bf16 model anywhere: each
decoder weight is read from its safetensors file (memory-mapped), copied to the GPU, quantized there and the bf16
copy dropped, so peak host memory is one tensor and peak GPU memory is the 4-bit model plus one bf16 tensor
(a 8 GB card loads the 7B). ``dequantize_llm`` turns the layers back into plain bf16 Linears holding exactly the
values the 4-bit layers compute with (merged export of a QLoRA run, a bf16 rollout of it).
"""

from __future__ import annotations

import torch
from torch import nn

from recorder.errors import ConfigError, ModelError

MODES = ("4bit", "8bit")
# bitsandbytes' 4-bit and int8 kernels need compute capability 7.0 (Volta) or newer in the 0.4x-0.5x releases
MIN_CAPABILITY = (7, 0)


def check_quantize_supported(mode: str, device: torch.device | str, *, option: str | None = None) -> None:
    """One line (ConfigError) when ``mode`` cannot run here: not a CUDA device, no bitsandbytes, an old GPU."""
    opt = option or f"--quantize {mode}"
    if mode not in MODES:
        raise ConfigError(f"{opt}: quantization must be one of {', '.join(MODES)} (got {mode!r})")
    dev = torch.device(device)
    if dev.type != "cuda":
        raise ConfigError(f"{opt} needs a CUDA GPU and this run is on the {dev.type.upper()}: drop {opt.split()[0]}")
    if not torch.cuda.is_available():
        raise ConfigError(f"{opt} needs a CUDA GPU and torch sees none here (CPU-only torch build?): drop {opt.split()[0]}")
    cap = torch.cuda.get_device_capability(dev)
    if tuple(cap) < MIN_CAPABILITY:
        name = torch.cuda.get_device_name(dev)
        raise ConfigError(f"{opt}: the GPU {name} (compute capability {cap[0]}.{cap[1]}) is older than bitsandbytes "
                          f"supports (7.0+): drop {opt.split()[0]}")
    try:
        import bitsandbytes  # noqa: F401
    except ImportError:
        raise ConfigError(f"{opt} needs bitsandbytes: pip install -e '.[train]' (or pip install bitsandbytes)") from None
    except Exception as exc:  # a wheel without a library for this CUDA
        raise ConfigError(f"{opt}: bitsandbytes does not load here ({type(exc).__name__}: {exc}); "
                          "reinstall a bitsandbytes build for this CUDA") from None


def make_quantized_linear(weight: torch.Tensor, bias: torch.Tensor | None, mode: str, device: torch.device,
                          compute_dtype: torch.dtype = torch.bfloat16) -> nn.Module:
    """A bitsandbytes layer for ``weight`` (any device/dtype), quantized on ``device``."""
    import bitsandbytes as bnb

    out_f, in_f = weight.shape
    w = weight.to(device=device, dtype=compute_dtype if mode == "4bit" else torch.float16, non_blocking=True)
    if mode == "4bit":
        q = bnb.nn.Linear4bit(in_f, out_f, bias=bias is not None, compute_dtype=compute_dtype, quant_type="nf4",
                              device="meta")
        q.weight = bnb.nn.Params4bit(w, requires_grad=False, quant_type="nf4", compress_statistics=True,
                                     module=q).to(device)
    else:  # row-wise int8 on the GPU (Int8Params.to() quantizes only on a move from the CPU)
        import logging

        # LLM.int8 computes in fp16 and logs so on every call with bf16 inputs (documented in docs/INTERFACES.md)
        logging.getLogger("bitsandbytes.autograd._functions").setLevel(logging.ERROR)
        q = bnb.nn.Linear8bitLt(in_f, out_f, bias=bias is not None, has_fp16_weights=False, threshold=6.0,
                                device="meta")
        cb, scb, _ = bnb.functional.int8_vectorwise_quant(w)
        p = bnb.nn.Int8Params(cb, requires_grad=False, has_fp16_weights=False)
        p.CB, p.SCB = cb, scb
        q.weight = p
    if bias is not None:
        q.bias = nn.Parameter(bias.to(device=device, dtype=compute_dtype), requires_grad=False)
    del w
    return q


class QuantSlot(nn.Module):
    """Stands where a decoder Linear will be: no parameters, so materialising the model allocates nothing for
    it; the loader hands it the checkpoint's tensors and it is replaced by the quantized layer."""

    def __init__(self, in_features: int, out_features: int, has_bias: bool):
        super().__init__()
        self.in_features, self.out_features, self.has_bias = in_features, out_features, has_bias

    def forward(self, x):  # pragma: no cover - replaced before any forward
        raise ModelError("a quantized layer was never loaded (the checkpoint is missing decoder weights)")


def _decoder_linears(model):
    """(parent module, attribute, dotted name) of every Linear (bitsandbytes layers are Linears too) or slot in the
    LLM decoder layers."""
    names = {id(m): n for n, m in model.named_modules()}
    for layer in model.decoder.layers:
        for parent in (layer.self_attn, layer.mlp):
            for attr, child in list(parent.named_children()):
                if isinstance(child, nn.Linear | QuantSlot):
                    yield parent, attr, f"{names[id(parent)]}.{attr}"


class QuantizingLoader:
    """Replaces the decoder Linears of a model still on the meta device by :class:`QuantSlot`s, then takes their
    tensors from :func:`finetune.models.loader.load_weights_strict` (``consume=``) and quantizes each on the GPU."""

    def __init__(self, model, mode: str, device: torch.device, compute_dtype: torch.dtype):
        self.mode, self.device, self.compute_dtype = mode, torch.device(device), compute_dtype
        self.slots: dict[str, tuple[nn.Module, str, QuantSlot]] = {}
        self._pending: dict[str, dict[str, torch.Tensor]] = {}
        for parent, attr, name in list(_decoder_linears(model)):
            lin = getattr(parent, attr)
            slot = QuantSlot(lin.in_features, lin.out_features, lin.bias is not None)
            setattr(parent, attr, slot)
            self.slots[name] = (parent, attr, slot)

    def expected_keys(self) -> set[str]:
        keys = set()
        for name, (_, _, slot) in self.slots.items():
            keys.add(f"{name}.weight")
            if slot.has_bias:
                keys.add(f"{name}.bias")
        return keys

    def __call__(self, key: str, tensor: torch.Tensor) -> bool:
        """Take ``tensor`` if it belongs to a slot (True); quantize the layer once all its tensors are in."""
        name, _, leaf = key.rpartition(".")
        if name not in self.slots or leaf not in ("weight", "bias"):
            return False
        parent, attr, slot = self.slots[name]
        if leaf == "weight" and tuple(tensor.shape) != (slot.out_features, slot.in_features):
            raise ModelError(f"{key} has shape {tuple(tensor.shape)}, the config expects "
                             f"{(slot.out_features, slot.in_features)}")
        got = self._pending.setdefault(name, {})
        got[leaf] = tensor
        if "weight" in got and (not slot.has_bias or "bias" in got):
            setattr(parent, attr, make_quantized_linear(got["weight"], got.get("bias"), self.mode, self.device,
                                                        self.compute_dtype))
            del self._pending[name]
        return True

    def finish(self) -> None:
        left = [n for n, (p, a, _) in self.slots.items() if isinstance(getattr(p, a), QuantSlot)]
        if left:
            raise ModelError(f"decoder weights missing for {left[:3]}: the checkpoint is incomplete")
        if self.device.type == "cuda":
            torch.cuda.empty_cache()


@torch.no_grad()
def quantize_in_place(model, mode: str) -> int:
    """Quantize the decoder Linears of a model already on the GPU (the random benchmark models), one layer at a
    time on the GPU (no trip through the CPU). Returns the number of layers replaced."""
    check_quantize_supported(mode, model.device)
    n = 0
    for parent, attr, _ in list(_decoder_linears(model)):
        lin = getattr(parent, attr)
        if not isinstance(lin, nn.Linear) or is_quantized_layer(lin):
            continue
        q = make_quantized_linear(lin.weight.data, lin.bias.data if lin.bias is not None else None, mode,
                                  model.device, lin.weight.dtype if lin.weight.dtype != torch.float32 else torch.bfloat16)
        setattr(parent, attr, q)
        del lin
        n += 1
    mark_quantized(model, mode)
    torch.cuda.empty_cache()
    return n


def is_quantized_layer(module) -> bool:
    mod = type(module).__module__ or ""
    return mod.startswith("bitsandbytes")


def quantized_mode(model) -> str | None:
    """"4bit", "8bit" or None, from the model's decoder layers."""
    for parent, attr, _ in _decoder_linears(model):
        layer = getattr(parent, attr)
        name = type(layer).__name__
        if name == "Linear4bit":
            return "4bit"
        if name == "Linear8bitLt":
            return "8bit"
    return None


@torch.no_grad()
def dequantize_llm(model, dtype: torch.dtype | None = None) -> int:
    """Replace every bitsandbytes layer of the decoder by a plain Linear with the dequantized weight (the exact
    values the quantized layer computes with), in ``dtype`` (default: the model's other weights'). Returns the
    number replaced."""
    import bitsandbytes as bnb

    if dtype is None:
        dtype = next((p.dtype for p in model.parameters() if p.is_floating_point()), torch.bfloat16)

    n = 0
    for parent, attr, _ in list(_decoder_linears(model)):
        q = getattr(parent, attr)
        kind = type(q).__name__
        if kind not in ("Linear4bit", "Linear8bitLt"):
            continue
        if kind == "Linear4bit":
            w = bnb.functional.dequantize_4bit(q.weight.data, q.weight.quant_state).to(dtype)
        else:  # the scales move to the layer's state on its first forward
            scb = q.weight.SCB if q.weight.SCB is not None else q.state.SCB
            w = (q.weight.data.float() * scb.float().unsqueeze(1) / 127.0).to(dtype)
        lin = nn.Linear(q.in_features, q.out_features, bias=q.bias is not None, device=w.device, dtype=dtype)
        lin.weight = nn.Parameter(w, requires_grad=False)
        if q.bias is not None:
            lin.bias = nn.Parameter(q.bias.data.to(dtype), requires_grad=False)
        setattr(parent, attr, lin)
        n += 1
    mark_quantized(model, None)
    return n


def mark_quantized(model, mode: str | None) -> None:
    """Tell peft (``is_loaded_in_4bit`` / ``_8bit``) and our runtime (``quantized``) what the LLM holds: peft then
    wraps bitsandbytes layers with its own LoRA layers, which can merge (dequantize, add, requantize)."""
    model.quantized = mode
    model.is_loaded_in_4bit = mode == "4bit"
    model.is_loaded_in_8bit = mode == "8bit"
