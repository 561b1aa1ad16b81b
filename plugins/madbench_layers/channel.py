"""Dense channel mixers (position-wise): SwiGLU (Sg) and MLP (M). No bias (the paper's rule).
The mixture of experts is in ``moe.py``.

- ``swiglu``: ``W2 (silu(W1 x) * W3 x)``, inner width 512 (paper B.3.1; mad-lab uses 352, D13).
  128 -> 512 -> 128: 3 * 128 * 512 = 196,608 parameters.
- ``mlp``: ``W2 gelu_tanh(W1 x)``, 128 -> 512 -> 128: 131,072 parameters.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class SwiGLU(nn.Module):
    """``W2 (silu(W1 x) * W3 x)``, no bias."""

    mixer_kind = "channel"

    def __init__(self, dim: int, inner: int = 512):
        super().__init__()
        self.gate = nn.Linear(dim, inner, bias=False)
        self.up = nn.Linear(dim, inner, bias=False)
        self.down = nn.Linear(inner, dim, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down(F.silu(self.gate(x)) * self.up(x))


class MLP(nn.Module):
    """``W2 gelu_tanh(W1 x)``, no bias."""

    mixer_kind = "channel"

    def __init__(self, dim: int, inner: int = 512):
        super().__init__()
        self.up = nn.Linear(dim, inner, bias=False)
        self.down = nn.Linear(inner, dim, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down(F.gelu(self.up(x), approximate="tanh"))


MIXERS = [
    ("swiglu", SwiGLU, {
        "kind": "channel", "shorthand": "Sg", "defaults": {"inner": 512},
        "description": "SwiGLU, inner width 512 (paper; mad-lab uses 352), no bias",
    }),
    ("mlp", MLP, {
        "kind": "channel", "shorthand": "M", "defaults": {"inner": 512},
        "description": "MLP 128 -> 512 -> 128, tanh-GELU, no bias",
    }),
]
