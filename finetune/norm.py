"""q01/q99 normalization of actions and proprio to [-1, 1], with statistics in OpenVLA's ``norm_stats`` form.

``norm_stats = {dataset_key: {"action": {"q01", "q99", "mean", "std", "min", "max", "mask"},
"proprio": {...}}}`` (lists of floats; ``mask`` a list of bools, False = leave that dimension as is,
e.g. a gripper that is already in [-1, 1] or binary). OpenVLA's formula:

    normalize:   x_n = clip(2 * (x - q01) / (q99 - q01 + 1e-8) - 1, -1, 1)     where mask
    unnormalize: x   = 0.5 * (x_n + 1) * (q99 - q01) + q01                        where mask

Dimensions whose mask is False pass through unchanged both ways.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from recorder.errors import ModelError
from recorder.stats import feature_stats

__all__ = [
    "compute_stats",
    "make_norm_stats",
    "Normalizer",
    "normalize",
    "unnormalize",
    "select_stats",
    "load_norm_stats",
    "save_norm_stats",
]

_EPS = 1e-8


def compute_stats(values: np.ndarray, mask: np.ndarray | list[bool] | None = None) -> dict[str, list]:
    """Statistics of an (N, D) array in OpenVLA's form."""
    x = np.asarray(values, dtype=np.float64)
    if x.ndim != 2 or x.shape[0] == 0:
        raise ValueError(f"compute_stats needs a non-empty (N, D) array, got shape {x.shape}")
    d = x.shape[1]
    m = np.ones(d, dtype=bool) if mask is None else np.asarray(mask, dtype=bool)
    if m.shape != (d,):
        raise ValueError(f"mask has shape {m.shape}, expected ({d},)")
    st = feature_stats(x, (0.01, 0.99))
    return {k: st[k].tolist() for k in ("mean", "std", "max", "min", "q01", "q99")} | {"mask": m.tolist()}


def make_norm_stats(
    key: str,
    actions: np.ndarray,
    proprio: np.ndarray | None = None,
    action_mask: list[bool] | None = None,
    num_trajectories: int | None = None,
) -> dict[str, Any]:
    """``{key: {"action": stats, "proprio": stats, "num_transitions": N}}`` (proprio omitted when None;
    ``num_trajectories`` added when given)."""
    entry: dict[str, Any] = {"action": compute_stats(actions, action_mask)}
    if proprio is not None:
        entry["proprio"] = compute_stats(proprio)
    entry["num_transitions"] = int(np.asarray(actions).shape[0])
    if num_trajectories is not None:
        entry["num_trajectories"] = int(num_trajectories)
    return {key: entry}


def select_stats(norm_stats: Mapping[str, Any], key: str | None = None, kind: str = "action") -> dict:
    """Pick one dataset's stats (the only one when ``key`` is None), as OpenVLA's ``_check_unnorm_key``."""
    if not norm_stats:
        raise ModelError("the checkpoint has no norm_stats: train it with vla-studio or add norm_stats to config.json")
    if key is None:
        if len(norm_stats) != 1:
            raise ModelError(f"norm_stats hold several datasets {sorted(norm_stats)}: choose one (unnorm_key)")
        key = next(iter(norm_stats))
    if key not in norm_stats:
        raise ModelError(f"norm_stats have no dataset {key!r}; choose one of {sorted(norm_stats)}")
    entry = norm_stats[key]
    if kind not in entry:
        raise ModelError(f"norm_stats[{key!r}] has no {kind!r} statistics")
    return entry[kind]


class Normalizer:
    """Vectorised normalize/unnormalize for one stats block (``norm_stats[key]["action"]``)."""

    def __init__(self, stats: Mapping[str, Any]):
        self.q01 = np.asarray(stats["q01"], dtype=np.float64)
        self.q99 = np.asarray(stats["q99"], dtype=np.float64)
        mask = stats.get("mask")
        self.mask = np.ones_like(self.q01, dtype=bool) if mask is None else np.asarray(mask, dtype=bool)
        if not (self.q01.shape == self.q99.shape == self.mask.shape) or self.q01.ndim != 1:
            raise ModelError("norm_stats q01/q99/mask have different lengths: recompute the dataset statistics")

    @property
    def dim(self) -> int:
        return int(self.q01.shape[0])

    def normalize(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, dtype=np.float64)
        n = np.clip(2.0 * (x - self.q01) / (self.q99 - self.q01 + _EPS) - 1.0, -1.0, 1.0)
        return np.where(self.mask, n, x).astype(np.float32)

    def unnormalize(self, x: np.ndarray, dtype=np.float32) -> np.ndarray:
        """OpenVLA's formula, term for term (float64; ``dtype=np.float64`` keeps its exact result)."""
        x = np.asarray(x, dtype=np.float64)
        u = 0.5 * (x + 1.0) * (self.q99 - self.q01) + self.q01
        return np.where(self.mask, u, x).astype(dtype)


def normalize(x: np.ndarray, stats: Mapping[str, Any]) -> np.ndarray:
    return Normalizer(stats).normalize(x)


def unnormalize(x: np.ndarray, stats: Mapping[str, Any]) -> np.ndarray:
    return Normalizer(stats).unnormalize(x)


def save_norm_stats(norm_stats: Mapping[str, Any], path: str | Path) -> Path:
    path = Path(path)
    path.write_text(json.dumps(norm_stats, indent=2))
    return path


def load_norm_stats(path: str | Path) -> dict[str, Any]:
    from finetune.run_config import read_json_object

    data = read_json_object(path, error=ModelError, fix="re-save the checkpoint or pick another one")
    if not all(isinstance(v, dict) for v in data.values()):
        raise ModelError(f"{path}: expected a JSON object of datasets, each an object of statistics; "
                         "re-save the checkpoint or pick another one")
    return data
