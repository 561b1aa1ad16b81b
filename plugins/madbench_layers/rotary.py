"""Rotary position embeddings (Su et al., "RoFormer", 2021).

Channel ``i`` of the first half of a head is paired with channel ``i + head_dim/2`` (the
half-split layout of GPT-NeoX and of flash-attn's default), and each pair is rotated by the
angle ``position * base ** (-2 i / head_dim)``.
"""
from __future__ import annotations

import torch


def rotary_angles(seq_len: int, head_dim: int, base: float = 10000.0,
                  dtype: torch.dtype = torch.float32, device=None) -> torch.Tensor:
    """Rotation angles, shape (seq_len, head_dim // 2)."""
    if head_dim % 2:
        raise ValueError(f"rotary embeddings need an even head dimension, got {head_dim}")
    half = head_dim // 2
    inv_freq = base ** (-torch.arange(half, dtype=torch.float64, device=device) * 2 / head_dim)
    positions = torch.arange(seq_len, dtype=torch.float64, device=device)
    return (positions[:, None] * inv_freq[None, :]).to(dtype)


def apply_rotary(x: torch.Tensor, base: float = 10000.0) -> torch.Tensor:
    """Rotate x of shape (..., seq_len, head_dim) by its positions along dim -2."""
    seq_len, head_dim = x.shape[-2], x.shape[-1]
    compute_dtype = torch.promote_types(x.dtype, torch.float32)
    angles = rotary_angles(seq_len, head_dim, base, compute_dtype, x.device)
    cos, sin = angles.cos(), angles.sin()
    x1, x2 = x.to(compute_dtype).chunk(2, dim=-1)
    rotated = torch.cat([x1 * cos - x2 * sin, x1 * sin + x2 * cos], dim=-1)
    return rotated.to(x.dtype)
