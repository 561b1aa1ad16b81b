"""Mamba-2's state-space dual (SSD) layer op in pure PyTorch: ``ssd_recurrent``, the sequential
scan (the definition).

Per (batch, head), with a scalar step ``dt_t > 0``, a scalar ``A < 0`` per head, input
``x_t`` (head_dim P) and ``B_t``, ``C_t`` (d_state N, shared by the heads of a group):

    S_t = exp(dt_t A) S_{t-1} + dt_t B_t^T x_t,        y_t = C_t S_t          (S is N x P)

(Dao & Gu, "Transformers are SSMs", 2024). The skip term ``D x_t`` is the layer's.
"""
from __future__ import annotations

import torch


def ssd_recurrent(x: torch.Tensor, dt: torch.Tensor, A: torch.Tensor, B: torch.Tensor,
                  C: torch.Tensor) -> torch.Tensor:
    """The SSD scan one step at a time. x: (batch, heads, seq_len, P); dt: (batch, heads,
    seq_len); A: (heads,); B, C: (batch, seq_len, N) (one group). Returns y like x."""
    batch, heads, seq_len, p = x.shape
    state = x.new_zeros(batch, heads, B.shape[-1], p)
    outputs = []
    for t in range(seq_len):
        decay = torch.exp(dt[:, :, t] * A)[:, :, None, None]
        write = dt[:, :, t, None, None] * B[:, None, t, :, None] * x[:, :, t, None, :]
        state = decay * state + write
        outputs.append(torch.einsum("bn,bhnp->bhp", C[:, t], state))
    return torch.stack(outputs, dim=2)
