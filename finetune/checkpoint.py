"""Checkpoints of a LoRA run: ``runs/<id>/checkpoints/<step>/`` plus ``checkpoints/last``.

A step folder holds::

    adapter/             peft's save_pretrained output (adapter_config.json, adapter_model.safetensors;
                         non-LoRA trainable modules such as a chunk head ride along as modules_to_save)
    training_state.json  step, samples seen (data order position), optimizer hyper-parameters, scheduler,
                         RNG states: plain JSON; each tensor in it is a ``{"__tensor__": name}`` reference into
    training_state.safetensors   the optimizer moments and RNG state tensors
    norm_stats.json      OpenVLA-form statistics used to normalize actions (and proprio)
    config.json          {"config": FinetuneConfig, "model": {...what the runtime needs...}}

A step folder is written under a temporary name and renamed when complete; ``last`` is replaced
atomically after that, so a crash mid-save leaves the previous checkpoint as ``last``.

Nothing read from a checkpoint is unpickled: run folders come back from remote hosts (rsync), and a
pickle runs whatever code its author put in it. Checkpoints written before this format hold a pickled
``training_state.pt``; it is read with ``torch.load(weights_only=True)`` and an allow-list of the numpy
types an RNG state needs (tensors, numbers, strings and containers only), and anything else in it is
refused with a message.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from finetune.checkpoint_ref import (  # noqa: F401 - the checkpoint's file names, owned by checkpoint_ref
    ADAPTER_DIR,
    CONFIG_FILE,
    LEGACY_STATE_FILE,
    STATE_FILE,
    STATE_TENSORS_FILE,
    step_folder,
    step_name,
)
from finetune.run_config import CHECKPOINTS_DIR, LAST_FILE, NORM_STATS_FILE
from recorder.errors import ModelError
from recorder.fsutil import write_json_atomic as _write_json_atomic
from recorder.fsutil import write_text_atomic

_STATE_FORMAT = 1


def rng_state() -> dict[str, Any]:
    state = {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    np.random.set_state(state["numpy"])
    random.setstate(state["python"])
    if "cuda" in state and torch.cuda.is_available():
        try:
            torch.cuda.set_rng_state_all(state["cuda"])
        except (RuntimeError, IndexError):  # a different GPU count: keep the fresh CUDA state
            pass


def write_json_atomic(path: Path, data: Any) -> None:
    """The run's JSON files (``run.json``, ...): sorted keys, indent 2, through the one atomic writer."""
    _write_json_atomic(path, data, indent=2, sort_keys=True)


def save_checkpoint(run_path: Path, step: int, *, model, optimizer, scheduler, samples_seen: int,
                    norm_stats: dict, config: dict, model_info: dict, extra: dict | None = None,
                    adapter_state: dict | None = None, optimizer_state: dict | None = None,
                    extra_files: dict[str, str] | None = None) -> Path:
    """Write one complete checkpoint folder and point ``last`` at it. Returns the folder.

    ``adapter_state`` / ``optimizer_state``: the whole trainable weights / optimizer state gathered from
    sharded ranks (FSDP), written in place of the module's and optimizer's own (sharded) state.
    ``extra_files``: name -> text written into the folder too (the action head's side files: FAST's tokenizer)."""
    ckpts = Path(run_path) / CHECKPOINTS_DIR
    ckpts.mkdir(parents=True, exist_ok=True)
    final = ckpts / step_name(step)
    tmp = ckpts / f".{step_name(step)}.partial"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    kw = {} if adapter_state is None else {"state_dict": adapter_state}
    model.save_pretrained(str(tmp / ADAPTER_DIR), safe_serialization=True, **kw)
    opt_state = optimizer.state_dict() if optimizer_state is None else optimizer_state
    state = {"step": int(step), "samples_seen": int(samples_seen), "optimizer": opt_state,
             "scheduler": scheduler.state_dict() if scheduler is not None else None, "rng": rng_state(),
             "extra": extra or {}}
    write_training_state(tmp, state)
    (tmp / NORM_STATS_FILE).write_text(json.dumps(norm_stats, indent=2))
    (tmp / CONFIG_FILE).write_text(json.dumps({"config": config, "model": model_info}, indent=2, default=str))
    for name, text in (extra_files or {}).items():
        (tmp / name).write_text(text)
    if final.exists():
        shutil.rmtree(final)
    os.replace(tmp, final)
    write_text_atomic(ckpts / LAST_FILE, final.name + "\n")
    return final


def load_adapter_weights(model, ckpt_dir: Path) -> None:
    """Load a checkpoint's adapter (and modules_to_save) into an already wrapped peft model."""
    from peft import set_peft_model_state_dict
    from safetensors.torch import load_file

    path = Path(ckpt_dir) / ADAPTER_DIR / "adapter_model.safetensors"
    if not path.is_file():
        raise ModelError(f"{path} is missing: the checkpoint {ckpt_dir} is incomplete; resume from an older one")
    weights = load_file(str(path))
    result = set_peft_model_state_dict(model, weights)
    unexpected = getattr(result, "unexpected_keys", None)
    if unexpected:
        raise ModelError(f"{path} does not match this model ({len(unexpected)} unexpected keys such as "
                         f"{unexpected[0]}); resume with the base model the run was started with")


class _StateCodec:
    """Nested dicts/lists/tuples of tensors, numpy arrays, numbers and strings <-> JSON + named tensors."""

    def __init__(self, tensors: dict[str, torch.Tensor] | None = None) -> None:
        self.tensors: dict[str, torch.Tensor] = {} if tensors is None else tensors

    def encode(self, obj: Any) -> Any:
        if isinstance(obj, torch.Tensor):
            name = f"t{len(self.tensors)}"
            self.tensors[name] = obj.detach().cpu().contiguous()
            return {"__tensor__": name}
        if isinstance(obj, np.ndarray):
            name = f"t{len(self.tensors)}"
            self.tensors[name] = torch.from_numpy(np.ascontiguousarray(obj).copy())
            return {"__ndarray__": name}
        if isinstance(obj, np.generic):
            return obj.item()
        if isinstance(obj, tuple):
            return {"__tuple__": [self.encode(v) for v in obj]}
        if isinstance(obj, list):
            return [self.encode(v) for v in obj]
        if isinstance(obj, dict):
            if all(isinstance(k, str) and not k.startswith("__") for k in obj):
                return {k: self.encode(v) for k, v in obj.items()}
            return {"__items__": [[self.encode(k), self.encode(v)] for k, v in obj.items()]}
        if obj is None or isinstance(obj, bool | int | float | str):
            return obj
        raise TypeError(f"cannot store a {type(obj).__name__} in a training state")

    def decode(self, obj: Any) -> Any:
        if isinstance(obj, list):
            return [self.decode(v) for v in obj]
        if not isinstance(obj, dict):
            return obj
        if len(obj) == 1:
            (key, value), = obj.items()
            if key in ("__tensor__", "__ndarray__"):
                if not isinstance(value, str) or value not in self.tensors:
                    raise ValueError(f"names a tensor {value!r} that is not in {STATE_TENSORS_FILE}")
                tensor = self.tensors[value]
                return tensor.numpy() if key == "__ndarray__" else tensor
            if key == "__tuple__":
                return tuple(self.decode(v) for v in value)
            if key == "__items__":
                return {_hashable(self.decode(k)): self.decode(v) for k, v in value}
        return {k: self.decode(v) for k, v in obj.items()}


def _hashable(key: Any) -> Any:
    if isinstance(key, bool | int | float | str | tuple) or key is None:
        return key
    raise ValueError(f"a map key of type {type(key).__name__}")


def write_training_state(folder: Path, state: dict[str, Any]) -> None:
    """``state`` (tensors, numpy arrays, numbers, strings, containers) -> training_state.{json,safetensors}."""
    from safetensors.torch import save_file

    codec = _StateCodec()
    doc = {"format": _STATE_FORMAT, "state": codec.encode(state)}
    save_file(codec.tensors, str(Path(folder) / STATE_TENSORS_FILE))
    (Path(folder) / STATE_FILE).write_text(json.dumps(doc))


_REQUIRED = {"step": int, "samples_seen": int, "optimizer": dict, "rng": dict}


def load_training_state(ckpt_dir: Path) -> dict[str, Any]:
    """The training state of a checkpoint, read without unpickling anything (see the module docstring)."""
    folder = Path(ckpt_dir)
    path = folder / STATE_FILE
    if path.is_file():
        state = _load_json_state(folder, path)
    elif (folder / LEGACY_STATE_FILE).is_file():
        path = folder / LEGACY_STATE_FILE
        state = _load_legacy_state(path)
    else:
        raise ModelError(f"{path} is missing: the checkpoint {folder} is incomplete; resume from an older one")
    for key, kind in _REQUIRED.items():
        if not isinstance(state.get(key), kind):
            raise ModelError(f"{path}: not a training state ({key!r} is missing or not a {kind.__name__}); "
                             "resume from an older checkpoint or start a new run")
    return state


def _load_json_state(folder: Path, path: Path) -> dict[str, Any]:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        doc = json.loads(path.read_bytes())
        tensors_path = folder / STATE_TENSORS_FILE
        tensors = load_file(str(tensors_path)) if tensors_path.is_file() else {}
        if not isinstance(doc, dict) or doc.get("format") != _STATE_FORMAT or not isinstance(doc.get("state"), dict):
            raise ValueError(f"not a training state of format {_STATE_FORMAT}")
        return _StateCodec(tensors).decode(doc["state"])
    except (OSError, UnicodeDecodeError, ValueError, TypeError, SafetensorError) as err:
        # json.JSONDecodeError is a ValueError
        raise ModelError(f"{path}: cannot read the training state ({type(err).__name__}: "
                         f"{str(err).splitlines()[0] if str(err) else 'damaged'}); "
                         "resume from an older checkpoint or start a new run") from None


def _load_legacy_state(path: Path) -> dict[str, Any]:
    """A pickled state of an older version: torch's restricted unpickler (no code runs) plus the numpy types
    of ``np.random.get_state()``; a file needing anything else is refused."""
    import pickle

    from numpy._core.multiarray import _reconstruct

    allowed = [np.ndarray, np.dtype, type(np.dtype(np.uint32)), _reconstruct]
    try:
        with torch.serialization.safe_globals(allowed), warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # "pickle protocol 4 ... might not support": it does
            state = torch.load(path, map_location="cpu", weights_only=True)
    except (OSError, RuntimeError, EOFError, pickle.UnpicklingError, ValueError, TypeError, AttributeError) as err:
        first = (str(err).splitlines() or ["damaged"])[0]
        if "Weights only load failed" in first or isinstance(err, pickle.UnpicklingError):
            first = "not a plain training state: it is damaged or holds objects that loading would have to run"
        raise ModelError(f"{path}: cannot read the training state ({first}); nothing in it was run; "
                         "resume from an older checkpoint or start a new run") from None
    if not isinstance(state, dict):
        raise ModelError(f"{path}: not a training state (a {type(state).__name__}); "
                         "resume from an older checkpoint or start a new run")
    return state


def read_checkpoint_config(ckpt_dir: Path) -> dict:
    from finetune.run_config import read_json_object

    return read_json_object(Path(ckpt_dir) / CONFIG_FILE, error=ModelError,
                            fix="is this a checkpoint folder? pick another checkpoint")


def resolve_checkpoint(path: Path) -> Path:
    """A run folder, a ``checkpoints`` folder or a step folder -> the step folder to load
    (:func:`finetune.checkpoint_ref.step_folder`)."""
    return step_folder(path)


@dataclass
class TrainedModel:
    """A training checkpoint's model as :func:`load_trained_model` built it."""

    vla: Any  #: the VLA, the adapter merged in (or kept beside a 4-bit base, as trained)
    info: dict  #: the checkpoint's "model" block (``use_state`` filled in from the run config when missing)
    run_config: dict  #: the run's config (``FinetuneConfig`` as a dict)
    norm_stats: dict
    unnorm_key: str  #: the statistics the head was built with
    base: str  #: the base model it was fine-tuned from


def load_trained_model(ckpt: Path, *, dtype=None, device=None, quantize: str | None = None,
                       action_head: str | None = None, seed: int | None = None) -> TrainedModel:
    """The one loader of a training checkpoint (step folder): base model + head rebuilt in the shape the run
    trained (camera count, proprio size, chunk size, action head), then its LoRA adapter. Used by the policy
    runtime and the merged export alike.

    ``quantize``: None runs the checkpoint as it was trained (a QLoRA run on its 4-bit base, the adapter
    kept beside it); "none" gives the model dtype, a QLoRA run's base dequantized (the values it trained on)
    with the adapter merged; "4bit"/"8bit" quantize the LLM. ``action_head``: the head the caller expects
    (a ModelError naming the checkpoint's head otherwise). ``seed``: seed torch first (the export's
    reproducible build)."""
    import warnings

    from peft import PeftModel

    from finetune.models import load_vla
    from finetune.norm import load_norm_stats

    ckpt = Path(ckpt)
    meta = read_checkpoint_config(ckpt)
    info, run_cfg = meta.get("model") or {}, meta.get("config") or {}
    if not isinstance(info, dict) or not isinstance(run_cfg, dict):
        raise ModelError(f"{ckpt}/config.json: \"model\" and \"config\" must be JSON objects; "
                         "the checkpoint is damaged, pick another one")
    info, run_cfg = dict(info), dict(run_cfg)
    base = info.get("base_model") or run_cfg.get("model")
    if not base:
        raise ModelError(f"{ckpt}/config.json names no base model; re-save the checkpoint")
    norm_stats = load_norm_stats(ckpt / NORM_STATS_FILE)
    cams = info.get("cameras") or run_cfg.get("cameras") or None
    head = info.get("action_head") or run_cfg.get("action_head")
    if action_head and (head or "tokens") != action_head:
        raise ModelError(f"{ckpt}: this checkpoint was trained with the {head or 'tokens'} head and has no "
                         f"{action_head} head; pick a run fine-tuned with --action-head {action_head}")
    info.setdefault("use_state", bool(run_cfg.get("use_state", False)))
    dataset = run_cfg.get("dataset")
    key = info.get("unnorm_key") or (dataset if dataset in norm_stats else next(iter(norm_stats)))
    # the run's chunk size when the head's block lacks it, the config's default when the run's lacks it too
    # (before, the runtime fell back to 8 and the export to the config)
    from finetune.run_config import FinetuneConfig

    chunk_size = int(info.get("chunk_size") or run_cfg.get("chunk_size") or FinetuneConfig.chunk_size)
    trained_4bit = bool(run_cfg.get("quantize_4bit"))
    q = ("4bit" if trained_4bit else None) if quantize is None else (None if quantize == "none" else quantize)
    if seed is not None:
        torch.manual_seed(int(seed))
    vla = load_vla(base, dtype=dtype, device=device, action_head=head, chunk_size=chunk_size,
                   action_dim=info.get("action_dim"), n_images=len(cams) if cams else None,
                   state_dim=checkpoint_state_dim(info, norm_stats, key), norm_stats=norm_stats,
                   quantize=q or ("4bit" if trained_4bit else None), head_config=info.get("head_config"),
                   head_dir=ckpt if head == "fast" else None)
    if trained_4bit and not q:
        from finetune.models.quant import dequantize_llm

        dequantize_llm(vla)
    try:
        peft_model = PeftModel.from_pretrained(vla, str(ckpt / ADAPTER_DIR))
    except Exception as exc:
        raise ModelError(f"{ckpt}/{ADAPTER_DIR}: cannot apply the LoRA adapter to {base} ({type(exc).__name__}: "
                         f"{exc}); is the base model the one the run used?") from None
    if q and q == ("4bit" if trained_4bit else None):
        vla = peft_model.base_model.model  # the adapter stays beside the 4-bit layers, exactly as trained
    else:
        with warnings.catch_warnings():  # peft's "may get different generations due to rounding": known, measured
            warnings.filterwarnings("ignore", message="Merge lora module to")
            # on quantized layers peft merges layer by layer (dequantize, add, requantize)
            vla = peft_model.merge_and_unload()
    return TrainedModel(vla=vla, info=info, run_config=run_cfg, norm_stats=norm_stats, unnorm_key=key,
                        base=str(base))


def checkpoint_state_dim(info: dict, norm_stats: dict, key: str | None = None) -> int | None:
    """The proprio size a checkpoint's head was built with (chunk / flow heads trained with --use-state)."""
    if not info.get("use_state") or info.get("action_head") not in ("chunk", "flow"):
        return None
    key = key or info.get("unnorm_key") or next(iter(norm_stats))
    prop = norm_stats.get(key, {}).get("proprio")
    return len(prop["q01"]) if prop else None


def list_checkpoints(run_path: Path) -> list[Path]:
    ckpts = Path(run_path) / CHECKPOINTS_DIR
    if not ckpts.is_dir():
        return []
    return sorted(p for p in ckpts.iterdir() if p.is_dir() and not p.name.startswith(".") and p.name.isdigit())
