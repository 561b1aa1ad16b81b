"""Gated linear attention (Yang et al., "Gated Linear Attention Transformers with
Hardware-Efficient Training", 2023).

Per head: ``S_t = diag(alpha_t) S_{t-1} + k_t^T v_t`` and ``o_t = q_t S_t``, with a
data-dependent forget gate ``alpha_t = sigmoid(x_t W1 W2 + b) ** (1 / 16)`` (low rank 16; in
log space ``log alpha_t = logsigmoid(.) / 16``). The head outputs go through a per-head RMSNorm
and a swish output gate ``swish(x_t W_g)``, then the output projection.

Registered layers (MAD defaults at width 128): ``mh-gated-linear-attention`` (mAlg, 8 heads of
16; 86,160 parameters) and ``gated-linear-attention`` (Alg, 1 head of 128; 86,272). The q, k,
v, gate and output projections have no bias (paper rule); the forget gate keeps its bias ``b``,
which is part of GLA's definition (as in mad-lab, whose counts these match). Every weight
starts as the reference's: Xavier-uniform with gain 2^-2.5 (the backbone zeroes the gate bias).

The op is ``chunk_gla`` (chunked: parallel inside a chunk, recurrent across chunks), in
``ops/gla``: a dispatcher that runs the Triton kernel on CUDA tensors and the pure-PyTorch
reference otherwise; ``gla_recurrent`` is its step-by-step reference.
State per sequence: ``heads * dk * dv`` (2,048 for mAlg, 16,384 for Alg).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .ops.gla import chunk_gla
from .ops.gla.reference import gla_recurrent

__all__ = ["GatedLinearAttention", "chunk_gla", "gla_recurrent", "MIXERS"]


class GatedLinearAttention(nn.Module):
    """GLA layer: projections, low-rank forget gate, chunked GLA, RMSNorm, swish gate."""

    def __init__(self, dim: int, num_heads: int = 1, expand_k: float = 1.0,
                 expand_v: float = 1.0, gate_low_rank_dim: int = 16,
                 gate_logit_normalizer: float = 16.0, chunk_size: int = 16,
                 norm_eps: float = 1e-5):
        super().__init__()
        key_dim, value_dim = int(dim * expand_k), int(dim * expand_v)
        if key_dim % num_heads or value_dim % num_heads:
            raise ValueError(f"key width {key_dim} and value width {value_dim} must be "
                             f"divisible by num_heads {num_heads}")
        self.num_heads = num_heads
        self.head_k_dim, self.head_v_dim = key_dim // num_heads, value_dim // num_heads
        self.gate_logit_normalizer, self.chunk_size, self.norm_eps = \
            gate_logit_normalizer, chunk_size, norm_eps
        self.q_proj = nn.Linear(dim, key_dim, bias=False)
        self.k_proj = nn.Linear(dim, key_dim, bias=False)
        self.v_proj = nn.Linear(dim, value_dim, bias=False)
        self.g_proj = nn.Linear(dim, value_dim, bias=False)
        self.gk_proj = nn.Sequential(nn.Linear(dim, gate_low_rank_dim, bias=False),
                                     nn.Linear(gate_low_rank_dim, key_dim, bias=True))
        self.norm_weight = nn.Parameter(torch.ones(self.head_v_dim))
        self.o_proj = nn.Linear(value_dim, dim, bias=False)
        for linear in (self.q_proj, self.k_proj, self.v_proj, self.g_proj, self.o_proj,
                       *self.gk_proj):   # the reference's init (its reset_parameters)
            nn.init.xavier_uniform_(linear.weight, gain=2 ** -2.5)

    def _heads(self, t: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
        batch, seq_len, _ = t.shape
        return t.view(batch, seq_len, self.num_heads, -1).transpose(1, 2).to(dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, seq_len, _ = x.shape
        dtype = torch.promote_types(x.dtype, torch.float32)  # the op runs in fp32 at least
        q = self._heads(self.q_proj(x), dtype) * self.head_k_dim ** -0.5
        k = self._heads(self.k_proj(x), dtype)
        v = self._heads(self.v_proj(x), dtype)
        log_alpha = F.logsigmoid(self._heads(self.gk_proj(x), dtype)) / self.gate_logit_normalizer
        o = chunk_gla(q, k, v, log_alpha, self.chunk_size)
        o = F.rms_norm(o, (self.head_v_dim,), self.norm_weight.to(dtype), self.norm_eps)
        o = o.transpose(1, 2).reshape(batch, seq_len, -1).to(x.dtype)
        return self.o_proj(o * F.silu(self.g_proj(x)))

    def state_size(self, seq_len: int) -> int:
        """heads * dk * dv: one dk x dv matrix per head, independent of seq_len."""
        return self.num_heads * self.head_k_dim * self.head_v_dim

    def cache_size(self, seq_len: int) -> int:
        return 0


MIXERS = [
    ("gated-linear-attention", GatedLinearAttention, {
        "kind": "sequence", "shorthand": "Alg", "defaults": {},
        "description": "gated linear attention (GLA), 1 head of 128"}),
    ("mh-gated-linear-attention", GatedLinearAttention, {
        "kind": "sequence", "shorthand": "mAlg", "defaults": {"num_heads": 8},
        "description": "gated linear attention (GLA), 8 heads of 16"}),
]
