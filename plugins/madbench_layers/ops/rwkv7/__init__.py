"""RWKV-7's state update: ``rwkv7(r, w, k, v, a, b, chunk_size, backend, w_lower_bound)``.

``backend="auto"`` runs fla's ``chunk_rwkv7`` (Triton) on CUDA tensors when
flash-linear-attention is installed, else the pure-PyTorch chunked reference
(``reference.py``), which is also the test oracle; ``"reference"`` and ``"fla"`` force one.
"""
from __future__ import annotations

import torch

from madbench.fla_adapter import import_fla

from ..fla_backend import resolve_fla_backend, token_major
from .reference import rwkv7_chunked, rwkv7_recurrent

__all__ = ["rwkv7", "rwkv7_chunked", "rwkv7_recurrent", "rwkv7_fla"]


def rwkv7_fla(r, w, k, v, a, b, w_lower_bound: float | None = None) -> torch.Tensor:
    """fla's chunked Triton kernel on (batch, heads, seq_len, d) inputs (CUDA only). With
    ``w_lower_bound`` (every log decay >= it), fla's safe-gate path, as its RWKV-7 layer."""
    chunk_rwkv7 = import_fla("fla.ops.rwkv7").chunk_rwkv7
    args = token_major(r, w, k, v, a, b)
    extra = {} if w_lower_bound is None else {"safe_gate": True, "lower_bound": w_lower_bound,
                                              "chunk_size": 64}
    o, _ = chunk_rwkv7(*args, scale=1.0, **extra)
    return o.transpose(1, 2)


def rwkv7(r: torch.Tensor, w: torch.Tensor, k: torch.Tensor, v: torch.Tensor, a: torch.Tensor,
          b: torch.Tensor, chunk_size: int = 16, backend: str = "auto",
          w_lower_bound: float | None = None) -> torch.Tensor:
    """``o_t = r_t S_t`` with ``S_t = diag(exp(w_t)) S_{t-1} + b_t^T (a_t S_{t-1}) + k_t^T
    v_t`` per (batch, head). r, w, k, a, b: (batch, heads, seq_len, dk); v: (batch, heads,
    seq_len, dv); returns (batch, heads, seq_len, dv)."""
    if resolve_fla_backend(backend, r) == "fla":
        return rwkv7_fla(r, w, k, v, a, b, w_lower_bound)
    return rwkv7_chunked(r, w, k, v, a, b, chunk_size)
