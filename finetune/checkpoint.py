"""Checkpoints of a LoRA run: ``runs/<id>/checkpoints/<step>/`` plus ``checkpoints/last``.

A step folder holds::

    adapter/             peft's save_pretrained output (adapter_config.json, adapter_model.safetensors;
                         non-LoRA trainable modules such as a chunk head ride along as modules_to_save)
    training_state.pt    step, samples seen (data order position), optimizer, scheduler, RNG states
    norm_stats.json      OpenVLA-form statistics used to normalize actions (and proprio)
    config.json          {"config": FinetuneConfig, "model": {...what the runtime needs...}}

A step folder is written under a temporary name and renamed when complete; ``last`` is replaced
atomically after that, so a crash mid-save leaves the previous checkpoint as ``last``.
"""

from __future__ import annotations

import json
import os
import random
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch

from finetune.run_config import CHECKPOINTS_DIR, LAST_FILE, NORM_STATS_FILE, last_checkpoint
from recorder.errors import ModelError

ADAPTER_DIR = "adapter"
STATE_FILE = "training_state.pt"
CONFIG_FILE = "config.json"


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
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True, default=str))
    os.replace(tmp, path)


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
    final = ckpts / f"{step:07d}"
    tmp = ckpts / f".{step:07d}.partial"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    kw = {} if adapter_state is None else {"state_dict": adapter_state}
    model.save_pretrained(str(tmp / ADAPTER_DIR), safe_serialization=True, **kw)
    opt_state = optimizer.state_dict() if optimizer_state is None else optimizer_state
    state = {"step": int(step), "samples_seen": int(samples_seen), "optimizer": opt_state,
             "scheduler": scheduler.state_dict() if scheduler is not None else None, "rng": rng_state(),
             "extra": extra or {}}
    torch.save(state, tmp / STATE_FILE)
    (tmp / NORM_STATS_FILE).write_text(json.dumps(norm_stats, indent=2))
    (tmp / CONFIG_FILE).write_text(json.dumps({"config": config, "model": model_info}, indent=2, default=str))
    for name, text in (extra_files or {}).items():
        (tmp / name).write_text(text)
    if final.exists():
        shutil.rmtree(final)
    os.replace(tmp, final)
    last_tmp = ckpts / (LAST_FILE + ".tmp")
    last_tmp.write_text(final.name + "\n")
    os.replace(last_tmp, ckpts / LAST_FILE)
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


def load_training_state(ckpt_dir: Path) -> dict[str, Any]:
    path = Path(ckpt_dir) / STATE_FILE
    try:
        return torch.load(path, map_location="cpu", weights_only=False)
    except (OSError, RuntimeError, EOFError) as err:
        raise ModelError(f"{path}: cannot read the training state ({err}); resume from an older checkpoint") from None


def read_checkpoint_config(ckpt_dir: Path) -> dict:
    try:
        return json.loads((Path(ckpt_dir) / CONFIG_FILE).read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise ModelError(f"{ckpt_dir}/{CONFIG_FILE}: cannot read ({err}); is this a checkpoint folder?") from None


def resolve_checkpoint(path: Path) -> Path:
    """A run folder, a ``checkpoints`` folder or a step folder -> the step folder to load."""
    path = Path(path)
    if (path / STATE_FILE).is_file() or (path / ADAPTER_DIR).is_dir():
        return path
    for base in (path, path.parent):
        found = last_checkpoint(base)
        if found is not None:
            return found
    if path.name == CHECKPOINTS_DIR:
        found = last_checkpoint(path.parent)
        if found is not None:
            return found
    raise ModelError(f"{path} holds no checkpoint (no checkpoints/last and no adapter/): "
                     "pick a run folder or a checkpoint step folder")


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
