"""VLA models: OpenVLA (Prismatic) natively, generic transformers VLMs, token-bin and chunk action heads.

    from finetune.models import load_vla, build_tiny_openvla, VLA, VLAOutput
"""

from __future__ import annotations

from .loader import load_vla
from .tiny import build_tiny_openvla
from .vla import IGNORE_INDEX, PROMPT_TEMPLATE, VLA, VLAOutput

__all__ = ["load_vla", "build_tiny_openvla", "VLA", "VLAOutput", "PROMPT_TEMPLATE", "IGNORE_INDEX"]
