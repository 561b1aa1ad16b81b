"""Gated linear attention, the pure-PyTorch op: ``chunk_gla`` (chunked) and ``gla_recurrent``
(one step at a time, the definition).

Per head: ``S_t = diag(alpha_t) S_{t-1} + k_t^T v_t`` and ``o_t = q_t S_t``, with the forget gate
given in log space (``log_alpha <= 0``).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


def gla_recurrent(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                  log_alpha: torch.Tensor) -> torch.Tensor:
    """Reference GLA, one time step at a time.

    q, k, log_alpha: (batch, heads, seq_len, dk); v: (batch, heads, seq_len, dv).
    Returns o: (batch, heads, seq_len, dv), o_t = q_t S_t.
    """
    batch, heads, seq_len, dk = q.shape
    state = q.new_zeros(batch, heads, dk, v.shape[-1])
    outputs = []
    for t in range(seq_len):
        state = log_alpha[:, :, t, :, None].exp() * state \
            + k[:, :, t, :, None] * v[:, :, t, None, :]
        outputs.append((q[:, :, t, :, None] * state).sum(dim=-2))
    return torch.stack(outputs, dim=2)


def chunk_gla(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, log_alpha: torch.Tensor,
              chunk_size: int = 16) -> torch.Tensor:
    """GLA in chunks of ``chunk_size``: same arguments and result as ``gla_recurrent``.

    Gates are cumulated in log space from each chunk's start (``b_t <= 0``). Every factor that
    is exponentiated is a decay between two ordered positions, ``b_t - b_s`` with ``s <= t``, so
    it lies in (0, 1] and nothing overflows however strong the forgetting. Inside a chunk the
    pairwise decays are formed explicitly, (chunk_size^2 * dk) numbers per chunk.
    """
    batch, heads, seq_len, dk = q.shape
    dv = v.shape[-1]
    pad = (-seq_len) % chunk_size
    if pad:  # zero keys/values and unit gates after the end change nothing before it
        q, k, v, log_alpha = (F.pad(t, (0, 0, 0, pad)) for t in (q, k, v, log_alpha))
    n = q.shape[2] // chunk_size
    q, k, v, log_alpha = (t.reshape(batch, heads, n, chunk_size, -1)
                          for t in (q, k, v, log_alpha))
    b = log_alpha.cumsum(dim=3)  # log decay from the chunk start through t, inclusive

    # within each chunk: A[t, s] = sum_d q_td k_sd exp(b_td - b_sd) for s <= t
    causal = torch.ones(chunk_size, chunk_size, dtype=torch.bool, device=q.device).tril()
    pair_log_decay = (b.unsqueeze(4) - b.unsqueeze(3)).masked_fill(~causal[:, :, None], -torch.inf)
    scores = torch.einsum("bhntd,bhnsd,bhntsd->bhnts", q, k, pair_log_decay.exp())
    out = scores @ v

    # across chunks: carry the state S at each chunk boundary
    q_from_start = q * b.exp()  # reads S from the chunk start, decayed up to t
    k_to_end = k * (b[:, :, :, -1:] - b).exp()  # writes into S, decayed up to the chunk end
    chunk_decay = b[:, :, :, -1].exp()  # (batch, heads, n, dk)
    state = q.new_zeros(batch, heads, dk, dv)
    inter = []
    for q_i, k_i, v_i, decay_i in zip(q_from_start.unbind(2), k_to_end.unbind(2), v.unbind(2),
                                      chunk_decay.unbind(2)):
        inter.append(q_i @ state)
        state = decay_i.unsqueeze(-1) * state + k_i.transpose(-1, -2) @ v_i
    out = out + torch.stack(inter, dim=2)
    return out.reshape(batch, heads, n * chunk_size, dv)[:, :, :seq_len]
