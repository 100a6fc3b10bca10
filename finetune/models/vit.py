"""A Vision Transformer with timm's exact module/state-dict names, for Prismatic's vision towers.

timm cannot be installed beside the CPU torch wheel, so the two towers OpenVLA uses are re-implemented here
with the parameter names of timm's ``VisionTransformer`` (as Prismatic patches it: LayerScale's ``gamma`` is
renamed ``scale_factor`` so that transformers does not rename it on load):

    patch_embed.proj.{weight,bias}  cls_token  reg_token  pos_embed
    blocks.N.{norm1, attn.qkv, attn.proj, ls1.scale_factor, norm2, mlp.fc1, mlp.fc2, ls2.scale_factor}
    norm.{weight,bias}   attn_pool.{latent, q, kv, proj, norm, mlp.fc1, mlp.fc2}   (SigLIP's MAP head)

``forward`` returns Prismatic's features: the patch tokens (prefix tokens dropped) after the *second-to-last*
block, without the final norm -- timm's ``get_intermediate_layers(x, n={depth - 2})``. The last block, ``norm`` and
``attn_pool`` are kept only so that published checkpoints load with ``strict=True``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["ViTConfig", "VisionTransformer", "TIMM_VIT_CONFIGS"]


@dataclass
class ViTConfig:
    img_size: int = 224
    patch_size: int = 14
    embed_dim: int = 1024
    depth: int = 24
    num_heads: int = 16
    mlp_hidden: int = 4096
    class_token: bool = True
    reg_tokens: int = 0
    no_embed_class: bool = False
    init_values: float | None = None  # LayerScale present when set
    global_pool: str = "token"  # "map" adds attn_pool (SigLIP)
    act: str = "gelu"  # "gelu" (exact erf) or "gelu_tanh"
    eps: float = 1e-6
    mean: tuple[float, float, float] = (0.5, 0.5, 0.5)
    std: tuple[float, float, float] = (0.5, 0.5, 0.5)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> ViTConfig:
        d = dict(d)
        for k in ("mean", "std"):
            if k in d:
                d[k] = tuple(d[k])
        return cls(**d)

    @property
    def num_patches(self) -> int:
        return (self.img_size // self.patch_size) ** 2


_IMAGENET_MEAN, _IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)

# timm model id -> our config (224 px, as Prismatic creates them with img_size=224)
TIMM_VIT_CONFIGS: dict[str, ViTConfig] = {
    "vit_large_patch14_reg4_dinov2.lvd142m": ViTConfig(
        embed_dim=1024, depth=24, num_heads=16, mlp_hidden=4096, class_token=True, reg_tokens=4,
        no_embed_class=True, init_values=1e-5, global_pool="token", mean=_IMAGENET_MEAN, std=_IMAGENET_STD,
    ),
    "vit_so400m_patch14_siglip_224": ViTConfig(
        embed_dim=1152, depth=27, num_heads=16, mlp_hidden=int(1152 * 3.7362), class_token=False, reg_tokens=0,
        no_embed_class=False, init_values=None, global_pool="map", mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5),
    ),
}
TIMM_VIT_CONFIGS["vit_large_patch14_reg4_dinov2"] = TIMM_VIT_CONFIGS["vit_large_patch14_reg4_dinov2.lvd142m"]


def _act(name: str):
    if name == "gelu":
        return nn.GELU()
    if name == "gelu_tanh":
        return nn.GELU(approximate="tanh")
    if name == "quick_gelu":
        return _QuickGELU()
    raise ValueError(f"unknown activation {name!r}")


class _QuickGELU(nn.Module):
    def forward(self, x):
        return x * torch.sigmoid(1.702 * x)


class PatchEmbed(nn.Module):
    def __init__(self, cfg: ViTConfig):
        super().__init__()
        self.proj = nn.Conv2d(3, cfg.embed_dim, cfg.patch_size, cfg.patch_size, bias=True)

    def forward(self, x):
        return self.proj(x).flatten(2).transpose(1, 2)


class Attention(nn.Module):
    def __init__(self, dim: int, num_heads: int):
        super().__init__()
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.qkv = nn.Linear(dim, dim * 3, bias=True)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x):
        b, n, c = x.shape
        qkv = self.qkv(x).reshape(b, n, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)
        x = F.scaled_dot_product_attention(q, k, v)
        return self.proj(x.transpose(1, 2).reshape(b, n, c))


class LayerScale(nn.Module):
    def __init__(self, dim: int, init_values: float):
        super().__init__()
        self.scale_factor = nn.Parameter(init_values * torch.ones(dim))

    def forward(self, x):
        return x * self.scale_factor


class Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int, act: str):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = _act(act)
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x):
        return self.fc2(self.act(self.fc1(x)))


class Block(nn.Module):
    def __init__(self, cfg: ViTConfig):
        super().__init__()
        d = cfg.embed_dim
        self.norm1 = nn.LayerNorm(d, eps=cfg.eps)
        self.attn = Attention(d, cfg.num_heads)
        self.ls1 = LayerScale(d, cfg.init_values) if cfg.init_values is not None else nn.Identity()
        self.norm2 = nn.LayerNorm(d, eps=cfg.eps)
        self.mlp = Mlp(d, cfg.mlp_hidden, cfg.act)
        self.ls2 = LayerScale(d, cfg.init_values) if cfg.init_values is not None else nn.Identity()

    def forward(self, x):
        x = x + self.ls1(self.attn(self.norm1(x)))
        return x + self.ls2(self.mlp(self.norm2(x)))


class AttentionPoolLatent(nn.Module):
    """timm's MAP head (SigLIP). Not used for Prismatic features; present for the state-dict layout."""

    def __init__(self, cfg: ViTConfig):
        super().__init__()
        d = cfg.embed_dim
        self.num_heads = cfg.num_heads
        self.latent = nn.Parameter(torch.zeros(1, 1, d))
        self.q = nn.Linear(d, d)
        self.kv = nn.Linear(d, 2 * d)
        self.proj = nn.Linear(d, d)
        self.norm = nn.LayerNorm(d, eps=cfg.eps)
        self.mlp = Mlp(d, cfg.mlp_hidden, cfg.act)

    def forward(self, x):
        b, n, c = x.shape
        h, hd = self.num_heads, c // self.num_heads
        q = self.q(self.latent.expand(b, -1, -1)).reshape(b, 1, h, hd).transpose(1, 2)
        k, v = self.kv(x).reshape(b, n, 2, h, hd).permute(2, 0, 3, 1, 4).unbind(0)
        y = F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(b, 1, c)
        y = self.proj(y)
        y = y + self.mlp(self.norm(y))
        return y[:, 0]


class VisionTransformer(nn.Module):
    def __init__(self, cfg: ViTConfig):
        super().__init__()
        self.cfg = cfg
        d = cfg.embed_dim
        self.embed_dim = d
        self.patch_embed = PatchEmbed(cfg)
        self.num_prefix_tokens = (1 if cfg.class_token else 0) + cfg.reg_tokens
        self.cls_token = nn.Parameter(torch.zeros(1, 1, d)) if cfg.class_token else None
        self.reg_token = nn.Parameter(torch.zeros(1, cfg.reg_tokens, d)) if cfg.reg_tokens else None
        n_pos = cfg.num_patches + (0 if cfg.no_embed_class else self.num_prefix_tokens)
        self.pos_embed = nn.Parameter(torch.randn(1, n_pos, d) * 0.02)
        self.blocks = nn.ModuleList([Block(cfg) for _ in range(cfg.depth)])
        self.norm = nn.LayerNorm(d, eps=cfg.eps)
        self.attn_pool = AttentionPoolLatent(cfg) if cfg.global_pool == "map" else None
        # Prismatic takes the output of block depth-2 (the second-to-last).
        self.feature_block = cfg.depth - 2

    def _pos_embed(self, x):
        b = x.shape[0]
        prefix = []
        if self.cls_token is not None:
            prefix.append(self.cls_token.expand(b, -1, -1))
        if self.reg_token is not None:
            prefix.append(self.reg_token.expand(b, -1, -1))
        if self.cfg.no_embed_class:
            x = x + self.pos_embed
            return torch.cat(prefix + [x], dim=1) if prefix else x
        if prefix:
            x = torch.cat(prefix + [x], dim=1)
        return x + self.pos_embed

    def forward(self, x, block_fn=None):
        """(B, 3, H, W) normalized pixels -> (B, num_patches, embed_dim) features of the second-to-last block.
        ``block_fn``: an optional (compiled) functional block, see :func:`block_forward` (inference only)."""
        x = self._pos_embed(self.patch_embed(x))
        for blk in self.blocks[: self.feature_block + 1]:
            x = blk(x) if block_fn is None else block_fn(x, *block_args(blk), self.cfg.num_heads, self.cfg.eps,
                                                          self.cfg.act)
        return x[:, self.num_prefix_tokens :]

    @torch.no_grad()
    def init_weights(self, generator: torch.Generator | None = None, std: float = 0.02) -> None:
        """Deterministic random init (truncated-normal-ish) used by the tiny factory."""
        for name, p in self.named_parameters():
            if name.endswith("scale_factor"):
                p.fill_(self.cfg.init_values if self.cfg.init_values is not None else 1.0)
            elif p.ndim == 1 and ("norm" in name):
                p.fill_(1.0 if name.endswith("weight") else 0.0)
            elif p.ndim == 1:
                p.zero_()
            else:
                p.copy_(torch.randn(p.shape, generator=generator) * std)


def block_args(blk: Block) -> tuple:
    ls1 = blk.ls1.scale_factor if isinstance(blk.ls1, LayerScale) else None
    ls2 = blk.ls2.scale_factor if isinstance(blk.ls2, LayerScale) else None
    return (blk.norm1.weight, blk.norm1.bias, blk.attn.qkv.weight, blk.attn.qkv.bias, blk.attn.proj.weight,
            blk.attn.proj.bias, ls1, blk.norm2.weight, blk.norm2.bias, blk.mlp.fc1.weight, blk.mlp.fc1.bias,
            blk.mlp.fc2.weight, blk.mlp.fc2.bias, ls2)


def block_forward(x, n1w, n1b, qkvw, qkvb, pw, pb, ls1, n2w, n2b, f1w, f1b, f2w, f2b, ls2, heads: int, eps: float,
                  act: str):
    """:class:`Block` as a pure function of its weights, so that one torch.compile serves every block."""
    B, N, C = x.shape
    y = F.layer_norm(x, (C,), n1w, n1b, eps)
    q, k, v = F.linear(y, qkvw, qkvb).reshape(B, N, 3, heads, C // heads).permute(2, 0, 3, 1, 4).unbind(0)
    y = F.linear(F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(B, N, C), pw, pb)
    x = x + (y * ls1 if ls1 is not None else y)
    y = F.linear(F.layer_norm(x, (C,), n2w, n2b, eps), f1w, f1b)
    if act == "gelu":
        y = F.gelu(y)
    elif act == "gelu_tanh":
        y = F.gelu(y, approximate="tanh")
    else:
        y = y * torch.sigmoid(1.702 * y)
    y = F.linear(y, f2w, f2b)
    return x + (y * ls2 if ls2 is not None else y)
