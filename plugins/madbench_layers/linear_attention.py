"""Causal linear attention (Katharopoulos et al., "Transformers are RNNs", 2020).

``o_t = phi(q_t) S_t / (phi(q_t) . z_t + eps)`` with ``S_t = sum_{s<=t} phi(k_s)^T v_s`` and
``z_t = sum_{s<=t} phi(k_s)``. The feature map is ``phi(x) = elu(x) + 1``: positive, so the
normaliser never vanishes, and parameter-free. It is computed in chunks: a masked quadratic
form inside each chunk, the running sums carried across chunks.

Registered layers (MAD defaults at width 128): ``linear-attention`` (Al, 1 head of 128) and
``mh-linear-attention`` (mAl, 16 heads of 8); 65,536 parameters each, no biases (paper rule).
mad-lab uses a learned Hadamard-product feature map (two biased linear maps per q and k,
131,584 / 65,824 parameters) that is not positive.

State per sequence: ``heads * dk * dv`` for S plus ``heads * dk`` for the normaliser z
(16,512 for Al, 1,152 for mAl); the normaliser is part of the recurrent state, so it is counted.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def feature_map(x: torch.Tensor) -> torch.Tensor:
    """elu(x) + 1, positive everywhere."""
    return F.elu(x) + 1


def causal_linear_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                            chunk_size: int = 64, eps: float = 1e-6) -> torch.Tensor:
    """Normalised causal linear attention on already feature-mapped q, k (positive).

    q, k: (batch, heads, seq_len, dk); v: (batch, heads, seq_len, dv) -> (batch, heads, seq_len, dv).
    """
    batch, heads, seq_len, dk = q.shape
    dv = v.shape[-1]
    pad = (-seq_len) % chunk_size
    if pad:  # zero keys and values after the end change nothing before it
        q, k, v = (F.pad(t, (0, 0, 0, pad)) for t in (q, k, v))
    n = q.shape[2] // chunk_size
    q, k, v = (t.reshape(batch, heads, n, chunk_size, -1) for t in (q, k, v))
    causal = torch.ones(chunk_size, chunk_size, dtype=torch.bool, device=q.device).tril()
    scores = (q @ k.transpose(-1, -2)).masked_fill(~causal, 0)  # within-chunk, s <= t
    kv = k.transpose(-1, -2) @ v  # each chunk's contribution to S: (b, h, n, dk, dv)
    ksum = k.sum(dim=3)  # each chunk's contribution to z: (b, h, n, dk)
    # running sums *before* each chunk (exclusive cumulative sum over chunks)
    s_before = F.pad(kv.cumsum(dim=2), (0, 0, 0, 0, 1, -1))
    z_before = F.pad(ksum.cumsum(dim=2), (0, 0, 1, -1))
    numerator = scores @ v + q @ s_before
    denominator = scores.sum(-1) + (q * z_before.unsqueeze(3)).sum(-1)
    out = numerator / (denominator.unsqueeze(-1) + eps)
    return out.reshape(batch, heads, n * chunk_size, dv)[:, :, :seq_len]


class LinearAttention(nn.Module):
    """Multi-head causal linear attention with the elu+1 feature map (no biases)."""

    def __init__(self, dim: int, num_heads: int = 1, head_dim: int | None = None,
                 chunk_size: int = 64, eps: float = 1e-6):
        super().__init__()
        if head_dim is None:
            if dim % num_heads:
                raise ValueError(f"dim {dim} is not divisible by num_heads {num_heads}")
            head_dim = dim // num_heads
        self.num_heads, self.head_dim = num_heads, head_dim
        self.chunk_size, self.eps = chunk_size, eps
        inner = num_heads * head_dim
        self.qkv = nn.Linear(dim, 3 * inner, bias=False)
        self.out = nn.Linear(inner, dim, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, seq_len, _ = x.shape
        qkv = self.qkv(x).view(batch, seq_len, 3, self.num_heads, self.head_dim)
        q, k, v = qkv.permute(2, 0, 3, 1, 4)
        y = causal_linear_attention(feature_map(q), feature_map(k), v, self.chunk_size, self.eps)
        return self.out(y.transpose(1, 2).reshape(batch, seq_len, -1))

    def state_size(self, seq_len: int) -> int:
        """S (heads * dk * dv) plus the normaliser z (heads * dk); independent of seq_len."""
        return self.num_heads * self.head_dim * (self.head_dim + 1)

    def cache_size(self, seq_len: int) -> int:
        return 0


MIXERS = [
    ("linear-attention", LinearAttention, {
        "kind": "sequence", "shorthand": "Al", "defaults": {},
        "description": "causal linear attention (elu+1 feature map), 1 head"}),
    ("mh-linear-attention", LinearAttention, {
        "kind": "sequence", "shorthand": "mAl", "defaults": {"num_heads": 16},
        "description": "causal linear attention (elu+1 feature map), 16 heads of 8"}),
]
