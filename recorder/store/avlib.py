"""PyAV, imported when an episode's video is first written or read.

The index, the low-dim streams and everything that reads only them (fine-tuning set-up, the Meta-World bench on a
machine without PyAV) work where PyAV is not installed; the first video use says in one line what to install.
"""

from __future__ import annotations

import importlib

from recorder.errors import ConfigError


class _PyAV:
    """Stands for the ``av`` module: the first attribute looked up imports it (and ``av.video.reformatter``)."""

    _module = None

    def __getattr__(self, name: str):
        mod = _PyAV._module
        if mod is None:
            try:
                mod = importlib.import_module("av")
                importlib.import_module("av.video.reformatter")
            except ImportError as err:
                raise ConfigError(f"episode videos need PyAV, which does not import here ({err}): pip install av") \
                    from err
            _PyAV._module = mod
        return getattr(mod, name)


av = _PyAV()
