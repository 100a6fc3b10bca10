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
