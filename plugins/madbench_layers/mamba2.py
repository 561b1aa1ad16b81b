"""Mamba-2 (Dao & Gu, "Transformers are SSMs: Generalized Models and Efficient Algorithms
Through Structured State Space Duality", ICML 2024), laid out as flash-linear-attention's and
mamba-ssm's ``Mamba2`` with one group.

``z, xBC, dt = in_proj(u)``; ``x, B, C = silu(causal depthwise conv(xBC))``; per head (head
size P, ``heads = d_inner / P``) a scalar step ``dt = softplus(dt + dt_bias)`` and a scalar
``A = -exp(A_log)``; the SSD scan ``S_t = exp(dt_t A) S_{t-1} + dt_t B_t^T x_t``,
``y_t = C_t S_t + D x_t``; a gated RMSNorm ``rmsnorm(y * silu(z))`` over the inner width;
``out_proj``.

Registered as ``mamba2`` (M2); MAD width 128: expand 2 (d_inner 256), head size 64 (4 heads),
d_state 4, d_conv 4: state ``d_inner * d_state`` = 1,024 (as Mamba's, so four layers hold the
paper's 4,096; the ``mamba2-<channel>`` presets use d_state 8, 2,048 per layer). The short
convolution caches ``(d_inner + 2 d_state) * (d_conv - 1)`` = 792 numbers. Mamba-2 mixes
channels too (gate and expansion), so its standard MAD model is four Mamba-2 layers, as for
Mamba. Paper rule: no bias in the projections and the convolution (Mamba-2's own convolution
has one); dt_bias is Mamba-2's learned step offset.

The scan is ``ops.ssd.ssd``, which runs madbench's chunked GLA op (Triton kernel on CUDA).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .ops.ssd import ssd, ssd_recurrent  # noqa: F401 (re-exported)

__all__ = ["Mamba2", "MIXERS"]


class Mamba2(nn.Module):
    """Mamba-2 mixer: gated SSD with scalar decays per head and a causal short convolution."""

    def __init__(self, dim: int, d_state: int = 4, d_conv: int = 4, expand: float = 2,
                 head_dim: int = 64, A_init_range: tuple[float, float] = (1, 16),
                 dt_min: float = 0.001, dt_max: float = 0.1, dt_init_floor: float = 1e-4,
                 chunk_size: int = 16, norm_eps: float = 1e-5):
        super().__init__()
        self.d_inner = int(expand * dim)
        head_dim = min(head_dim, self.d_inner)
        if self.d_inner % head_dim:
            raise ValueError(f"inner width {self.d_inner} must be a multiple of head_dim "
                             f"{head_dim}")
        self.d_state, self.d_conv, self.head_dim = d_state, d_conv, head_dim
        self.num_heads = self.d_inner // head_dim
        self.chunk_size, self.norm_eps = chunk_size, norm_eps
        self.conv_dim = self.d_inner + 2 * d_state
        self.in_proj = nn.Linear(dim, self.d_inner + self.conv_dim + self.num_heads, bias=False)
        self.conv = nn.Conv1d(self.conv_dim, self.conv_dim, d_conv, groups=self.conv_dim,
                              padding=d_conv - 1, bias=False)
        self.A_log = nn.Parameter(torch.empty(self.num_heads).uniform_(*A_init_range).log())
        dt = torch.exp(torch.rand(self.num_heads) * (math.log(dt_max) - math.log(dt_min))
                       + math.log(dt_min)).clamp(min=dt_init_floor)
        self.dt_bias = nn.Parameter(dt + torch.log(-torch.expm1(-dt)))   # softplus^-1
        self.D = nn.Parameter(torch.ones(self.num_heads))
        self.A_log._no_weight_decay = self.dt_bias._no_weight_decay = True
        self.D._no_weight_decay = True
        self.norm_weight = nn.Parameter(torch.ones(self.d_inner))
        self.out_proj = nn.Linear(self.d_inner, dim, bias=False)

    def forward(self, u: torch.Tensor) -> torch.Tensor:
        batch, seq_len, _ = u.shape
        dtype = torch.promote_types(u.dtype, torch.float32)   # the scan runs in fp32 at least
        z, xbc, dt = self.in_proj(u).split([self.d_inner, self.conv_dim, self.num_heads], -1)
        xbc = F.silu(self.conv(xbc.transpose(1, 2))[..., :seq_len].transpose(1, 2))
        x, B, C = xbc.to(dtype).split([self.d_inner, self.d_state, self.d_state], dim=-1)
        dt = F.softplus(dt.to(dtype) + self.dt_bias.to(dtype)).transpose(1, 2)  # (b, h, L)
        A = -torch.exp(self.A_log.to(dtype))
        x = x.view(batch, seq_len, self.num_heads, self.head_dim).transpose(1, 2)
        y = ssd(x, dt, A, B, C, self.chunk_size) + self.D.to(dtype)[:, None, None] * x
        y = y.transpose(1, 2).reshape(batch, seq_len, self.d_inner)
        y = F.rms_norm(y * F.silu(z.to(dtype)), (self.d_inner,), self.norm_weight.to(dtype),
                       self.norm_eps)
        return self.out_proj(y.to(u.dtype))

    def state_size(self, seq_len: int) -> int:
        """d_inner * d_state: an N x P matrix per head, independent of seq_len."""
        return self.d_inner * self.d_state

    def cache_size(self, seq_len: int) -> int:
        """The short convolution's cache: the last d_conv - 1 inputs of x, B and C."""
        return self.conv_dim * (self.d_conv - 1)


MIXERS = [
    ("mamba2", Mamba2, {
        "kind": "sequence", "shorthand": "M2", "defaults": {}, "mixes_channels": True,
        "description": "Mamba-2 (SSD), d_state 4, expand 2, head size 64"}),
]
