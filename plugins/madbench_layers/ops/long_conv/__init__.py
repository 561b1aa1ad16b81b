"""Long causal convolution ops (Hyena's filters) with their gating.

- ``causal_conv(u, h)``: ``y[..., c, t] = sum_{s<=t} h[c, t-s] u[..., c, s]``;
- ``gated_long_conv(v, x1, x2, h)``: ``x2 * causal_conv(x1 * v, h)`` (Hyena, Hyena experts);
- ``multihead_long_conv(q, k, v, h)``: multi-head Hyena's filtered outer products, read out
  with ``q`` (see ``reference.multihead_long_conv``).

``backend="auto"`` runs the Triton kernel (``triton_kernel.py``, imported on first use) when the
inputs are CUDA tensors and triton imports, else the pure-PyTorch reference (``reference.py``,
FFT convolution); ``"reference"`` and ``"triton"`` force one. The environment variable
``MADBENCH_KERNELS=reference`` forces the reference everywhere. Shapes the kernel does not cover
(a filter that differs along batch axes, a head size that is not a power of two, float64) go to
the reference under "auto" and raise UsageError under "triton".
"""
from __future__ import annotations

import functools
import math

import torch

from madbench.errors import UsageError

from ..backend import KERNEL_DTYPES, resolve_backend

from . import reference
from .reference import direct_causal_conv, fft_causal_conv

__all__ = ["causal_conv", "gated_long_conv", "multihead_long_conv", "resolve_backend",
           "fft_causal_conv", "direct_causal_conv", "reference"]



def _unsupported(backend: str, why: str) -> bool:
    """True (use the reference) under "auto"; a UsageError when the kernel was asked for."""
    if backend == "triton":
        raise UsageError(f"long_conv triton kernel: {why}")
    return True


def _filter_2d(h: torch.Tensor, channels: int, length: int) -> torch.Tensor | None:
    """``h`` as (channels, length) if it is one filter per channel (leading axes of size 1)."""
    if h.ndim < 2 or any(s != 1 for s in h.shape[:-2]) or h.shape[-2] != channels \
            or h.shape[-1] < length:
        return None
    return h.reshape(channels, h.shape[-1])[:, :length]


def _common_dtype(*xs: torch.Tensor | None) -> torch.dtype:
    return functools.reduce(torch.promote_types, [x.dtype for x in xs if x is not None])


def gated_long_conv(v: torch.Tensor, x1: torch.Tensor | None, x2: torch.Tensor | None,
                    h: torch.Tensor, backend: str = "auto") -> torch.Tensor:
    """``x2 * causal_conv(x1 * v, h)`` along the last axis; a gate that is None is left out.

    v, x1, x2: (..., channels, L), all the same shape; h: (channels, >= L) (leading axes of size
    1 allowed). Returns (..., channels, L) in the inputs' common dtype.
    """
    if resolve_backend(backend, v) == "triton":
        dtype = _common_dtype(v, x1, x2)
        shape_ok = all(x is None or x.shape == v.shape for x in (x1, x2)) and v.ndim >= 2
        h2 = _filter_2d(h, v.shape[-2], v.shape[-1]) if shape_ok else None
        if h2 is None:
            use_reference = _unsupported(backend, f"shapes v {tuple(v.shape)}, h "
                                         f"{tuple(h.shape)} are not (..., C, L) and (C, L)")
        elif dtype not in KERNEL_DTYPES:
            use_reference = _unsupported(backend, f"dtype {dtype} is not supported")
        else:
            use_reference = False
        if not use_reference:
            from .triton_kernel import long_conv
            channels, length = v.shape[-2:]
            n = math.prod(v.shape[:-2])

            def canon(x):
                return None if x is None else x.to(dtype).reshape(1, n, channels, 1, length)

            y = long_conv(canon(v), canon(x1), canon(x2), h2.reshape(1, channels, 1, length))
            return y.reshape(v.shape)
    return reference.gated_long_conv(v, x1, x2, h)


def causal_conv(u: torch.Tensor, h: torch.Tensor, backend: str = "auto") -> torch.Tensor:
    """``y[..., c, t] = sum_{s<=t} h[c, t-s] u[..., c, s]``; h: (channels, >= L).

    The reference also takes any ``h`` that broadcasts against ``u``; the kernel takes one
    filter per channel (the second-to-last axis).
    """
    return gated_long_conv(u, None, None, h, backend)


def multihead_long_conv(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, h: torch.Tensor,
                        backend: str = "auto") -> torch.Tensor:
    """``y[..., head, j, t] = sum_i q[..., head, i, t] *
    sum_{s<=t} h[head, i, t-s] k[..., head, i, s] v[..., head, j, s]``.

    q, k: (..., heads, dk, L); v: (..., heads, dv, L); h: (heads, dk, >= L). Returns
    (..., heads, dv, L). The kernel never forms the dk x dv outer products in memory.
    """
    if resolve_backend(backend, v) == "triton":
        dtype = _common_dtype(q, k, v)
        *lead, heads, dk, length = k.shape
        dv = v.shape[-2]
        if not (q.shape == k.shape and v.ndim == k.ndim and v.shape[:-2] == k.shape[:-2]
                and v.shape[-1] == length and h.shape[:2] == (heads, dk) and h.ndim == 3
                and h.shape[-1] >= length):
            use_reference = _unsupported(backend, f"shapes q {tuple(q.shape)}, k "
                                         f"{tuple(k.shape)}, v {tuple(v.shape)}, h "
                                         f"{tuple(h.shape)} do not match")
        elif dv & (dv - 1):
            use_reference = _unsupported(backend, f"value head size {dv} is not a power of two")
        elif dtype not in KERNEL_DTYPES:
            use_reference = _unsupported(backend, f"dtype {dtype} is not supported")
        else:
            use_reference = False
        if not use_reference:
            from .triton_kernel import long_conv
            n = math.prod(lead)
            y = long_conv(v.to(dtype).reshape(1, n, heads, dv, length),
                          k.to(dtype).reshape(1, n, heads, dk, length),
                          q.to(dtype).reshape(1, n, heads, dk, length),
                          h[..., :length].reshape(1, heads, dk, length))
            return y.reshape(v.shape)
    return reference.multihead_long_conv(q, k, v, h)
