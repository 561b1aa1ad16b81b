"""Mamba-2's SSD op: ``ssd(x, dt, A, B, C, chunk_size, backend)``.

SSD is gated linear attention with one decay per head: queries C, keys B, values ``dt x`` and
the log decay ``dt A`` on every key channel. So it runs on madbench's chunked GLA op
(``ops.gla.chunk_gla``): the Triton kernel on CUDA, the pure-PyTorch chunked form otherwise.
``ssd_recurrent`` (``reference.py``) is the sequential scan it is tested against.
"""
from __future__ import annotations

import torch

from ..gla import chunk_gla
from .reference import ssd_recurrent

__all__ = ["ssd", "ssd_recurrent"]


def ssd(x: torch.Tensor, dt: torch.Tensor, A: torch.Tensor, B: torch.Tensor, C: torch.Tensor,
        chunk_size: int = 16, backend: str = "auto") -> torch.Tensor:
    """Same arguments and result as ``ssd_recurrent``, chunked (and on CUDA, a kernel)."""
    batch, heads, seq_len, _ = x.shape
    n = B.shape[-1]
    q = C[:, None].expand(batch, heads, seq_len, n)
    k = B[:, None].expand(batch, heads, seq_len, n)
    log_alpha = (dt * A[:, None])[..., None].expand(batch, heads, seq_len, n)
    return chunk_gla(q, k, x * dt[..., None], log_alpha, chunk_size, backend)
