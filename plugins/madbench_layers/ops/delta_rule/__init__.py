"""The (gated) delta rule op: ``delta_rule(q, k, v, beta, log_alpha, scale, chunk_size,
backend)``.

``backend="auto"`` runs fla's ``chunk_delta_rule`` / ``chunk_gated_delta_rule`` (Triton) on
CUDA tensors when flash-linear-attention is installed, else the pure-PyTorch chunked reference
(``reference.py``), which is also the test oracle; ``"reference"`` and ``"fla"`` force one.

fla refuses two cases, and ``"auto"`` takes the reference on CUDA for them (one warning line):

- the plain delta rule in float32: fla's ``chunk_delta_rule`` asserts bf16/fp16 inputs ("does not
  support float32"), and the bundled layers run the op in float32 at least;
- the gated delta rule on a Hopper GPU with 3.4.0 <= Triton < 3.7.1 and no usable tilelang:
  the backward pass of ``chunk_gated_delta_rule`` reaches fla's gated ``chunk_bwd_dqkwg``,
  which raises there (fla #640; ``madbench.fla_guard.hopper_guard`` mirrors the condition
  without running a kernel). The forward pass alone would run, but the reference is taken for
  every call, so that training and evaluation compute the same function.
"""
from __future__ import annotations

import torch

from madbench.fla_adapter import import_fla
from madbench.fla_guard import hopper_guard

from ..fla_backend import resolve_fla_backend, token_major
from .reference import delta_rule_chunked, delta_rule_recurrent

__all__ = ["delta_rule", "delta_rule_chunked", "delta_rule_recurrent", "delta_rule_fla",
           "fla_refusal"]


def delta_rule_fla(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, beta: torch.Tensor,
                   log_alpha: torch.Tensor | None = None, scale: float = 1.0) -> torch.Tensor:
    """fla's chunked Triton kernels on (batch, heads, seq_len, d) inputs (CUDA only)."""
    q_, k_, v_, beta_ = token_major(q, k, v, beta)
    if log_alpha is None:
        o, _ = import_fla("fla.ops.delta_rule").chunk_delta_rule(q_, k_, v_, beta_, scale=scale)
    else:
        (g_,) = token_major(log_alpha)
        o, _ = import_fla("fla.ops.gated_delta_rule").chunk_gated_delta_rule(
            q_, k_, v_, g_, beta_, scale=scale)
    return o.transpose(1, 2)


def fla_refusal(q: torch.Tensor, gated: bool) -> str | None:
    """Why fla's chunked kernel would refuse these inputs on this machine, or None."""
    if not gated and q.dtype == torch.float32:
        return "fla's chunk_delta_rule does not take float32 inputs (it asserts bf16 or fp16)"
    if gated:
        return hopper_guard()
    return None


def delta_rule(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, beta: torch.Tensor,
               log_alpha: torch.Tensor | None = None, scale: float = 1.0,
               chunk_size: int = 16, backend: str = "auto") -> torch.Tensor:
    """``o_t = scale q_t S_t`` with ``S_t = alpha_t (I - beta_t k_t^T k_t) S_{t-1} + beta_t
    k_t^T v_t`` per (batch, head); ``log_alpha`` None is the plain delta rule (alpha = 1).

    q, k: (batch, heads, seq_len, dk); v: (batch, heads, seq_len, dv); beta, log_alpha:
    (batch, heads, seq_len). Returns (batch, heads, seq_len, dv). ``chunk_size`` is the
    reference's chunk length (fla picks its own)."""
    op = "the delta rule" if log_alpha is None else "the gated delta rule"
    if resolve_fla_backend(backend, q, lambda: fla_refusal(q, log_alpha is not None), op) == "fla":
        return delta_rule_fla(q, k, v, beta, log_alpha, scale)
    return delta_rule_chunked(q, k, v, beta, log_alpha, scale, chunk_size)
