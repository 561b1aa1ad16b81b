"""The (gated) delta rule in pure PyTorch: ``delta_rule_recurrent`` (one step at a time, the
definition) and ``delta_rule_chunked`` (the same result, chunk by chunk).

Per (batch, head), with row vectors ``q_t, k_t`` (dk) and ``v_t`` (dv), a write strength
``beta_t`` and a forget gate ``alpha_t = exp(log_alpha_t)`` (a scalar per head and step; 1 for
the plain delta rule):

    S_t = alpha_t (I - beta_t k_t^T k_t) S_{t-1} + beta_t k_t^T v_t,      o_t = scale q_t S_t

S is dk x dv. Equivalently, after decaying ``S' = alpha_t S_{t-1}``, the value stored under key
``k_t`` moves a fraction ``beta_t`` of the way to ``v_t``: ``u_t = beta_t (v_t - k_t S')`` and
``S_t = S' + k_t^T u_t`` (Widrow-Hoff / DeltaNet, Schlag et al. 2021, Yang et al. 2024; the
gate of Gated DeltaNet, Yang et al. 2025).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


def delta_rule_recurrent(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, beta: torch.Tensor,
                         log_alpha: torch.Tensor | None = None,
                         scale: float = 1.0) -> torch.Tensor:
    """The delta rule one step at a time.

    q, k: (batch, heads, seq_len, dk); v: (batch, heads, seq_len, dv); beta and log_alpha:
    (batch, heads, seq_len). Returns o: (batch, heads, seq_len, dv)."""
    batch, heads, seq_len, dk = q.shape
    state = q.new_zeros(batch, heads, dk, v.shape[-1])
    outputs = []
    for t in range(seq_len):
        if log_alpha is not None:
            state = log_alpha[:, :, t, None, None].exp() * state
        k_t = k[:, :, t]
        u = beta[:, :, t, None] * (v[:, :, t] - torch.einsum("bhk,bhkv->bhv", k_t, state))
        state = state + k_t[..., :, None] * u[..., None, :]
        outputs.append(scale * torch.einsum("bhk,bhkv->bhv", q[:, :, t], state))
    return torch.stack(outputs, dim=2)


def delta_rule_chunked(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, beta: torch.Tensor,
                       log_alpha: torch.Tensor | None = None, scale: float = 1.0,
                       chunk_size: int = 16) -> torch.Tensor:
    """The delta rule in chunks of ``chunk_size``: same arguments and result as
    ``delta_rule_recurrent``.

    Inside a chunk that starts from state ``S0``, with ``g_t`` the log decay cumulated from the
    chunk start (``g_t >= g_s`` is never needed: only ``exp(g_t - g_s)`` for ``s <= t``, in
    (0, 1]), the writes ``u_t`` solve a unit lower-triangular system

        u_t + beta_t sum_{s<t} exp(g_t - g_s) (k_t . k_s) u_s = beta_t (v_t - exp(g_t) k_t S0),

    so ``U = T (V - diag(exp g) K S0)`` with ``T = (I + A)^-1 diag(beta)`` (the WY form of a
    product of Householder-like factors). Then ``o_t = scale (exp(g_t) q_t S0 + sum_{s<=t}
    exp(g_t - g_s) (q_t . k_s) u_s)`` and the state leaving the chunk is ``exp(g_C) S0 +
    sum_s exp(g_C - g_s) k_s^T u_s``. T is formed for all chunks at once; only the state is
    carried from chunk to chunk.
    """
    batch, heads, seq_len, dk = q.shape
    dv = v.shape[-1]
    if log_alpha is None:
        log_alpha = beta.new_zeros(beta.shape)
    pad = (-seq_len) % chunk_size
    if pad:  # zero keys and writes after the end change nothing before it
        q, k, v = (F.pad(t, (0, 0, 0, pad)) for t in (q, k, v))
        beta, log_alpha = (F.pad(t, (0, pad)) for t in (beta, log_alpha))
    n = q.shape[2] // chunk_size
    q, k, v = (t.reshape(batch, heads, n, chunk_size, -1) for t in (q, k, v))
    beta, log_alpha = (t.reshape(batch, heads, n, chunk_size) for t in (beta, log_alpha))
    g = log_alpha.cumsum(-1)                                     # (b, h, n, C)
    lower = torch.ones(chunk_size, chunk_size, dtype=torch.bool, device=q.device).tril()
    decay = (g[..., :, None] - g[..., None, :]).masked_fill(~lower, -torch.inf).exp()  # t, s

    strict = decay.masked_fill(torch.eye(chunk_size, dtype=torch.bool, device=q.device), 0.0)
    system = torch.eye(chunk_size, dtype=q.dtype, device=q.device) \
        + beta[..., :, None] * strict * (k @ k.transpose(-1, -2))
    rhs_v = beta[..., None] * v                                  # T V = solve(system, beta V)
    rhs_k = beta[..., None] * g.exp()[..., None] * k             # T diag(exp g) K
    solved = torch.linalg.solve_triangular(system, torch.cat([rhs_v, rhs_k], dim=-1),
                                           upper=False, unitriangular=True)
    u_from_v, w = solved.split([dv, dk], dim=-1)                 # U = u_from_v - w S0
    scores = decay * (q @ k.transpose(-1, -2))                   # (b, h, n, C, C), s <= t
    q_from_start = q * g.exp()[..., None]
    k_to_end = k * (g[..., -1:] - g).exp()[..., None]
    chunk_decay = g[..., -1].exp()                               # (b, h, n)

    state = q.new_zeros(batch, heads, dk, dv)
    outputs = []
    for i in range(n):
        u = u_from_v[:, :, i] - w[:, :, i] @ state
        outputs.append(q_from_start[:, :, i] @ state + scores[:, :, i] @ u)
        state = chunk_decay[:, :, i, None, None] * state + k_to_end[:, :, i].transpose(-1, -2) @ u
    out = scale * torch.stack(outputs, dim=2)
    return out.reshape(batch, heads, n * chunk_size, dv)[:, :, :seq_len]
