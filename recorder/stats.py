"""Per-dimension statistics of a feature (an (N, D) array of one stream over many frames): one copy for the
store's dataset statistics, the LeRobot exporter's ``stats.json`` and the fine-tune's ``norm_stats``."""

from __future__ import annotations

import numpy as np

__all__ = ["feature_stats"]


def feature_stats(values: np.ndarray, quantiles: tuple[float, ...] = (0.01, 0.99)) -> dict[str, np.ndarray]:
    """``min``, ``max``, ``mean``, ``std`` (population), ``count`` (a 1-element int64 array) and one
    ``qNN`` per quantile (``0.01`` -> ``q01``), each a float64 array of length D.

    A 1-D array is one dimension (N, 1). Raises ValueError on an empty array."""
    x = np.asarray(values, dtype=np.float64)
    if x.ndim == 1:
        x = x[:, None]
    if x.ndim != 2 or x.shape[0] == 0:
        raise ValueError(f"feature statistics need a non-empty (N, D) array, got shape {x.shape}")
    out = {
        "min": x.min(axis=0),
        "max": x.max(axis=0),
        "mean": x.mean(axis=0),
        "std": x.std(axis=0),
        "count": np.array([x.shape[0]], dtype=np.int64),
    }
    if quantiles:
        for q, row in zip(quantiles, np.quantile(x, list(quantiles), axis=0)):
            out[f"q{round(q * 100):02d}"] = row
    return out
