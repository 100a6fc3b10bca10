"""Where vla-studio keeps its data (the store, calibration files): ``--home`` > ``$VLA_STUDIO_HOME`` >
``$XDG_DATA_HOME/vla-studio`` > ``~/.local/share/vla-studio``.

A neutral module: devices (calibration files) and the store both import it; devices never import the store.
"""

from __future__ import annotations

import os
from pathlib import Path

HOME_ENV = "VLA_STUDIO_HOME"


def default_home() -> Path:
    env = os.environ.get(HOME_ENV)
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_DATA_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".local" / "share"
    return base / "vla-studio"


def resolve_home(home: str | os.PathLike[str] | None) -> Path:
    return Path(home).expanduser() if home else default_home()
