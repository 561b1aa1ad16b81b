"""RWKV-7's state update in pure PyTorch: ``rwkv7_recurrent`` (one step at a time, the
definition) and ``rwkv7_chunked`` (the same result, chunk by chunk).

Per (batch, head), with row vectors r_t, w_t, k_t, a_t, b_t (dk) and v_t (dv); ``w_t`` is the
log decay (<= 0) of each key channel:

    S_t = diag(exp(w_t)) S_{t-1} + b_t^T (a_t S_{t-1}) + k_t^T v_t,        o_t = r_t S_t

S is dk x dv: a diagonal decay plus a rank-one correction (RWKV-7 "Goose", Peng et al. 2025,
uses a = -kappa_hat, b = kappa_hat * iclr: the in-context learning rate of a delta rule).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


def rwkv7_recurrent(r: torch.Tensor, w: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                    a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """RWKV-7 one step at a time. r, w, k, a, b: (batch, heads, seq_len, dk); v: (batch,
    heads, seq_len, dv). Returns o: (batch, heads, seq_len, dv)."""
    batch, heads, seq_len, dk = r.shape
    state = r.new_zeros(batch, heads, dk, v.shape[-1])
    outputs = []
    for t in range(seq_len):
        read = torch.einsum("bhk,bhkv->bhv", a[:, :, t], state)          # a_t S_{t-1}
        state = (w[:, :, t, :, None].exp() * state + b[:, :, t, :, None] * read[..., None, :]
                 + k[:, :, t, :, None] * v[:, :, t, None, :])
        outputs.append(torch.einsum("bhk,bhkv->bhv", r[:, :, t], state))
    return torch.stack(outputs, dim=2)


def rwkv7_chunked(r: torch.Tensor, w: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                  a: torch.Tensor, b: torch.Tensor, chunk_size: int = 16) -> torch.Tensor:
    """RWKV-7 in chunks of ``chunk_size``: same arguments and result as ``rwkv7_recurrent``.

    Inside a chunk that starts from S0, with ``c_t`` the log decays cumulated from the chunk
    start through t (per channel) and ``p_t = c_t - w_t`` (through t - 1), the reads
    ``z_t = a_t S_{t-1}`` solve a unit lower-triangular system

        z_t - sum_{s<t} (a_t e^{p_t - c_s} . b_s) z_s
            = (a_t e^{p_t}) S0 + sum_{s<t} (a_t e^{p_t - c_s} . k_s) v_s,

    and ``o_t = (r_t e^{c_t}) S0 + sum_{s<=t} (r_t e^{c_t - c_s} . b_s) z_s + (r_t e^{c_t -
    c_s} . k_s) v_s``. Every exponent is a decay between ordered positions (<= 0), so nothing
    overflows; the pairwise decays are formed explicitly (chunk_size^2 * dk per chunk).
    """
    batch, heads, seq_len, dk = r.shape
    dv = v.shape[-1]
    pad = (-seq_len) % chunk_size
    if pad:  # zero inputs and unit decays after the end change nothing before it
        r, w, k, v, a, b = (F.pad(t, (0, 0, 0, pad)) for t in (r, w, k, v, a, b))
    n = r.shape[2] // chunk_size
    r, w, k, v, a, b = (t.reshape(batch, heads, n, chunk_size, -1) for t in (r, w, k, v, a, b))
    c = w.cumsum(3)                                       # through t
    p = c - w                                             # through t - 1
    ones = torch.ones(chunk_size, chunk_size, dtype=torch.bool, device=r.device)
    strict, lower = ones.tril(-1), ones.tril()
    # pairwise decays (b, h, n, t, s, dk): before t's own decay for reads, after it for outputs
    read_decay = (p.unsqueeze(4) - c.unsqueeze(3)).masked_fill(~strict[:, :, None], -torch.inf).exp()
    out_decay = (c.unsqueeze(4) - c.unsqueeze(3)).masked_fill(~lower[:, :, None], -torch.inf).exp()
    a_b = torch.einsum("bhntd,bhnsd,bhntsd->bhnts", a, b, read_decay)
    a_k = torch.einsum("bhntd,bhnsd,bhntsd->bhnts", a, k, read_decay)
    r_b = torch.einsum("bhntd,bhnsd,bhntsd->bhnts", r, b, out_decay)
    r_k = torch.einsum("bhntd,bhnsd,bhntsd->bhnts", r, k, out_decay)
    system = torch.eye(chunk_size, dtype=r.dtype, device=r.device) - a_b
    # z = z_from_v + w_read S0, with both parts from one triangular solve
    solved = torch.linalg.solve_triangular(system, torch.cat([a_k @ v, a * p.exp()], dim=-1),
                                           upper=False, unitriangular=True)
    z_from_v, w_read = solved.split([dv, dk], dim=-1)
    r_from_start = r * c.exp()
    b_to_end = b * (c[:, :, :, -1:] - c).exp()
    k_to_end = k * (c[:, :, :, -1:] - c).exp()
    chunk_decay = c[:, :, :, -1].exp()                    # (b, h, n, dk)

    state = r.new_zeros(batch, heads, dk, dv)
    outputs = []
    for i in range(n):
        z = z_from_v[:, :, i] + w_read[:, :, i] @ state
        outputs.append(r_from_start[:, :, i] @ state + r_b[:, :, i] @ z + r_k[:, :, i] @ v[:, :, i])
        state = (chunk_decay[:, :, i, :, None] * state + b_to_end[:, :, i].transpose(-1, -2) @ z
                 + k_to_end[:, :, i].transpose(-1, -2) @ v[:, :, i])
    out = torch.stack(outputs, dim=2)
    return out.reshape(batch, heads, n * chunk_size, dv)[:, :, :seq_len]
