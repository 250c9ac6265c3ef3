"""A GPT-2-style decoder-only Transformer for next-token prediction (docs/science.md section 9).

Token embedding, optional learned or fixed sinusoidal position embedding, `depth` blocks of causal multi-head
self-attention (torch's scaled_dot_product_attention) and a GELU MLP (4x width), each with a LayerNorm before
(Pre-LN) or after (Post-LN) its residual branch, an optional final LayerNorm and an untied readout to the
vocabulary. SP initialization as GPT-2: weights N(0, 0.02^2), the residual branches' output projections
N(0, (0.02 / sqrt(2 depth))^2), biases zero, LayerNorms at identity; `parametrization: mup` multiplies the readout
by 1 / sqrt(width), as for the FCN. No dropout, so the loss on a fixed batch is a deterministic function of the
parameters and its Hessian is well defined.

Inputs are token ids (N, T) (int64); outputs are logits (N, T, vocabulary), scored by the token-level losses of
whywarmup.losses.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.attention import SDPBackend, sdpa_kernel

from .sections import TransformerConfig

__all__ = ["Transformer", "TransformerConfig", "sinusoidal_positions"]

INIT_STD = 0.02  # GPT-2's initialization scale


def sinusoidal_positions(context: int, width: int) -> torch.Tensor:
    """The fixed position embedding of Vaswani et al.: sin on even, cos on odd channels, wavelengths up to 1e4."""
    position = torch.arange(context, dtype=torch.float64)[:, None]
    rate = torch.exp(-math.log(10_000.0) * torch.arange(0, width, 2, dtype=torch.float64) / width)
    table = torch.zeros(context, width, dtype=torch.float64)
    table[:, 0::2] = torch.sin(position * rate)
    table[:, 1::2] = torch.cos(position * rate[: width // 2])
    return table.float()


class CausalSelfAttention(nn.Module):
    def __init__(self, width: int, heads: int):
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(width, 3 * width)
        self.proj = nn.Linear(width, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, t, d = x.shape
        q, k, v = (z.view(n, t, self.heads, d // self.heads).transpose(1, 2) for z in self.qkv(x).split(d, dim=2))
        # the math kernel: the fused CPU / flash kernels have no second derivative, and sharpness needs one
        with sdpa_kernel(SDPBackend.MATH):
            out = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        return self.proj(out.transpose(1, 2).reshape(n, t, d))


class Block(nn.Module):
    def __init__(self, cfg: TransformerConfig):
        super().__init__()
        self.pre = cfg.norm_position == "pre"
        self.norm1 = nn.LayerNorm(cfg.width)
        self.attn = CausalSelfAttention(cfg.width, cfg.heads)
        self.norm2 = nn.LayerNorm(cfg.width)
        self.mlp = nn.Sequential(nn.Linear(cfg.width, 4 * cfg.width), nn.GELU(), nn.Linear(4 * cfg.width, cfg.width))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.pre:  # x + f(LN(x))
            x = x + self.attn(self.norm1(x))
            return x + self.mlp(self.norm2(x))
        x = self.norm1(x + self.attn(x))  # LN(x + f(x))
        return self.norm2(x + self.mlp(x))


class Transformer(nn.Module):
    """Decoder-only Transformer: token ids (N, T) -> next-token logits (N, T, vocabulary)."""

    def __init__(self, cfg: TransformerConfig, vocabulary: int, context: int):
        super().__init__()
        self.context = context
        self.tokens = nn.Embedding(vocabulary, cfg.width)
        if cfg.position == "learned":
            self.positions = nn.Parameter(torch.zeros(context, cfg.width))
            nn.init.normal_(self.positions, 0.0, INIT_STD)
        else:
            self.register_buffer("positions", sinusoidal_positions(context, cfg.width), persistent=False)
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.depth))
        self.norm = nn.LayerNorm(cfg.width) if cfg.final_norm else nn.Identity()
        self.readout = nn.Linear(cfg.width, vocabulary, bias=False)
        self.readout_scale = 1.0 / math.sqrt(cfg.width) if cfg.parametrization == "mup" else 1.0
        for name, p in self.named_parameters():
            if name.endswith("bias"):
                nn.init.zeros_(p)
            elif p.dim() >= 2 and name != "positions":
                # the residual branches' last layers are scaled down with depth, as in GPT-2
                last = name.endswith("attn.proj.weight") or name.endswith("mlp.2.weight")
                nn.init.normal_(p, 0.0, INIT_STD / math.sqrt(2 * cfg.depth) if last else INIT_STD)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        t = tokens.shape[1]
        if t > self.context:
            raise ValueError(f"a window of {t} tokens is longer than the model's context ({self.context})")
        h = self.tokens(tokens) + self.positions[:t].to(self.tokens.weight.dtype)
        for block in self.blocks:
            h = block(h)
        return self.readout(self.norm(h)) * self.readout_scale
