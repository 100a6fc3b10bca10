"""Flow-matching action expert (pi0's recipe, Physical-Intelligence/openpi ``models/pi0.py``).

A small transformer (the *action expert*) denoises a ``(K, D)`` chunk conditioned on the VLM's prefix
(image tokens + instruction). Expert layer ``j`` attends to its own tokens and to the keys/values the LLM
computed for the prefix at LLM layer ``layer_map[j]`` (pi0's shared attention, with the prefix computed once
per chunk and kept as a KV cache that every integration step reuses). With proprio, the state is one more
expert token (pi0's ``state_proj``).

Training (pi0 ``compute_loss``)::

    t ~ Beta(1.5, 1) * 0.999 + 0.001;  noise ~ N(0, I)
    x_t = t * noise + (1 - t) * actions;  u_t = noise - actions;  loss = mean((v(x_t, t) - u_t)^2)

Inference (pi0 ``sample_actions``): ``x_1 = noise``, ``dt = -1 / steps``, ``x <- x + dt * v(x, t)`` for
``steps`` Euler steps (default 10) down to ``t = 0``.

Time enters through pi0's sin-cos embedding (periods 4e-3 .. 4) concatenated with the action embedding and
mixed by a two-layer swish MLP (pi0's ``action_time_mlp``).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .vla import _rms

__all__ = ["FlowExpert", "sample_time", "posemb_sincos", "default_layer_map"]

MAX_EXPERT_LAYERS = 8  # more expert layers than this cost latency (one kernel chain per layer per Euler step)


def sample_time(n: int, device, generator=None) -> torch.Tensor:
    """pi0: ``Beta(1.5, 1) * 0.999 + 0.001`` (more weight on the noisy end). Drawn by inversion (the CDF of
    Beta(1.5, 1) is ``x ** 1.5``) from the seeded torch RNG, so a resumed run draws the same times."""
    u = torch.rand(n, generator=generator)
    return (u.pow(1.0 / 1.5) * 0.999 + 0.001).to(device)


def posemb_sincos(t: torch.Tensor, dim: int, min_period: float = 4e-3, max_period: float = 4.0) -> torch.Tensor:
    """pi0's ``posemb_sincos``: (B,) -> (B, dim)."""
    frac = torch.linspace(0.0, 1.0, dim // 2, device=t.device, dtype=torch.float32)
    period = min_period * (max_period / min_period) ** frac
    x = t.float()[:, None] * (1.0 / period)[None, :] * 2 * math.pi
    return torch.cat([torch.sin(x), torch.cos(x)], dim=-1)


def default_layer_map(n_llm_layers: int, n_expert_layers: int | None = None) -> list[int]:
    """Expert layer j reads the prefix K/V of LLM layer ``map[j]``: evenly spaced, ending at the last layer."""
    n = min(n_llm_layers, n_expert_layers or MAX_EXPERT_LAYERS)
    return [round((j + 1) * n_llm_layers / n) - 1 for j in range(n)]


class _RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float = 1e-6):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.eps = eps

    def forward(self, x):
        return _rms(x, self.weight, self.eps)


def expert_layer_fn(x, cos, sin, pk, pv, key_mask, ln1, eps1: float, wqkv, wo, ln2, eps2: float, wgu, wd,
                    n_heads: int, head_dim: int):
    """One expert layer as a pure function of its weights (static shapes): the eager path, and the function
    ``torch.compile`` fuses once for every layer and Euler step (``FlowHead`` with ``compile_decode``)."""
    from transformers.models.llama.modeling_llama import apply_rotary_pos_emb

    B, S, _ = x.shape
    h = _rms(x, ln1, eps1)
    q, k, v = F.linear(h, wqkv).view(B, S, 3, n_heads, head_dim).unbind(2)
    q, k, v = q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)
    q, k = apply_rotary_pos_emb(q, k, cos, sin)
    rep = n_heads // pk.shape[1]
    if rep > 1:
        pk, pv = pk.repeat_interleave(rep, dim=1), pv.repeat_interleave(rep, dim=1)
    K = torch.cat([pk.to(k.dtype), k], dim=2)
    V = torch.cat([pv.to(v.dtype), v], dim=2)
    o = F.scaled_dot_product_attention(q, K, V, attn_mask=key_mask)
    x = x + F.linear(o.transpose(1, 2).reshape(B, S, -1), wo)
    g, u = F.linear(_rms(x, ln2, eps2), wgu).chunk(2, dim=-1)
    return x + F.linear(F.silu(g) * u, wd)


class _ExpertLayer(nn.Module):
    def __init__(self, width: int, n_heads: int, head_dim: int, mlp: int):
        super().__init__()
        self.n_heads, self.head_dim = n_heads, head_dim
        self.ln1 = _RMSNorm(width)
        self.qkv = nn.Linear(width, 3 * n_heads * head_dim, bias=False)
        self.o = nn.Linear(n_heads * head_dim, width, bias=False)
        self.ln2 = _RMSNorm(width)
        self.gate_up = nn.Linear(width, 2 * mlp, bias=False)
        self.down = nn.Linear(mlp, width, bias=False)

    def forward(self, x, cos, sin, pk, pv, key_mask, fn=expert_layer_fn):
        return fn(x, cos, sin, pk, pv, key_mask, self.ln1.weight, float(self.ln1.eps), self.qkv.weight, self.o.weight,
                  self.ln2.weight, float(self.ln2.eps), self.gate_up.weight, self.down.weight, self.n_heads,
                  self.head_dim)


class FlowExpert(nn.Module):
    """The action expert. ``forward(x_t, t, prefix_kv, ...)`` -> velocity ``(B, K, D)`` (float32)."""

    def __init__(self, *, chunk_size: int, action_dim: int, width: int, n_heads: int, head_dim: int,
                 layer_map: list[int], state_dim: int | None = None, mlp_ratio: int = 4, steps: int = 10,
                 samples: int = 4):
        super().__init__()
        self.chunk_size, self.action_dim, self.width = int(chunk_size), int(action_dim), int(width)
        self.n_heads, self.head_dim = int(n_heads), int(head_dim)
        self.layer_map = [int(i) for i in layer_map]
        self.state_dim = state_dim
        self.mlp_ratio = int(mlp_ratio)
        self.steps = int(steps)  # Euler steps at inference
        self.samples = int(samples)  # chunks drawn from different noise per prediction (their spread = confidence)
        self.action_in = nn.Linear(self.action_dim, width)
        self.time_mlp_in = nn.Linear(2 * width, width)
        self.time_mlp_out = nn.Linear(width, width)
        self.state_in = nn.Linear(state_dim, width) if state_dim else None
        self.layers = nn.ModuleList(_ExpertLayer(width, n_heads, head_dim, mlp_ratio * width) for _ in self.layer_map)
        self.norm = _RMSNorm(width)
        self.action_out = nn.Linear(width, self.action_dim)

    @property
    def n_tokens(self) -> int:
        return self.chunk_size + (1 if self.state_in is not None else 0)

    def config(self) -> dict:
        return {"chunk_size": self.chunk_size, "action_dim": self.action_dim, "flow_width": self.width,
                "flow_layer_map": list(self.layer_map), "state_dim": self.state_dim, "flow_mlp_ratio": self.mlp_ratio,
                "flow_steps": self.steps, "flow_samples": self.samples}

    @torch.no_grad()
    def reset_parameters(self, seed: int = 0) -> None:
        """Deterministic init: normal(0, 0.02) matrices, zero biases, ones for the norms."""
        gen = torch.Generator(device="cpu").manual_seed(seed)
        for name, p in self.named_parameters():
            if name.endswith("ln1.weight") or name.endswith("ln2.weight") or name == "norm.weight":
                p.fill_(1.0)
            elif p.ndim == 1:
                p.zero_()
            else:
                p.copy_(torch.randn(p.shape, generator=gen) * 0.02)

    def time_projection(self, t: torch.Tensor) -> torch.Tensor:
        """The time half of ``time_mlp_in`` (+ its bias) for times ``t`` (B,) -> (B, 1, width). It does not
        depend on the noisy chunk, so sampling computes it once for all Euler steps."""
        dt = self.action_in.weight.dtype
        w_t = self.time_mlp_in.weight[:, self.width:]
        return F.linear(posemb_sincos(t, self.width).to(dt), w_t, self.time_mlp_in.bias)[:, None, :]

    def forward(self, x_t, t, prefix_kv, key_mask, cos, sin, state=None, *, tproj=None, layer_fn=None):
        """``x_t`` (B, K, D); ``t`` (B,); ``prefix_kv``: per expert layer (K, V) each (B, n_kv, T, hd);
        ``key_mask`` (B, 1, 1, T + S) bool; ``cos``/``sin`` rotary tables at the expert tokens' positions.
        ``tproj``: :meth:`time_projection` of ``t`` when precomputed; ``layer_fn``: a compiled
        :func:`expert_layer_fn`. pi0's action-time MLP: ``W [a; temb] + b`` computed as ``W_a a + (W_t temb + b)``."""
        dt = self.action_in.weight.dtype
        a = self.action_in(x_t.to(dt))
        if tproj is None:
            tproj = self.time_projection(t)
        h = self.time_mlp_out(F.silu(F.linear(a, self.time_mlp_in.weight[:, : self.width]) + tproj))
        if self.state_in is not None:
            h = torch.cat([self.state_in(state.to(dt))[:, None, :], h], dim=1)
        for layer, (pk, pv) in zip(self.layers, prefix_kv):
            h = layer(h, cos, sin, pk, pv, key_mask, layer_fn or expert_layer_fn)
        out = self.action_out(self.norm(h[:, -self.chunk_size:]))
        return out.float()
