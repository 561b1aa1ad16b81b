"""The selective scan in pure PyTorch: the reference every fast path is tested against.

``h_t = exp(delta_t A) h_{t-1} + delta_t B_t u_t`` and ``y_t = C_t . h_t + D u_t``, one state of
size d_state per channel, starting from ``h_{-1} = 0``.
"""
from __future__ import annotations

import torch


def selective_scan(u: torch.Tensor, delta: torch.Tensor, A: torch.Tensor, B: torch.Tensor,
                   C: torch.Tensor, D: torch.Tensor) -> torch.Tensor:
    """The selective scan, time-major within the batch.

    u, delta: (batch, seq_len, d_inner); A: (d_inner, d_state); B, C: (batch, seq_len, d_state);
    D: (d_inner,). Returns y: (batch, seq_len, d_inner). The discretised decays and inputs are
    formed for all steps at once; only the recurrence itself loops over time (fast enough on
    CPU at MAD lengths, and exact: every factor is a decay in (0, 1]).
    """
    decay = torch.exp(delta.unsqueeze(-1) * A)  # (batch, seq_len, d_inner, d_state)
    drive = (delta * u).unsqueeze(-1) * B.unsqueeze(2)
    h = torch.zeros_like(decay[:, 0])
    states = []
    for decay_t, drive_t in zip(decay.unbind(1), drive.unbind(1)):  # unbind: one backward copy
        h = decay_t * h + drive_t
        states.append(h)
    states = torch.stack(states, dim=1)
    return (states * C.unsqueeze(2)).sum(-1) + D * u


def selective_scan_naive(u: torch.Tensor, delta: torch.Tensor, A: torch.Tensor,
                         B: torch.Tensor, C: torch.Tensor, D: torch.Tensor) -> torch.Tensor:
    """Reference selective scan: the recurrence written out step by step, per time step."""
    batch, seq_len, d_inner = u.shape
    h = u.new_zeros(batch, d_inner, A.shape[1])
    ys = []
    for t in range(seq_len):
        dt = delta[:, t, :, None]  # (batch, d_inner, 1)
        h = torch.exp(dt * A) * h + dt * B[:, t, None, :] * u[:, t, :, None]
        ys.append(torch.einsum("bdn,bn->bd", h, C[:, t]) + D * u[:, t])
    return torch.stack(ys, dim=1)
