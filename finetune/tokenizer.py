"""OpenVLA's action tokenizer: uniform bins over [-1, 1] mapped onto the last tokens of the vocabulary.

Arithmetic, exactly as ``prismatic/vla/action_tokenizer.py`` (openvla/openvla):

- ``bins = linspace(-1, 1, n_bins)``; ``bin_centers`` are the ``n_bins - 1`` midpoints.
- encode: ``token = vocab_size - digitize(clip(a, -1, 1), bins)``; ``digitize`` returns 1..n_bins, so the
  tokens are ``vocab_size - n_bins .. vocab_size - 1`` (the last ``n_bins`` ids of the base vocabulary).
- decode: ``bin_centers[clip(vocab_size - token - 1, 0, n_bins - 2)]``.
- ``action_token_begin_idx = vocab_size - (n_bins + 1)``: a label is an action token iff ``label > begin``.

``vocab_size`` is the *tokenizer's* base vocabulary (32000 for Llama-2), not the padded embedding size
(32064): OpenVLA's config stores the padded size and subtracts ``pad_to_multiple_of``.
"""

from __future__ import annotations

import numpy as np

__all__ = ["ActionTokenizer"]


class ActionTokenizer:
    def __init__(self, n_bins: int = 256, vocab_size: int = 32000, min_action: float = -1.0, max_action: float = 1.0):
        if n_bins < 2 or vocab_size <= n_bins:
            raise ValueError(f"need 2 <= n_bins < vocab_size, got n_bins={n_bins} vocab_size={vocab_size}")
        self.n_bins = int(n_bins)
        self.vocab_size = int(vocab_size)
        self.min_action, self.max_action = float(min_action), float(max_action)
        self.bins = np.linspace(self.min_action, self.max_action, self.n_bins)
        self.bin_centers = (self.bins[:-1] + self.bins[1:]) / 2.0
        self.action_token_begin_idx = int(self.vocab_size - (self.n_bins + 1))

    @property
    def first_token(self) -> int:
        """Smallest token id an action can map to."""
        return self.vocab_size - self.n_bins

    @property
    def last_token(self) -> int:
        return self.vocab_size - 1

    def encode(self, actions: np.ndarray) -> np.ndarray:
        """Normalized actions (any shape) -> token ids (same shape, int64)."""
        a = np.clip(np.asarray(actions, dtype=np.float64), self.min_action, self.max_action)
        return (self.vocab_size - np.digitize(a, self.bins)).astype(np.int64)

    __call__ = encode

    def decode(self, token_ids) -> np.ndarray:
        """Token ids (any shape; numpy or torch) -> normalized actions (float32, same shape)."""
        ids = np.asarray(token_ids.detach().cpu() if hasattr(token_ids, "detach") else token_ids, dtype=np.int64)
        idx = np.clip(self.vocab_size - ids - 1, 0, self.bin_centers.shape[0] - 1)
        return self.bin_centers[idx].astype(np.float32)

    def snap(self, normalized) -> np.ndarray:
        """Decoded actions (float32, as :meth:`decode` / :meth:`decode_torch` give them) -> the exact float64
        bin centres they stand for (OpenVLA's ``predict_action`` works in float64)."""
        x = np.asarray(normalized, dtype=np.float64)
        idx = np.abs(x[..., None] - self.bin_centers).argmin(axis=-1)
        return self.bin_centers[idx]

    def decode_torch(self, token_ids):
        """Torch version of :meth:`decode` that stays on the tensor's device."""
        import torch

        centers = torch.as_tensor(self.bin_centers, dtype=torch.float32, device=token_ids.device)
        idx = (self.vocab_size - token_ids.long() - 1).clamp(0, centers.shape[0] - 1)
        return centers[idx]

    def is_action_token(self, token_ids):
        return token_ids > self.action_token_begin_idx

    def __repr__(self) -> str:
        return f"ActionTokenizer(n_bins={self.n_bins}, vocab_size={self.vocab_size})"
