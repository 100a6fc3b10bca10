"""Continuous action-chunk head (OpenVLA-OFT style, L1-trained).

``K * D`` learned query embeddings are appended after the prompt; one forward pass of the LLM (causal
attention: query ``j`` sees the image, the prompt and queries ``< j``) gives their last hidden states,
which are grouped per time step ``(K, D * hidden)`` and mapped by an MLP to ``(K, D)`` continuous actions in
normalized units. An optional proprio projector turns the state into one more token before the queries.
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["ChunkHead"]


class ChunkHead(nn.Module):
    def __init__(self, hidden: int, chunk_size: int, action_dim: int, head_hidden: int = 1024, state_dim: int | None = None):
        super().__init__()
        self.chunk_size, self.action_dim, self.state_dim = int(chunk_size), int(action_dim), state_dim
        self.queries = nn.Parameter(torch.randn(self.chunk_size * self.action_dim, hidden) * 0.02)
        d_in = self.action_dim * hidden
        self.mlp = nn.Sequential(
            nn.LayerNorm(d_in),
            nn.Linear(d_in, head_hidden),
            nn.GELU(),
            nn.Linear(head_hidden, head_hidden),
            nn.GELU(),
            nn.Linear(head_hidden, self.action_dim),
        )
        self.proprio = (
            nn.Sequential(nn.Linear(state_dim, hidden), nn.GELU(), nn.Linear(hidden, hidden)) if state_dim else None
        )

    @property
    def n_queries(self) -> int:
        return self.chunk_size * self.action_dim

    def forward(self, query_hidden: torch.Tensor) -> torch.Tensor:
        """(B, K*D, hidden) -> (B, K, D)."""
        b = query_hidden.shape[0]
        x = query_hidden.reshape(b, self.chunk_size, -1)
        return self.mlp(x.to(self.mlp[1].weight.dtype)).float()

    def config(self) -> dict:
        return {
            "chunk_size": self.chunk_size,
            "action_dim": self.action_dim,
            "head_hidden": self.mlp[1].out_features,
            "state_dim": self.state_dim,
        }
