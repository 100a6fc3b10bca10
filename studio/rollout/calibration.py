"""Camera calibration files for the path overlay on real cameras (``recorder.rollout.PinholeCalibration``).

A JSON or TOML file with one entry per real camera::

    {"front": {"intrinsics": [[fx, 0, cx], [0, fy, cy], [0, 0, 1]],
               "world_to_camera": [[r, r, r, tx], [r, r, r, ty], [r, r, r, tz], [0, 0, 0, 1]]}}

(TOML: a ``[front]`` table with the same two keys). The sim projects exactly and needs none.
"""

from __future__ import annotations

import json
import tomllib
from pathlib import Path

import numpy as np

from recorder.errors import ConfigError


def load_calibrations(path: str | Path | None, cameras: list[str] | None = None) -> dict:
    """camera name -> PinholeCalibration; {} for no path. ConfigError (one line naming the file) on a bad file.

    ``cameras``: when given, every calibrated camera must be one of them.
    """
    from recorder.rollout import PinholeCalibration

    if path is None or not str(path).strip():
        return {}
    path = Path(str(path).strip()).expanduser()
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"calibration file {path} does not exist: pick a JSON or TOML calibration file") from None
    except OSError as err:
        raise ConfigError(f"calibration file {path} cannot be read ({err.strerror})") from None
    try:
        data = tomllib.loads(text) if path.suffix.lower() == ".toml" else json.loads(text)
    except (json.JSONDecodeError, tomllib.TOMLDecodeError) as err:
        kind = "TOML" if path.suffix.lower() == ".toml" else "JSON"
        raise ConfigError(f"calibration file {path} is not valid {kind} ({err})") from None
    if not isinstance(data, dict) or not data or not all(isinstance(v, dict) for v in data.values()):
        raise ConfigError(f"calibration file {path}: expected {{camera: {{intrinsics: 3x3, world_to_camera: 4x4}}}}")
    out = {}
    for cam, d in data.items():
        try:
            calib = PinholeCalibration.from_dict(d)
        except ConfigError as err:
            raise ConfigError(f"calibration file {path}: camera '{cam}': {str(err).split(': ', 1)[-1]}") from None
        K, T = np.asarray(calib.intrinsics), np.asarray(calib.world_to_camera)
        if not (np.isfinite(K).all() and np.isfinite(T).all()):
            raise ConfigError(f"calibration file {path}: camera '{cam}': numbers must be finite")
        if K[0, 0] <= 0 or K[1, 1] <= 0:
            raise ConfigError(f"calibration file {path}: camera '{cam}': intrinsics fx and fy must be positive")
        out[str(cam)] = calib
    if cameras is not None:
        unknown = sorted(set(out) - set(cameras))
        if unknown:
            raise ConfigError(f"calibration file {path}: camera(s) {', '.join(unknown)} not in the rig "
                              f"(it has {', '.join(cameras) or 'no cameras'})")
    return out


__all__ = ["load_calibrations"]
