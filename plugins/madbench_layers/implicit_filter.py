"""Hyena's implicit long filter, as the reference implementation (mad-lab) parametrises it.

The filter of channel ``c`` at position ``t`` (of a sequence of ``max_length``) is a small MLP of
positional features, damped by a fixed exponential window:

    z[t]    = (t / (max_length - 1), cos(f w_t), -sin(f w_t)),   w_t = 2 pi t / max_length,
    a       = sin(omega * (W_0 z[t] + b_0));  a = sin(omega * (W_i a + b_i)), i = 1..depth
    h[c, t] = (W_out a)[c] * exp(-|delta_c| t / (max_length - 1))

with ``f = 1e-4`` (one frequency band), one learnable sine frequency ``omega`` per MLP unit shared
by every sine layer, the features ``z`` themselves learnable, and decay rates ``delta`` fixed and
spread linearly over the channels so that the window falls to ``target`` after between
``fast_decay`` and ``slow_decay`` of the normalised length. Parameter shapes match the reference
(``features`` (1, max_length, 3), ``frequency`` (1, order)), so optimiser rules that look at
shapes (weight decay on tensors of two or more axes) treat them alike. The MLP's layers draw
their initial weights in order (first, hidden, last), as the reference's do; the features,
frequency and window are not random.

State: an implicit filter is an arbitrary length-``max_length`` filter, so the exact recurrent
state of the convolution is not finite. The paper counts it as if the filter were distilled to
a recurrence of the MLP's width (``order``) per channel (``STATE_CONVENTION``).
"""
from __future__ import annotations

import math

import torch
from torch import nn

#: How layers with this filter count their state (reported by ``madbench check``).
STATE_CONVENTION = ("implicit long filters: state counted by the paper's convention, the filter "
                    "MLP's width per channel (as if distilled to a recurrence of that order); "
                    "the exact state grows with the sequence length")


class ImplicitFilter(nn.Module):
    """``channels`` implicit long filters of up to ``max_length`` taps (see module docstring)."""

    def __init__(self, channels: int, order: int, max_length: int, depth: int = 2,
                 frequency: float = 1.0, fast_decay: float = 0.3, slow_decay: float = 1.5,
                 target: float = 1e-2, band: float = 1e-4):
        super().__init__()
        if max_length < 2:
            raise ValueError(f"max_length must be at least 2, got {max_length}")
        self.channels, self.order, self.max_length = channels, order, max_length
        t = torch.linspace(0.0, 1.0, max_length)
        angle = 2 * math.pi * torch.arange(max_length, dtype=torch.float32) / max_length
        # cos and -sin as the real and imaginary parts of exp(-i f w_t), in complex64 as the
        # reference computes them: torch.cos rounds some values near 1 differently (1 ulp)
        rotation = torch.exp(-1j * torch.tensor(band) * angle)
        features = torch.stack([t, rotation.real, rotation.imag], dim=-1)
        self.features = nn.Parameter(features[None])               # (1, max_length, 3)
        self.register_buffer("time", t[None, :, None], persistent=False)
        self.frequency = nn.Parameter(torch.full((1, order), float(frequency)))
        self.first = nn.Linear(3, order)
        self.hidden = nn.ModuleList(nn.Linear(order, order) for _ in range(depth))
        self.last = nn.Linear(order, channels, bias=False)
        rates = torch.linspace(math.log(target) / slow_decay, math.log(target) / fast_decay,
                               channels)
        self.register_buffer("decay", rates.abs()[None, None], persistent=False)

    def forward(self, length: int) -> torch.Tensor:
        """The filters' first ``length`` taps, (channels, length)."""
        if length > self.max_length:
            raise ValueError(f"sequence length {length} exceeds the filter's max_length "
                             f"{self.max_length}")
        a = torch.sin(self.frequency * self.first(self.features[:, :length]))
        for layer in self.hidden:
            a = torch.sin(self.frequency * layer(a))
        h = self.last(a) * torch.exp(-self.time[:, :length] * self.decay)  # (1, length, C)
        return h[0].transpose(0, 1)
