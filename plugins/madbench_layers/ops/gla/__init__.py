"""Gated linear attention op: ``chunk_gla(q, k, v, log_alpha, chunk_size, backend)``.

``backend="auto"`` runs the Triton kernel (``triton_kernel.py``, imported on first use) when the
inputs are CUDA tensors and triton imports, else the pure-PyTorch reference
(``reference.py``); ``"reference"`` and ``"triton"`` force one. The environment variable
``MADBENCH_KERNELS=reference`` forces the reference everywhere.
"""
from __future__ import annotations

import torch

from ..backend import resolve_backend
from .reference import chunk_gla as chunk_gla_reference
from .reference import gla_recurrent

__all__ = ["chunk_gla", "chunk_gla_reference", "gla_recurrent", "resolve_backend"]



def chunk_gla(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, log_alpha: torch.Tensor,
              chunk_size: int = 16, backend: str = "auto") -> torch.Tensor:
    """o_t = q_t S_t with S_t = diag(exp(log_alpha_t)) S_{t-1} + k_t^T v_t, per (batch, head).

    q, k, log_alpha: (batch, heads, seq_len, dk); v: (batch, heads, seq_len, dv); returns
    (batch, heads, seq_len, dv). ``chunk_size`` is the reference's chunk length; the Triton
    kernel picks its own (the result is the same up to rounding).
    """
    if resolve_backend(backend, q) == "triton":
        from .triton_kernel import chunk_gla_triton
        return chunk_gla_triton(q, k, v, log_alpha)
    return chunk_gla_reference(q, k, v, log_alpha, chunk_size)
