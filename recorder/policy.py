"""What a rollout needs of a policy: one typed protocol (``recorder`` never imports ``finetune``).

``finetune.runtime.Policy`` (a local checkpoint), ``finetune.server.RemotePolicy`` (a policy server) and the
test doubles satisfy it. The checkpoint attributes say which checkpoint the rollout episodes belong to:
``checkpoint_id`` (the store's checkpoint row when the store knows it; a server's or a double's own id
otherwise), ``checkpoint_label`` (``run/step``, for people), ``checkpoint_dir`` (the local folder, None for a
remote policy) and ``action_head`` (None when not said).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np


@runtime_checkable
class Policy(Protocol):
    camera_names: list[str]
    action_dim: int
    chunk_size: int
    checkpoint_id: int | str | None
    checkpoint_label: str | None
    checkpoint_dir: Path | None
    action_head: str | None

    def predict(self, images: dict[str, np.ndarray], state: np.ndarray | None, instruction: str) -> Any:
        """-> an output with ``actions`` (K, D), ``confidence`` (K,) | None, ``latency_s`` (and optionally
        ``held``: the chunk is a hold-still replacement)."""
        ...


def checkpoint_name(policy: Policy) -> str:
    """A readable checkpoint name: ``checkpoint_label`` (run/step) when the policy has one, else its id."""
    if policy.checkpoint_label:
        return str(policy.checkpoint_label)
    return str(policy.checkpoint_id) if policy.checkpoint_id is not None else "unknown"


def checkpoint_tag(policy: Policy) -> str:
    """``ckpt:<name>``: kept for readers of stores older than the episodes' ``checkpoint_id`` (and for remote
    policies the store does not know); the review groups by ``checkpoint_id`` when an episode has one."""
    return f"ckpt:{checkpoint_name(policy)}"


def head_tags(policy: Policy) -> list[str]:
    """``head:<name>`` when the policy says which action head it runs (the review compares heads by it)."""
    return [f"head:{policy.action_head}"] if policy.action_head else []


def store_checkpoint_id(store, policy: Policy) -> int | None:
    """The store's id of the policy's checkpoint, when the store knows it."""
    if isinstance(policy.checkpoint_id, int):
        return policy.checkpoint_id
    if policy.checkpoint_dir is not None:
        ck = store.find_checkpoint(policy.checkpoint_dir)
        if ck is not None:
            return int(ck.id)
    return None
