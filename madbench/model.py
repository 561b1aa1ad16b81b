"""The MAD backbones, readable top to bottom.

- ``LanguageModel``: token embedding (no positional embedding), pre-norm residual blocks
  ``x + layer(norm(x))``, final norm, untied linear head with bias (as mad-lab).
- ``AutoEncoder`` (compression task): the same encoder, the representation at the last position
  (no final norm), and a two-layer MLP decoder that receives that vector plus a fixed sin-cos
  embedding of each output position and predicts the token there.

Initialisation follows mad-lab's backbones: the language model zeroes every linear bias (weights
keep their own init), the autoencoder re-draws every linear and embedding weight N(0, 0.02) and
zeroes linear biases; a bias marked ``_no_reinit`` (Mamba's step bias) is left alone in both.
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

    def __init__(self, spec: ArchitectureSpec, vocab_size: int, seq_len: int | None = None):
        super().__init__()
        self.embedding = nn.Embedding(vocab_size, spec.dim)
        nn.init.normal_(self.embedding.weight, std=0.02)
        self.blocks = nn.ModuleList(Block(build_mixer(l, spec.dim, seq_len), spec.dim)
                                    for l in spec.layers)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        x = self.embedding(tokens)
        context: dict = {}  # what layers share within one forward pass (RWKV-7's v_first)
        for block in self.blocks:
            x = block(x, context)
        return x


def zero_linear_biases(module: nn.Module) -> None:
    """mad-lab's language-model initialisation: every linear bias starts at zero, except one
    marked ``bias._no_reinit = True`` (Mamba's step bias); weights keep their own init."""
    for m in module.modules():
        if isinstance(m, nn.Linear) and m.bias is not None \
                and not getattr(m.bias, "_no_reinit", False):
            nn.init.zeros_(m.bias)


def reinit_autoencoder(module: nn.Module, std: float = 0.02) -> None:
    """mad-lab's autoencoder initialisation, over the whole model, mixers included: linear and
    embedding weights N(0, std), linear biases zero. One deviation: a bias marked
    ``_no_reinit`` (Mamba's step bias) keeps its own initialisation, as in the language model."""
    for m in module.modules():
        if isinstance(m, (nn.Linear, nn.Embedding)):
            nn.init.normal_(m.weight, std=std)
        if isinstance(m, nn.Linear) and m.bias is not None \
                and not getattr(m.bias, "_no_reinit", False):
            nn.init.zeros_(m.bias)


class LanguageModel(nn.Module):
    """Predicts a token at every input position. ``seq_len`` reaches mixers that take a
    ``max_length`` (see ``build_mixer``)."""

    def __init__(self, spec: ArchitectureSpec, vocab_size: int, seq_len: int | None = None):
        super().__init__()
        self.encoder = Encoder(spec, vocab_size, seq_len)
        self.norm = make_norm(spec.dim)
        self.head = nn.Linear(spec.dim, vocab_size, bias=True)
        zero_linear_biases(self)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.head(self.norm(self.encoder(tokens)))


def auxiliary_loss(model: nn.Module) -> torch.Tensor | None:
    """The sum of the auxiliary losses (e.g. a router's load-balancing loss) that mixers left
    in ``aux_loss`` during the last training forward pass; None when there are none."""
    losses = [m.aux_loss for m in model.modules()
              if isinstance(getattr(m, "aux_loss", None), torch.Tensor)]
    return torch.stack([l.float() for l in losses]).sum() if losses else None


def sincos_embedding(length: int, dim: int) -> torch.Tensor:
    """Fixed sinusoidal position embedding [length, dim]: sines first, then cosines, with
    frequencies ``10000 ** (-i / (half - 1))`` (mad-lab's ``posemb_sincos_1d``)."""
    half = dim // 2
    freq = torch.exp(-math.log(10000.0) * torch.arange(half, dtype=torch.float32)
                     / max(half - 1, 1))
    angles = torch.arange(length, dtype=torch.float32)[:, None] * freq[None, :]
    emb = torch.cat([angles.sin(), angles.cos()], dim=1)
    return nn.functional.pad(emb, (0, dim - 2 * half))


class AutoEncoder(nn.Module):
    """Compression: encode the sequence, keep the last position, decode every token."""

    def __init__(self, spec: ArchitectureSpec, vocab_size: int, length: int):
        super().__init__()
        d = spec.dim
        self.encoder = Encoder(spec, vocab_size, length)
        self.register_buffer("positions", sincos_embedding(length, d), persistent=False)
        self.decoder = nn.Sequential(make_norm(d), nn.Linear(d, d), nn.GELU(),
                                     make_norm(d), nn.Linear(d, d), nn.GELU(), make_norm(d))
        self.head = nn.Linear(d, vocab_size, bias=True)
        reinit_autoencoder(self)

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
    return LanguageModel(spec, vocab_size, seq_len)
