"""Mamba's selective scan op: ``selective_scan(u, delta, A, B, C, D, backend)``.

``backend="auto"`` runs the fused Triton kernel (``triton_kernel.py``, imported on first use)
when the inputs are CUDA tensors in fp32, fp16 or bf16 and triton imports, else the pure-PyTorch
reference (``reference.py``); ``"reference"`` and ``"triton"`` force one. The environment
variable ``MADBENCH_KERNELS=reference`` forces the reference everywhere.
"""
from __future__ import annotations

import torch

from ..backend import resolve_backend
from .reference import selective_scan as selective_scan_reference
from .reference import selective_scan_naive

__all__ = ["selective_scan", "selective_scan_reference", "selective_scan_naive",
           "resolve_backend"]



def selective_scan(u: torch.Tensor, delta: torch.Tensor, A: torch.Tensor, B: torch.Tensor,
                   C: torch.Tensor, D: torch.Tensor, backend: str = "auto") -> torch.Tensor:
    """y_t = C_t . h_t + D u_t with h_t = exp(delta_t A) h_{t-1} + delta_t B_t u_t per channel.

    u, delta: (batch, seq_len, d_inner); A: (d_inner, d_state); B, C: (batch, seq_len, d_state);
    D: (d_inner,). Returns y: (batch, seq_len, d_inner) in u's dtype. The Triton kernel keeps
    its state and accumulations in fp32 whatever the input dtype.
    """
    if resolve_backend(backend, u) == "triton":
        from .triton_kernel import selective_scan_triton
        return selective_scan_triton(u, delta, A, B, C, D)
    return selective_scan_reference(u, delta, A, B, C, D)
