"""RWKV-7 time mixing (Peng et al., "RWKV-7 'Goose' with Expressive Dynamic State Evolution",
2025), laid out as flash-linear-attention's ``RWKV7Attention``.

Token shift: ``d_t = x_{t-1} - x_t`` (``x_{-1} = 0``) and, per stream ``s`` in r, w, k, v, a,
g, ``x^s_t = x_t + mu_s * d_t`` (learned ``mu_s`` per channel). Then

- receptance ``r = x^r W_r``, key ``k0 = x^k W_k``, value ``v = x^v W_v``;
- log decay ``w = -exp(-1/2) * sigmoid(lora_w(x^w))`` (so each channel keeps a fraction in
  (0.545, 1) per step), in-context learning rate ``iclr = sigmoid(lora_a(x^a))``, output gate
  ``g = lora_g(x^g)`` (sigmoid inside the low-rank map);
- value residual: the first RWKV-7 layer of a model passes its v on as ``v_first``; later ones
  use ``lerp(v, v_first, sigmoid(lora_v(x^v)))``. madbench threads ``v_first`` through the
  model's per-forward context (``uses_context``); a layer run alone is a first layer;
- ``kappa = normalize(k0 * k_k)`` per head, ``k = k0 * (1 + (iclr - 1) * k_a)``;
- per head ``S_t = diag(exp(w_t)) S_{t-1} - (kappa_t * iclr_t)^T (kappa_t S_{t-1}) +
  k_t^T v_t`` and ``o_t = r_t S_t`` (``ops.rwkv7``: a = -kappa, b = kappa * iclr);
- per-head GroupNorm, the "bonus" ``o += (sum(r * k * r_k) per head) v``, times g, output
  projection.

Registered as ``rwkv7`` (R7); MAD width 128: 8 heads of 16 (state ``heads * dk * dv`` = 2,048
per layer, so two layers hold 4,096), low ranks 32 (w, a, v) and 64 (g), fla's defaults at
this width. The token shift caches the previous input (``dim`` numbers, reported by
``cache_size``). Every layer carries the value-residual map ``lora_v``; the first RWKV-7 layer
of a model does not use it (a layer is built before it knows its position), so its 8,320
parameters there are counted but idle.

Initialisation follows RWKV-7's recipe for a first layer (token-shift ramps, decay and
learning-rate biases with a per-head zigzag, k_k = 0.71 - 0.1 * ramp, k_a = 1.02, r_k = -0.04);
the projections keep PyTorch's default initialisation (RWKV zeroes the output projection,
which would make every check at initialisation trivially pass).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .ops.rwkv7 import rwkv7, rwkv7_recurrent  # noqa: F401 (re-exported)

__all__ = ["RWKV7", "LowRank", "MIXERS"]

#: RWKV-7's decay bound: log decay = -exp(-1/2) * sigmoid(.) lies in (-0.6065..., 0).
W_SCALE = math.exp(-0.5)
#: Key of the shared value in the model's per-forward context.
V_FIRST = "rwkv7.v_first"


class LowRank(nn.Module):
    """``x -> act(x A) B (+ bias)``: a low-rank map with an activation in the middle."""

    def __init__(self, dim: int, out: int, rank: int, activation: str | None, bias: bool = True):
        super().__init__()
        self.down = nn.Linear(dim, rank, bias=False)
        self.up = nn.Linear(rank, out, bias=bias)
        self.activation = activation

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.down(x)
        if self.activation == "tanh":
            h = torch.tanh(h)
        elif self.activation == "sigmoid":
            h = torch.sigmoid(h)
        return self.up(h)


class RWKV7(nn.Module):
    """RWKV-7 time-mixing layer (a sequence mixer; RWKV's channel mixing is a separate MLP)."""

    uses_context = True   #: takes ``context=`` (a dict shared by the layers of one forward)

    def __init__(self, dim: int, num_heads: int | None = None, head_dim: int = 16,
                 decay_low_rank_dim: int = 32, a_low_rank_dim: int = 32,
                 v_low_rank_dim: int = 32, gate_low_rank_dim: int = 64, norm_eps: float = 1e-5,
                 chunk_size: int = 8):
        super().__init__()
        if num_heads is not None:
            head_dim = dim // num_heads
        if head_dim < 1 or dim % head_dim:
            raise ValueError(f"dim {dim} must be a multiple of head_dim {head_dim}")
        self.dim, self.head_dim, self.num_heads = dim, head_dim, dim // head_dim
        self.norm_eps, self.chunk_size = norm_eps, chunk_size
        self.mu = nn.Parameter(torch.zeros(6, dim))         # token-shift mix of r, w, k, v, a, g
        self.k_k = nn.Parameter(torch.zeros(dim))
        self.k_a = nn.Parameter(torch.zeros(dim))
        self.r_k = nn.Parameter(torch.zeros(self.num_heads, head_dim))
        self.r_proj = nn.Linear(dim, dim, bias=False)
        self.k_proj = nn.Linear(dim, dim, bias=False)
        self.v_proj = nn.Linear(dim, dim, bias=False)
        self.o_proj = nn.Linear(dim, dim, bias=False)
        self.w_lora = LowRank(dim, dim, decay_low_rank_dim, "tanh")
        self.a_lora = LowRank(dim, dim, a_low_rank_dim, None)
        self.v_lora = LowRank(dim, dim, v_low_rank_dim, None)
        self.g_lora = LowRank(dim, dim, gate_low_rank_dim, "sigmoid", bias=False)
        self.g_norm = nn.GroupNorm(self.num_heads, dim, eps=head_dim * norm_eps)
        self._init_rwkv()

    @torch.no_grad()
    def _init_rwkv(self) -> None:
        n = torch.arange(self.dim, dtype=torch.float32)
        ramp = n / self.dim                                        # 0 .. 1
        linear = n / (self.dim - 1) - 0.5 if self.dim > 1 else torch.zeros(1)
        half = (self.head_dim - 1) / 2 if self.head_dim > 1 else 1.0
        zigzag = ((n % self.head_dim) - half) / half
        zigzag = zigzag * zigzag.abs()
        for i, power in enumerate((0.2, 0.9, 0.7, 0.7, 0.9, 0.2)):  # r, w, k, v, a, g
            self.mu[i] = 1.0 - ramp ** power
        self.k_k.copy_(0.71 - 0.1 * linear)
        self.k_a.fill_(1.02)
        self.r_k.fill_(-0.04)
        decay = -6 + 6 * (n / max(self.dim - 1, 1))
        self.w_lora.up.bias.copy_(decay + 0.5 + 2.5 * zigzag)
        self.a_lora.up.bias.copy_(-0.19 + 0.3 * zigzag + 0.4 * linear)
        self.v_lora.up.bias.copy_(0.73 - 0.4 * linear)
        for lora in (self.w_lora, self.a_lora, self.v_lora):  # the backbone zeroes other biases
            lora.up.bias._no_reinit = True

    def _heads(self, t: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
        batch, seq_len, _ = t.shape
        return t.view(batch, seq_len, self.num_heads, -1).transpose(1, 2).to(dtype)

    def forward(self, x: torch.Tensor, context: dict | None = None) -> torch.Tensor:
        batch, seq_len, dim = x.shape
        dtype = torch.promote_types(x.dtype, torch.float32)   # the op runs in fp32 at least
        shift = F.pad(x, (0, 0, 1, -1)) - x                   # x_{t-1} - x_t
        xr, xw, xk, xv, xa, xg = (x + shift * m.to(x.dtype) for m in self.mu)
        r, k, v = self.r_proj(xr), self.k_proj(xk), self.v_proj(xv)
        w = -W_SCALE * torch.sigmoid(self.w_lora(xw).to(dtype))
        if context is None or V_FIRST not in context:
            if context is not None:
                context[V_FIRST] = v
        else:
            v = torch.lerp(v, context[V_FIRST].to(v.dtype), torch.sigmoid(self.v_lora(xv)))
        iclr = torch.sigmoid(self.a_lora(xa).to(dtype))
        g = self.g_lora(xg)
        kappa = F.normalize(self._heads(k * self.k_k.to(k.dtype), dtype), dim=-1, eps=1e-12)
        k = k.to(dtype) * (1 + (iclr - 1) * self.k_a.to(dtype))
        r_h, w_h, k_h, v_h, iclr_h = (self._heads(t, dtype) for t in (r, w, k, v, iclr))
        o = rwkv7(r_h, w_h, k_h, v_h, -kappa, kappa * iclr_h, self.chunk_size,
                  w_lower_bound=-W_SCALE)
        o = F.group_norm(o.transpose(1, 2).reshape(batch * seq_len, dim), self.num_heads,
                         self.g_norm.weight.to(dtype), self.g_norm.bias.to(dtype),
                         self.g_norm.eps).view(batch, seq_len, dim)
        bonus = (r_h * k_h * self.r_k.to(dtype)[:, None, :]).sum(-1, keepdim=True) * v_h
        o = o + bonus.transpose(1, 2).reshape(batch, seq_len, dim)
        return self.o_proj((o * g.to(dtype)).to(x.dtype))

    def state_size(self, seq_len: int) -> int:
        """heads * dk * dv: one dk x dv matrix per head, independent of seq_len."""
        return self.num_heads * self.head_dim * self.head_dim

    def cache_size(self, seq_len: int) -> int:
        """The token shift's cache: the previous input vector."""
        return self.dim


MIXERS = [
    ("rwkv7", RWKV7, {
        "kind": "sequence", "shorthand": "R7", "defaults": {},
        "description": "RWKV-7 time mixing, 8 heads of 16"}),
]
