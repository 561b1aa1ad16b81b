"""Causal softmax attention with rotary embeddings, full or sliding-window.

One class backs four registered layers (MAD defaults at width 128):

- ``attention`` (A): 1 head of 128; ``mh-attention`` (mA): 16 heads of 8;
- ``sliding-attention`` (As) and ``mh-sliding-attention`` (mAs): the same with a window of 32
  keys (each query sees itself and the 31 previous tokens).

Rotary embeddings cover the full head dimension. As in mad-lab (flash-attn's MHA), the QKV and
output projections have biases (66,048 parameters; the backbone zeroes them at init); the paper
says "no bias", which ``bias=False`` gives (65,536). Measured (docs/fidelity.md): the biases are
worth 0.14 on selective copying, so the default follows the code that produced the published
scores. mad-lab's window (32, 32) lets a query see 32 previous tokens, one more than here.

State: the kv-cache, ``2 * inner * seq_len`` elements, or ``2 * inner * min(seq_len, window)``
for a sliding window (``inner = num_heads * head_dim``, 128 by default).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .rotary import apply_rotary


def sliding_window_mask(seq_len: int, window: int, device=None) -> torch.Tensor:
    """Boolean (seq_len, seq_len) mask, True where query t may attend key s: t-window < s <= t."""
    t = torch.arange(seq_len, device=device)[:, None]
    s = torch.arange(seq_len, device=device)[None, :]
    return (s <= t) & (s > t - window)


def _under_vmap(t: torch.Tensor) -> bool:
    """Whether ``t`` is being vmapped (the batched sweep engine). The fused CUDA attention
    kernels have no batching rule: under vmap their backward fails ("LSE is not correctly
    aligned") in fp32 and gave non-finite gradients in bf16 on an H100."""
    check = getattr(torch._C._functorch, "is_batchedtensor", None)
    return bool(check and check(t))


def _math_attention(q, k, v, mask: torch.Tensor | None) -> torch.Tensor:
    """Softmax attention written out (causal unless ``mask``, True = may attend)."""
    scores = (q @ k.transpose(-2, -1)) * q.shape[-1] ** -0.5
    length = q.shape[-2]
    if mask is None:
        mask = torch.ones(length, length, dtype=torch.bool, device=q.device).tril()
    scores = scores.masked_fill(~mask, float("-inf"))
    return torch.softmax(scores.float(), dim=-1).to(v.dtype) @ v


class Attention(nn.Module):
    """Multi-head causal softmax attention with rotary embeddings; biased projections as
    mad-lab's (``bias=False``: the paper's rule)."""

    def __init__(self, dim: int, num_heads: int = 1, head_dim: int | None = None,
                 window: int | None = None, rotary_base: float = 10000.0, bias: bool = True):
        super().__init__()
        if head_dim is None:
            if dim % num_heads:
                raise ValueError(f"dim {dim} is not divisible by num_heads {num_heads}")
            head_dim = dim // num_heads
        if window is not None and window < 1:
            raise ValueError(f"window must be at least 1, got {window}")
        self.num_heads, self.head_dim, self.window = num_heads, head_dim, window
        self.rotary_base = rotary_base
        inner = num_heads * head_dim
        self.qkv = nn.Linear(dim, 3 * inner, bias=bias)
        self.out = nn.Linear(inner, dim, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, seq_len, _ = x.shape
        qkv = self.qkv(x).view(batch, seq_len, 3, self.num_heads, self.head_dim)
        q, k, v = qkv.permute(2, 0, 3, 1, 4)  # each (batch, heads, seq_len, head_dim)
        q, k = apply_rotary(q, self.rotary_base), apply_rotary(k, self.rotary_base)
        causal = self.window is None or self.window >= seq_len
        if _under_vmap(q):
            y = _math_attention(q, k, v, None if causal else
                                sliding_window_mask(seq_len, self.window, x.device))
        elif causal:
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        else:
            mask = sliding_window_mask(seq_len, self.window, x.device)
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        return self.out(y.transpose(1, 2).reshape(batch, seq_len, -1))

    def state_size(self, seq_len: int) -> int:
        """kv-cache elements per sequence: keys and values of every visible past position."""
        visible = seq_len if self.window is None else min(seq_len, self.window)
        return 2 * self.num_heads * self.head_dim * visible

    def cache_size(self, seq_len: int) -> int:
        return 0


MIXERS = [
    ("attention", Attention, {
        "kind": "sequence", "shorthand": "A", "defaults": {},
        "description": "causal softmax attention, 1 head, rotary embeddings"}),
    ("mh-attention", Attention, {
        "kind": "sequence", "shorthand": "mA", "defaults": {"num_heads": 16},
        "description": "causal softmax attention, 16 heads of 8, rotary embeddings"}),
    ("sliding-attention", Attention, {
        "kind": "sequence", "shorthand": "As", "defaults": {"window": 32},
        "description": "sliding-window softmax attention (32 keys), 1 head, rotary"}),
    ("mh-sliding-attention", Attention, {
        "kind": "sequence", "shorthand": "mAs", "defaults": {"num_heads": 16, "window": 32},
        "description": "sliding-window softmax attention (32 keys), 16 heads of 8, rotary"}),
]
