"""``load_vla``: a local folder, a hub id, or ``"tiny"`` -> a :class:`VLA`."""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch

from recorder.errors import ModelError, one_line

from .vla import VLA

__all__ = ["load_vla", "resolve_model_dir", "load_weights_strict", "quantize_llm"]


def resolve_model_dir(path_or_id: str | Path) -> Path:
    if str(path_or_id) == "tiny":
        from .tiny import tiny_dir

        return tiny_dir()
    from finetune.run_config import check_model_spec

    local = check_model_spec(path_or_id)  # a missing folder or a file: ModelError
    if local is not None:
        return local
    s = str(path_or_id)
    try:
        from huggingface_hub import snapshot_download
    except ImportError:  # pragma: no cover - huggingface_hub comes with transformers
        raise ModelError(f"{s}: huggingface_hub is not installed; download the model folder and pass its path") from None
    try:
        local = snapshot_download(
            s, allow_patterns=["*.json", "*.safetensors", "tokenizer.model", "*.txt"],
            local_files_only=bool(os.environ.get("HF_HUB_OFFLINE")),
        )
    except Exception as exc:  # network, auth, missing repo, offline mode
        raise ModelError(
            f"{s}: could not get it from the Hugging Face hub ({type(exc).__name__}); "
            "check the id and network, or download the folder and pass its path") from None
    return Path(local)


def _weight_files(folder: Path) -> list[Path]:
    index = folder / "model.safetensors.index.json"
    if index.exists():
        try:
            wm = json.loads(index.read_text())["weight_map"]
        except (json.JSONDecodeError, KeyError):
            raise ModelError(f"{index}: not a safetensors index; re-download the model") from None
        files = sorted({folder / f for f in wm.values()})
    elif (folder / "model.safetensors").exists():
        files = [folder / "model.safetensors"]
    else:
        raise ModelError(f"{folder}: no model.safetensors (or index); only safetensors checkpoints are supported")
    missing = [f.name for f in files if not f.exists()]
    if missing:
        raise ModelError(f"{folder}: weight files missing ({', '.join(missing[:3])}); finish the download")
    return files


@torch.no_grad()
def load_weights_strict(model: torch.nn.Module, folder: Path, *, allow_missing_prefix: tuple[str, ...] = (),
                        consume=None) -> None:
    """Copy every tensor from the folder's safetensors into ``model``, one tensor at a time (peak memory = the
    model + one tensor). Strict: an unexpected key, a missing key (outside ``allow_missing_prefix``) or a shape
    mismatch is a ModelError naming the first offenders. ``consume``: a :class:`~.quant.QuantizingLoader` that
    takes the tensors of the layers it stands in for (its ``expected_keys()``) instead of the model."""
    from safetensors import safe_open

    files = _weight_files(folder)
    params = model.state_dict(keep_vars=True)
    seen = set()
    dev = next(model.parameters()).device
    handles = []
    for f in files:
        try:
            handles.append((f, safe_open(str(f), framework="pt", device="cpu")))
        except Exception as exc:
            raise ModelError(f"{f}: unreadable safetensors file ({exc}); re-download it") from None
    keys = {k: (f, h) for f, h in handles for k in h.keys()}
    taken = consume.expected_keys() if consume is not None else set()
    unexpected = sorted(set(keys) - set(params) - taken)
    missing = sorted(k for k in (set(params) | taken) - set(keys) if not k.startswith(allow_missing_prefix))
    if unexpected or missing:
        raise ModelError(
            f"{folder}: weights do not match the architecture in config.json "
            f"(missing {missing[:3]}{'...' if len(missing) > 3 else ''}, "
            f"unexpected {unexpected[:3]}{'...' if len(unexpected) > 3 else ''})")
    for k, (f, h) in keys.items():
        t = h.get_tensor(k)
        if k in taken:
            consume(k, t)
            seen.add(k)
            continue
        p = params[k]
        if tuple(t.shape) != tuple(p.shape):
            raise ModelError(f"{f}: {k} has shape {tuple(t.shape)}, the config expects {tuple(p.shape)}")
        p.copy_(t.to(device=dev, dtype=p.dtype), non_blocking=True)
        seen.add(k)
    if consume is not None:
        consume.finish()


def weight_shapes(folder: Path) -> tuple[dict[str, tuple], str]:
    """Every tensor's shape from the safetensors headers (no tensor is read), and the file name(s) for messages."""
    from safetensors import safe_open

    files = _weight_files(folder)
    shapes: dict[str, tuple] = {}
    for f in files:
        try:
            with safe_open(str(f), framework="pt", device="cpu") as h:
                for k in h.keys():
                    shapes[k] = tuple(h.get_slice(k).get_shape())
        except Exception as exc:
            raise ModelError(f"{f}: unreadable safetensors file ({exc}); re-download it") from None
    name = str(files[0]) if len(files) == 1 else f"{folder}/model-*.safetensors"
    return shapes, name


def _special_tokens(folder: Path) -> dict:
    out: dict = {}
    for name in ("special_tokens_map.json", "tokenizer_config.json"):
        f = folder / name
        if not f.exists():
            continue
        try:
            d = json.loads(f.read_text())
        except json.JSONDecodeError:
            raise ModelError(f"{f}: invalid JSON; re-download the tokenizer files") from None
        for key in ("bos_token", "eos_token", "unk_token", "pad_token"):
            v = d.get(key)
            if isinstance(v, dict):
                v = v.get("content")
            if isinstance(v, str) and key not in out:
                out[key] = v
    return out


def load_tokenizer(folder: Path):
    """The folder's tokenizer, from its files only: ``tokenizer.json`` (the fast tokenizer, used verbatim) or
    else ``tokenizer.model`` (a sentencepiece Llama tokenizer). Never AutoTokenizer: it can stop at transformers'
    interactive trust-remote-code prompt, a hang in a GUI child process. A folder with neither is one ModelError
    naming it."""
    import transformers

    folder = Path(folder)
    special = _special_tokens(folder)
    tj, sp = folder / "tokenizer.json", folder / "tokenizer.model"
    try:
        if tj.exists():
            tok = transformers.PreTrainedTokenizerFast(tokenizer_file=str(tj), **special)
        elif sp.exists():
            try:
                import sentencepiece  # noqa: F401
            except ImportError:
                raise ModelError(f"{sp}: reading a sentencepiece tokenizer needs sentencepiece "
                                 "(pip install sentencepiece), or put the model's tokenizer.json beside it") from None
            tok = transformers.LlamaTokenizer.from_pretrained(str(folder), **special)
        else:
            raise ModelError(f"{folder}: no tokenizer (neither tokenizer.json nor tokenizer.model is there); "
                             "copy the base model's tokenizer files into the folder")
    except ModelError:
        raise
    except Exception as exc:  # noqa: BLE001 - a corrupt file, a missing sentencepiece/protobuf
        f = tj if tj.exists() else sp
        raise ModelError(f"{f}: cannot load the tokenizer ({type(exc).__name__}: {one_line(exc)}); "
                         "re-download the base model's tokenizer files") from None
    tok.padding_side = "right"
    return tok


def _default_dtype(device: torch.device, dtype) -> torch.dtype:
    if dtype is not None:
        if isinstance(dtype, str):
            dtype = {"bf16": torch.bfloat16, "bfloat16": torch.bfloat16, "fp16": torch.float16,
                     "float16": torch.float16, "fp32": torch.float32, "float32": torch.float32}[dtype]
        return dtype
    return torch.bfloat16 if device.type == "cuda" else torch.float32


def build_openvla_empty(config: dict, tokenizer, device: torch.device, dtype: torch.dtype, *, quantize: str | None = None,
                        vit_configs=None, image_transform=None, **head_kw):
    """Construct on the meta device, then allocate (uninitialized) on ``device`` and rebuild the few buffers
    that are not in the state dict. Skips the slow random init: callers load or init weights next. With
    ``quantize`` the decoder Linears are left unallocated and a :class:`~.quant.QuantizingLoader` is returned
    beside the model (``(model, loader)``) for :func:`load_weights_strict`'s ``consume``."""
    from .openvla import OpenVLA

    prev = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        with torch.device("meta"):
            model = OpenVLA(config, tokenizer, vit_configs=vit_configs, image_transform=image_transform, **head_kw)
    finally:
        torch.set_default_dtype(prev)
    qloader = None
    if quantize:
        from .quant import QuantizingLoader

        qloader = QuantizingLoader(model, quantize, device, dtype if dtype != torch.float32 else torch.bfloat16)
    model.to_empty(device=device)
    _reset_buffers(model, device)
    return (model, qloader) if quantize else model


def _reset_buffers(model, device) -> None:
    vb = model.vision_backbone
    for i, c in enumerate(vb.cfgs):
        getattr(vb, f"_mean{i}").copy_(torch.tensor(c.mean).view(1, 3, 1, 1))
        getattr(vb, f"_std{i}").copy_(torch.tensor(c.std).view(1, 3, 1, 1))
    dec = model.language_model.model
    rot = dec.rotary_emb
    with torch.device(device):
        dec.rotary_emb = type(rot)(config=model.text_config)


def quantize_llm(model: VLA, mode: str) -> None:
    """Replace the LLM's decoder Linear layers of a model already on the GPU by bitsandbytes 4-bit (NF4) / 8-bit
    layers, quantized on the GPU layer by layer (the generic VLMs and the random benchmark models; OpenVLA folders
    quantize while loading, see :mod:`.quant`)."""
    from .quant import quantize_in_place

    quantize_in_place(model, mode)


def load_vla(path_or_id: str | Path, *, dtype=None, device=None, quantize: str | None = None,
             action_head: str | None = None, chunk_size: int = 8, action_dim: int | None = None,
             n_images: int | None = None, state_dim: int | None = None, head_hidden: int | None = None,
             norm_stats: dict | None = None, head_dir: str | Path | None = None, head_config: dict | None = None,
             require_trained_head: bool = False) -> VLA:
    """Load an OpenVLA-layout folder (published or ours), a generic transformers image-text-to-text VLM folder,
    a hub id, or ``"tiny"``.

    ``action_head``: "tokens" (OpenVLA bins, the default for published checkpoints) or "chunk" (continuous
    head; random-initialised unless the checkpoint has one). ``chunk_size`` applies to new chunk heads; a
    token head predicts one step (K=1) unless a checkpoint says otherwise. ``action_dim`` defaults to the
    checkpoint's head config, then the single dataset in ``norm_stats``, then 7.

    ``flow`` / ``fast`` (``finetune/models/action_heads.py``) also take ``chunk_size``. A FAST head reads its
    tokenizer from ``head_dir`` (a checkpoint folder) or the model folder when that was saved with one.
    ``require_trained_head``: a ModelError when the folder has no trained weights of the asked head (a policy
    must not run a random-initialised chunk head / flow expert).
    """
    from .openvla import read_config

    folder = resolve_model_dir(path_or_id)
    config = read_config(folder)
    dev = torch.device(device) if device is not None else torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dt = _default_dtype(dev, dtype)
    if quantize not in (None, "4bit", "8bit"):
        raise ModelError(f"quantize must be None, '4bit' or '8bit', got {quantize!r}")
    if quantize:
        from .quant import check_quantize_supported

        check_quantize_supported(quantize, dev)
    ours = dict(config.get("vla_studio") or {})
    stats = norm_stats
    if stats is None and (folder / "dataset_statistics.json").exists():
        # OpenVLA's fine-tuning writes its dataset's statistics here; its deploy.py uses them in place of
        # config.json's norm_stats, and so do we
        from ..norm import load_norm_stats

        stats = load_norm_stats(folder / "dataset_statistics.json")
    if stats is None:
        stats = config.get("norm_stats")
    saved_head = ours.get("action_head")
    head = action_head or saved_head or "tokens"
    if action_dim is None:
        action_dim = ours.get("action_dim")
    if action_dim is None and stats and len(stats) == 1:
        entry = next(iter(stats.values()))
        action_dim = len(entry["action"]["q01"]) if "action" in entry else None
    action_dim = int(action_dim or 7)
    if saved_head == head and "chunk_size" in ours:
        K = int(ours["chunk_size"])
    else:
        K = int(chunk_size) if head != "tokens" else 1
    if saved_head == head and head in ("chunk", "flow"):
        state_dim = ours.get("state_dim") if state_dim is None else state_dim
        head_hidden = ours.get("head_hidden") if head_hidden is None else head_hidden
    if require_trained_head and head in ("chunk", "flow") and saved_head != head:
        raise ModelError(f"{folder}: this model has no trained {head} head (it was saved with "
                         f"{saved_head or 'the tokens'} head); use a checkpoint fine-tuned with --action-head {head}")
    flow_kw = {k: v for k, v in ours.items() if k.startswith("flow_")} if saved_head == head == "flow" else {}
    flow_kw.update({k: v for k, v in (head_config or {}).items() if k.startswith("flow_")})
    n_img = int(n_images or ours.get("n_images") or 1)
    model_type = config.get("model_type", "")
    if model_type in ("openvla", "prismatic"):
        from .openvla import tower_ids, vit_configs_from
        from .preprocess import read_preprocessor

        tok = load_tokenizer(folder)
        n_towers = len(ours["vit_configs"]) if ours.get("vit_configs") else len(tower_ids(config))
        transform = None if ours.get("image_pipeline") == "fast" else read_preprocessor(folder, n_towers)
        shapes, wname = weight_shapes(folder)
        vits = vit_configs_from(config, shapes, wname, image_transform=transform)
        if head_hidden is None:
            head_hidden = 1024 if int(config.get("text_config", {}).get("hidden_size", 4096)) >= 1024 else 128
        built = build_openvla_empty(config, tok, dev, dt, quantize=quantize, vit_configs=vits,
                                    image_transform=transform, action_head=head, chunk_size=K, action_dim=action_dim,
                                    n_images=n_img, state_dim=state_dim, head_hidden=head_hidden, flow=flow_kw)
        model, qloader = built if quantize else (built, None)
        has_saved_head = saved_head == head and head in ("chunk", "flow")
        # quantized: each decoder weight is quantized on the GPU as it is read (never the whole bf16 model)
        load_weights_strict(model, folder,
                            allow_missing_prefix=() if has_saved_head else ("chunk_head.", "flow_head."),
                            consume=qloader)
        if head == "chunk" and not has_saved_head:
            _init_head(model)
        if head == "flow" and not has_saved_head:
            model.flow_head.reset_parameters()
        model.norm_stats = stats
    else:
        from .generic import load_generic_vlm

        model = load_generic_vlm(folder, config, dev, dt, action_head=head, chunk_size=K, action_dim=action_dim,
                                 n_images=n_img, state_dim=state_dim, head_hidden=head_hidden or 1024)
        if norm_stats is not None:
            model.norm_stats = norm_stats
        if quantize:
            quantize_llm(model, quantize)
    if head == "fast" and (head_dir is not None or saved_head == "fast"):
        model.head.load_files(Path(head_dir) if head_dir is not None else folder)
    model.source = str(path_or_id)
    model.model_dir = folder
    from .quant import mark_quantized

    mark_quantized(model, quantize)
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model


@torch.no_grad()
def _init_head(model: VLA, seed: int = 0) -> None:
    dev = model.device
    gen = torch.Generator(device=dev).manual_seed(seed)
    for name, p in model.chunk_head.named_parameters():
        if p.ndim == 1:
            p.fill_(1.0 if ".0.weight" in f".{name}" and "mlp.0" in name else 0.0)
        else:
            p.normal_(0.0, 0.02, generator=gen)
    # LayerNorm at the MLP input: weight 1, bias 0
    ln = model.chunk_head.mlp[0]
    ln.weight.fill_(1.0)
    ln.bias.zero_()
