"""The MAD backbones, readable top to bottom.

- ``LanguageModel``: token embedding (no positional embedding), pre-norm residual blocks
  ``x + layer(norm(x))``, final norm, untied linear head with bias (as mad-lab).
- ``AutoEncoder`` (compression task): the same encoder, the representation at the last position
  (no final norm), and a two-layer MLP decoder that receives that vector plus a fixed sin-cos
  embedding of each output position and predicts the token there.
"""
from __future__ import annotations

import math

import torch
from torch import nn

from .architecture import ArchitectureSpec, build_mixer


def make_norm(dim: int) -> nn.Module:
    return nn.RMSNorm(dim, eps=1e-5)


class Block(nn.Module):
    """One pre-norm residual block around one mixer."""

    def __init__(self, mixer: nn.Module, dim: int):
        super().__init__()
        self.norm = make_norm(dim)
        self.mixer = mixer

    def forward(self, x: torch.Tensor, context: dict | None = None) -> torch.Tensor:
        if context is not None and getattr(self.mixer, "uses_context", False):
            return x + self.mixer(self.norm(x), context=context)
        return x + self.mixer(self.norm(x))


class Encoder(nn.Module):
    """Embedding plus the architecture's residual blocks."""

    def __init__(self, spec: ArchitectureSpec, vocab_size: int):
        super().__init__()
        self.embedding = nn.Embedding(vocab_size, spec.dim)
        nn.init.normal_(self.embedding.weight, std=0.02)
        self.blocks = nn.ModuleList(Block(build_mixer(l, spec.dim), spec.dim) for l in spec.layers)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        x = self.embedding(tokens)
        context: dict = {}  # what layers share within one forward pass (RWKV-7's v_first)
        for block in self.blocks:
            x = block(x, context)
        return x


class LanguageModel(nn.Module):
    """Predicts a token at every input position."""

    def __init__(self, spec: ArchitectureSpec, vocab_size: int):
        super().__init__()
        self.encoder = Encoder(spec, vocab_size)
        self.norm = make_norm(spec.dim)
        self.head = nn.Linear(spec.dim, vocab_size, bias=True)
        nn.init.zeros_(self.head.bias)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.head(self.norm(self.encoder(tokens)))


def auxiliary_loss(model: nn.Module) -> torch.Tensor | None:
    """The sum of the auxiliary losses (e.g. a router's load-balancing loss) that mixers left
    in ``aux_loss`` during the last training forward pass; None when there are none."""
    losses = [m.aux_loss for m in model.modules()
              if isinstance(getattr(m, "aux_loss", None), torch.Tensor)]
    return torch.stack([l.float() for l in losses]).sum() if losses else None


def sincos_embedding(length: int, dim: int) -> torch.Tensor:
    """Fixed sinusoidal position embedding [length, dim]: sines first, then cosines."""
    half = dim // 2
    freq = torch.exp(-math.log(10000.0) * torch.arange(half, dtype=torch.float32) / half)
    angles = torch.arange(length, dtype=torch.float32)[:, None] * freq[None, :]
    emb = torch.cat([angles.sin(), angles.cos()], dim=1)
    return nn.functional.pad(emb, (0, dim - 2 * half))


class AutoEncoder(nn.Module):
    """Compression: encode the sequence, keep the last position, decode every token."""

    def __init__(self, spec: ArchitectureSpec, vocab_size: int, length: int):
        super().__init__()
        d = spec.dim
        self.encoder = Encoder(spec, vocab_size)
        self.register_buffer("positions", sincos_embedding(length, d), persistent=False)
        self.decoder = nn.Sequential(make_norm(d), nn.Linear(d, d), nn.GELU(),
                                     make_norm(d), nn.Linear(d, d), nn.GELU(), make_norm(d))
        self.head = nn.Linear(d, vocab_size, bias=True)
        nn.init.zeros_(self.head.bias)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        pooled = self.encoder(tokens)[:, -1]                      # [B, d]
        length = tokens.shape[1]
        h = pooled[:, None, :] + self.positions[:length].to(pooled.dtype)[None]
        return self.head(self.decoder(h))


def build_model(spec: ArchitectureSpec, vocab_size: int, seq_len: int,
                kind: str = "lm") -> nn.Module:
    """The backbone a task needs: ``lm`` or ``autoencoder``."""
    if kind == "autoencoder":
        return AutoEncoder(spec, vocab_size, seq_len)
    return LanguageModel(spec, vocab_size)
