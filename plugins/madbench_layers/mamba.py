"""Mamba: a selective state-space layer (Gu & Dao, "Mamba: Linear-Time Sequence Modeling with
Selective State Spaces", 2023).

``x, z = in_proj(u)``; ``x = silu(causal depthwise conv(x))``; from x, ``x_proj`` gives the
low-rank step ``dt`` and the input-dependent ``B``, ``C``; ``delta = softplus(dt_proj(dt))``;
the selective scan ``h_t = exp(delta_t A) h_{t-1} + delta_t B_t x_t``, ``y_t = C_t h_t + D x_t``
(one state of size d_state per inner channel, ``A = -exp(A_log)``, S4D-real initialisation);
``out_proj(y * silu(z))``.

Registered as ``mamba`` (Mb), MAD defaults at width 128: d_state 4, d_conv 4, expand 2 (inner
width 256), dt_rank 8; 107,008 parameters. Mamba mixes channels too, so its standard MAD model
is four Mamba layers. Paper rule: no bias in linear and conv layers (dt_proj keeps its bias,
which is Mamba's learned step offset); mad-lab's conv has a bias (+256 parameters, 107,264).

State per sequence: ``d_inner * d_state`` (1,024); the short-convolution cache
``d_inner * (d_conv - 1)`` (768) is reported separately by ``cache_size``.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .ops.selective_scan import selective_scan, selective_scan_naive  # noqa: F401
from .ops.short_conv import short_causal_conv


class Mamba(nn.Module):
    """Mamba mixer: gated selective SSM with a causal depthwise short convolution (the weights
    of ``self.conv``, applied by ``ops.short_conv``: a Triton kernel on CUDA)."""

    def __init__(self, dim: int, d_state: int = 4, d_conv: int = 4, expand: float = 2,
                 dt_rank: int | str = "auto", dt_min: float = 0.001, dt_max: float = 0.1,
                 dt_init_floor: float = 1e-4, dt_scale: float = 1.0, conv_bias: bool = True):
        super().__init__()
        self.d_inner = int(expand * dim)
        self.d_state, self.d_conv = d_state, d_conv
        self.dt_rank = math.ceil(dim / 16) if dt_rank == "auto" else int(dt_rank)
        self.in_proj = nn.Linear(dim, 2 * self.d_inner, bias=False)
        self.conv = nn.Conv1d(self.d_inner, self.d_inner, d_conv, groups=self.d_inner,
                              padding=d_conv - 1, bias=conv_bias)
        self.x_proj = nn.Linear(self.d_inner, self.dt_rank + 2 * d_state, bias=False)
        self.dt_proj = nn.Linear(self.dt_rank, self.d_inner, bias=True)
        self.dt_proj.bias._no_reinit = True  # the backbone zeroes other linear biases
        # Drawn here, before out_proj, so that one seed gives mamba-ssm's initial weights.
        self._init_dt(dt_min, dt_max, dt_init_floor, dt_scale)
        self.A_log = nn.Parameter(torch.log(torch.arange(1, d_state + 1, dtype=torch.float32))
                                  .repeat(self.d_inner, 1))  # S4D-real: A[:, n] = -(n + 1)
        self.D = nn.Parameter(torch.ones(self.d_inner))
        self.A_log._no_weight_decay = self.D._no_weight_decay = True  # as in Mamba
        self.out_proj = nn.Linear(self.d_inner, dim, bias=False)

    @torch.no_grad()
    def _init_dt(self, dt_min, dt_max, dt_init_floor, dt_scale):
        """Mamba's step initialisation: softplus(dt_proj bias) is log-uniform in [dt_min, dt_max]."""
        std = self.dt_rank ** -0.5 * dt_scale
        nn.init.uniform_(self.dt_proj.weight, -std, std)
        dt = torch.exp(torch.rand(self.d_inner) * (math.log(dt_max) - math.log(dt_min))
                       + math.log(dt_min)).clamp(min=dt_init_floor)
        self.dt_proj.bias.copy_(dt + torch.log(-torch.expm1(-dt)))  # inverse of softplus

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        xs, z = self.in_proj(x).chunk(2, dim=-1)
        # self.conv's first seq_len outputs (causal), read from the projection in place; made
        # channel-contiguous once, as x_proj and the scan read it (each would copy it)
        xs = short_causal_conv(xs.transpose(1, 2), self.conv.weight, self.conv.bias)
        xs = F.silu(xs).transpose(1, 2).contiguous()
        dt, B, C = self.x_proj(xs).split([self.dt_rank, self.d_state, self.d_state], dim=-1)
        dtype = torch.promote_types(x.dtype, torch.float32)  # the scan runs in fp32 at least
        # The step bias is added after the projection, in fp32 (as mamba-ssm and mad-lab do):
        # under bf16 autocast, adding it inside the projection would round the step itself.
        delta = F.softplus(F.linear(dt, self.dt_proj.weight).to(dtype)
                           + self.dt_proj.bias.to(dtype))
        A = -torch.exp(self.A_log.to(dtype))
        y = selective_scan(xs.to(dtype), delta, A, B.to(dtype), C.to(dtype), self.D.to(dtype))
        return self.out_proj((y * F.silu(z.to(dtype))).to(x.dtype))

    def state_size(self, seq_len: int) -> int:
        """d_inner * d_state: one SSM state per inner channel, independent of seq_len."""
        return self.d_inner * self.d_state

    def cache_size(self, seq_len: int) -> int:
        """The short convolution's cache: the last d_conv - 1 inputs of every inner channel."""
        return self.d_inner * (self.d_conv - 1)


MIXERS = [
    ("mamba", Mamba, {
        "kind": "sequence", "shorthand": "Mb", "defaults": {}, "mixes_channels": True,
        "description": "Mamba selective SSM, d_state 4, expand 2"}),
]
