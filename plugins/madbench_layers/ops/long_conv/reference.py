"""Long causal convolutions and their gated forms, in plain PyTorch (the reference the Triton
kernel is tested against, and what runs on CPU).

- ``fft_causal_conv(u, h)``: ``y[..., t] = sum_{s<=t} h[..., t-s] u[..., s]`` by zero-padded FFT;
- ``direct_causal_conv(u, h)``: the same sum, term by term;
- ``gated_long_conv(v, x1, x2, h)``: Hyena's gated form ``x2 * causal_conv(x1 * v, h)``;
- ``multihead_long_conv(q, k, v, h)``: multi-head Hyena's form, per head the outer products
  ``k_i v_j`` filtered by the key channel's filter and read out with ``q``.
"""
from __future__ import annotations

import torch


def fft_causal_conv(u: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
    """Causal convolution along the last axis: ``y[..., t] = sum_{s<=t} h[..., t-s] u[..., s]``.

    ``h`` broadcasts against ``u`` and holds at least ``L = u.shape[-1]`` taps (extra taps are
    ignored). Computed by zero-padded FFT in at least float32; returned in ``u``'s dtype.
    """
    length = u.shape[-1]
    dtype = torch.promote_types(u.dtype, torch.float32)
    n = 2 * length  # >= 2L - 1: no circular wrap-around
    u_f = torch.fft.rfft(u.to(dtype), n=n)
    h_f = torch.fft.rfft(h[..., :length].to(dtype), n=n)
    return torch.fft.irfft(u_f * h_f, n=n)[..., :length].to(u.dtype)


def direct_causal_conv(u: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
    """The same causal convolution as ``fft_causal_conv``, summed term by term (reference)."""
    length = u.shape[-1]
    shape = torch.broadcast_shapes(u.shape, h[..., :length].shape)
    y = torch.zeros(shape, dtype=torch.promote_types(u.dtype, h.dtype), device=u.device)
    for t in range(length):
        for s in range(t + 1):
            y[..., t] += h[..., t - s] * u[..., s]
    return y


def gated_long_conv(v: torch.Tensor, x1: torch.Tensor | None, x2: torch.Tensor | None,
                    h: torch.Tensor) -> torch.Tensor:
    """``x2 * causal_conv(x1 * v, h)`` along the last axis; a gate that is None is left out."""
    u = v if x1 is None else x1 * v
    y = fft_causal_conv(u, h)
    return y if x2 is None else x2 * y


def multihead_long_conv(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                        h: torch.Tensor) -> torch.Tensor:
    """``y[..., head, j, t] = sum_i q[..., head, i, t] *
    sum_{s<=t} h[head, i, t-s] k[..., head, i, s] v[..., head, j, s]``.

    q, k: (..., heads, dk, L); v: (..., heads, dv, L); h: (heads, dk, >= L). Returns
    (..., heads, dv, L). The outer products ``k_i v_j`` (dk x dv channels per head) are formed
    explicitly here.
    """
    z = k.unsqueeze(-2) * v.unsqueeze(-3)                 # (..., heads, dk, dv, L)
    z = fft_causal_conv(z, h.unsqueeze(-2))
    return (q.unsqueeze(-2) * z).sum(-3)
