"""DeltaNet (Schlag et al. 2021; Yang et al., "Parallelizing Linear Transformers with the Delta
Rule over Sequence Length", 2024) and Gated DeltaNet (Yang et al., "Gated Delta Networks:
Improving Mamba2 with Delta Rule", ICLR 2025), laid out as flash-linear-attention's layers.

Per head, with q and k L2-normalised and ``beta_t = sigmoid(x_t W_beta)`` (times 2 with
``allow_neg_eigval``):

    S_t = alpha_t (I - beta_t k_t^T k_t) S_{t-1} + beta_t k_t^T v_t,     o_t = q_t S_t / sqrt(dk)

DeltaNet has alpha = 1. Gated DeltaNet has Mamba-2's forget gate
``log alpha_t = -exp(A_log) softplus(x_t W_a + dt_bias)`` (one per head and step). q, k and v
come from bias-free projections followed by a causal depthwise short convolution (width 4) and
SiLU; the head outputs go through a per-head RMSNorm (Gated DeltaNet: times ``swish(x W_g)``,
the output gate), then the output projection.

Registered layers (MAD width 128): ``deltanet`` (Dn) and ``gated-deltanet`` (GDn), both 8 heads
of 16: state ``heads * dk * dv`` = 2,048 per layer, so two of them hold the paper's 4,096. The
short convolutions cache ``(2 key_dim + value_dim) * (conv_size - 1)`` = 1,152 numbers (outside
the 4,096, as for Hyena and Mamba).

The op is ``ops.delta_rule.delta_rule``: fla's Triton kernel on CUDA when flash-linear-attention
is installed, else the pure-PyTorch chunked form (the CPU path and the test oracle).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .ops.delta_rule import delta_rule, delta_rule_recurrent  # noqa: F401 (re-exported)

__all__ = ["DeltaNet", "GatedDeltaNet", "CausalShortConv", "MIXERS"]


class CausalShortConv(nn.Module):
    """Causal depthwise convolution of width ``width`` over (batch, seq_len, channels), then an
    optional SiLU; no bias (paper rule). It caches the last ``width - 1`` inputs per channel."""

    def __init__(self, channels: int, width: int = 4, activation: bool = True):
        super().__init__()
        self.channels, self.width, self.activation = channels, width, activation
        self.weight = nn.Parameter(torch.empty(channels, 1, width))
        nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))   # as nn.Conv1d

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.conv1d(F.pad(x.transpose(1, 2), (self.width - 1, 0)), self.weight.to(x.dtype),
                     groups=self.channels).transpose(1, 2)
        return F.silu(y) if self.activation else y

    def cache_size(self) -> int:
        return self.channels * (self.width - 1)


class DeltaNet(nn.Module):
    """DeltaNet layer: projections, short convolutions, L2-normalised q and k, the delta rule,
    per-head RMSNorm (optionally gated), output projection."""

    gated = False

    def __init__(self, dim: int, num_heads: int = 8, head_dim: int | None = None,
                 expand_v: float = 1.0, use_short_conv: bool = True, conv_size: int = 4,
                 use_gate: bool | None = None, allow_neg_eigval: bool = False,
                 chunk_size: int = 16, norm_eps: float = 1e-5):
        super().__init__()
        head_dim = head_dim or dim // num_heads
        if head_dim < 1 or (head_dim * expand_v) % 1:
            raise ValueError(f"head_dim {head_dim} times expand_v {expand_v} must be a positive "
                             "integer")
        self.num_heads, self.head_k_dim = num_heads, head_dim
        self.head_v_dim = int(head_dim * expand_v)
        self.key_dim, self.value_dim = num_heads * self.head_k_dim, num_heads * self.head_v_dim
        self.use_gate = self.gated if use_gate is None else use_gate
        self.allow_neg_eigval, self.chunk_size, self.norm_eps = allow_neg_eigval, chunk_size, norm_eps
        self.q_proj = nn.Linear(dim, self.key_dim, bias=False)
        self.k_proj = nn.Linear(dim, self.key_dim, bias=False)
        self.v_proj = nn.Linear(dim, self.value_dim, bias=False)
        self.b_proj = nn.Linear(dim, num_heads, bias=False)
        if self.gated:
            self.a_proj = nn.Linear(dim, num_heads, bias=False)
            # Mamba-2's initialisation: A in [1, 16], softplus(dt_bias) log-uniform in [1e-3, 0.1]
            self.A_log = nn.Parameter(torch.empty(num_heads).uniform_(1, 16).log())
            dt = torch.exp(torch.rand(num_heads) * (math.log(0.1) - math.log(1e-3))
                           + math.log(1e-3)).clamp(min=1e-4)
            self.dt_bias = nn.Parameter(dt + torch.log(-torch.expm1(-dt)))  # softplus^-1
            self.A_log._no_weight_decay = self.dt_bias._no_weight_decay = True
        self.conv_size = conv_size if use_short_conv else 0
        if use_short_conv:
            self.q_conv = CausalShortConv(self.key_dim, conv_size)
            self.k_conv = CausalShortConv(self.key_dim, conv_size)
            self.v_conv = CausalShortConv(self.value_dim, conv_size)
        if self.use_gate:
            self.g_proj = nn.Linear(dim, self.value_dim, bias=False)
        self.norm_weight = nn.Parameter(torch.ones(self.head_v_dim))
        self.o_proj = nn.Linear(self.value_dim, dim, bias=False)

    def _heads(self, t: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
        """(batch, seq_len, heads * d) -> (batch, heads, seq_len, d)."""
        batch, seq_len, _ = t.shape
        return t.view(batch, seq_len, self.num_heads, -1).transpose(1, 2).to(dtype)

    def log_alpha(self, x: torch.Tensor) -> torch.Tensor | None:
        """The forget gate in log space, (batch, heads, seq_len); None for DeltaNet."""
        if not self.gated:
            return None
        dtype = torch.promote_types(x.dtype, torch.float32)
        a = self.a_proj(x).to(dtype) + self.dt_bias.to(dtype)
        return (-self.A_log.to(dtype).exp() * F.softplus(a)).transpose(1, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, seq_len, _ = x.shape
        dtype = torch.promote_types(x.dtype, torch.float32)   # the op runs in fp32 at least
        q, k, v = self.q_proj(x), self.k_proj(x), self.v_proj(x)
        if self.conv_size:
            q, k, v = self.q_conv(q), self.k_conv(k), self.v_conv(v)
        else:
            q, k, v = F.silu(q), F.silu(k), F.silu(v)
        q = F.normalize(self._heads(q, dtype), dim=-1, eps=1e-6)
        k = F.normalize(self._heads(k, dtype), dim=-1, eps=1e-6)
        v = self._heads(v, dtype)
        beta = torch.sigmoid(self.b_proj(x).to(dtype)).transpose(1, 2)
        if self.allow_neg_eigval:
            beta = 2 * beta
        o = delta_rule(q, k, v, beta, self.log_alpha(x), self.head_k_dim ** -0.5,
                       self.chunk_size)
        o = F.rms_norm(o, (self.head_v_dim,), self.norm_weight.to(dtype), self.norm_eps)
        o = o.transpose(1, 2).reshape(batch, seq_len, self.value_dim).to(x.dtype)
        if self.use_gate:
            o = o * F.silu(self.g_proj(x))
        return self.o_proj(o)

    def state_size(self, seq_len: int) -> int:
        """heads * dk * dv: one dk x dv matrix per head, independent of seq_len."""
        return self.num_heads * self.head_k_dim * self.head_v_dim

    def cache_size(self, seq_len: int) -> int:
        """The short convolutions' cache: the last conv_size - 1 inputs of q, k and v."""
        return (2 * self.key_dim + self.value_dim) * max(self.conv_size - 1, 0)


class GatedDeltaNet(DeltaNet):
    """Gated DeltaNet layer: DeltaNet with Mamba-2's per-head forget gate and an output gate."""

    gated = True


MIXERS = [
    ("deltanet", DeltaNet, {
        "kind": "sequence", "shorthand": "Dn", "defaults": {},
        "description": "DeltaNet (delta rule), 8 heads of 16, short conv 4"}),
    ("gated-deltanet", GatedDeltaNet, {
        "kind": "sequence", "shorthand": "GDn", "defaults": {},
        "description": "Gated DeltaNet (gated delta rule), 8 heads of 16, short conv 4"}),
]
