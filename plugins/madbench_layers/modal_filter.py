"""Long causal convolutions with a modal (damped complex exponential) filter.

The filter of channel ``c`` is, as in "Laughing Hyena Distillery" (Massaroli et al., 2023),

    h_c[t] = Re( sum_m R[c, m] * lambda[c, m] ** t ) + D[c] * delta[t],   t = 0, 1, ...

with learnable complex residues ``R``, complex poles
``lambda = exp(-softplus(a) + i * theta)`` (so ``|lambda| < 1``) and an optional direct
(feed-through) term ``D``. Such a filter is exactly a linear recurrence: per mode a complex state
``s[t] = lambda * s[t-1] + u[t]`` read out as ``y[t] = Re(sum_m R_m s_m[t]) + D u[t]``. Its state is
``2 * modes`` real numbers per channel (real and imaginary part of each mode), whatever the
sequence length.

Three ways to apply it, which the tests compare:

- ``fft_causal_conv(u, h)``: FFT convolution, O(L log L), the reference path of the layers;
- ``direct_causal_conv(u, h)``: the O(L^2) sum, a reference;
- ``ModalFilter.step``: the recurrence, one time step at a time.

The convolutions live in ``ops/long_conv`` (with a Triton kernel the layers use on CUDA) and are
re-exported here.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .ops.long_conv.reference import direct_causal_conv, fft_causal_conv

__all__ = ["ModalFilter", "direct_causal_conv", "fft_causal_conv"]


class ModalFilter(nn.Module):
    """``channels`` long filters, each a sum of ``modes`` damped complex exponentials.

    Decay times are initialised log-spaced between ``min_decay`` and ``max_decay`` steps
    (``|lambda| = exp(-1/tau)``), angles uniformly in [0, pi], and residues scaled by
    ``sqrt(1 - |lambda|^2)`` so that a slow mode does not dominate at initialisation.
    """

    def __init__(self, channels: int, modes: int, direct_term: bool = True,
                 min_decay: float = 1.0, max_decay: float = 256.0):
        super().__init__()
        self.channels, self.modes = channels, modes
        tau = torch.logspace(math.log10(min_decay), math.log10(max_decay), modes)
        tau = tau * torch.exp(0.1 * torch.randn(channels, modes))  # decorrelate channels
        self.decay = nn.Parameter(torch.log(torch.expm1(1.0 / tau)))  # softplus(a) = 1 / tau
        self.angle = nn.Parameter(math.pi * torch.rand(channels, modes))
        radius = torch.exp(-1.0 / tau)
        scale = torch.sqrt((1.0 - radius**2) / modes)
        self.residue_real = nn.Parameter(torch.randn(channels, modes) * scale)
        self.residue_imag = nn.Parameter(torch.randn(channels, modes) * scale)
        self.direct = nn.Parameter(torch.zeros(channels)) if direct_term else None
        for p in self.parameters():        # filters get no weight decay (paper App. C.2)
            p._no_weight_decay = True

    def state_size(self) -> int:
        """Real state elements per sequence: real and imaginary part of every mode."""
        return self.channels * self.modes * 2

    def forward(self, seq_len: int) -> torch.Tensor:
        """The impulse responses, shape (channels, seq_len), in at least float32."""
        dtype = torch.promote_types(self.decay.dtype, torch.float32)
        t = torch.arange(seq_len, dtype=dtype, device=self.decay.device)
        rate = F.softplus(self.decay.to(dtype))[..., None]        # (C, M, 1)
        angle = self.angle.to(dtype)[..., None] * t                # (C, M, L)
        envelope = torch.exp(-rate * t)
        h = envelope * (self.residue_real.to(dtype)[..., None] * torch.cos(angle)
                        - self.residue_imag.to(dtype)[..., None] * torch.sin(angle))
        h = h.sum(dim=1)
        if self.direct is not None:
            h = torch.cat([h[:, :1] + self.direct.to(dtype)[:, None], h[:, 1:]], dim=1)
        return h

    def initial_state(self, *shape: int, dtype=torch.float32) -> torch.Tensor:
        """A zero state of shape (*shape, channels, modes, 2): [..., 0] real, [..., 1] imaginary."""
        return torch.zeros(*shape, self.channels, self.modes, 2, dtype=dtype,
                           device=self.decay.device)

    def step(self, u: torch.Tensor, state: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """One time step of the recurrence. ``u``: (..., channels); ``state``: (..., channels,
        modes, 2). Returns the output (..., channels) and the new state."""
        radius = torch.exp(-F.softplus(self.decay))
        a, b = radius * torch.cos(self.angle), radius * torch.sin(self.angle)  # lambda = a + ib
        re, im = state[..., 0], state[..., 1]
        re, im = a * re - b * im + u[..., None], b * re + a * im
        y = (self.residue_real * re - self.residue_imag * im).sum(-1)
        if self.direct is not None:
            y = y + self.direct * u
        return y, torch.stack([re, im], dim=-1)
