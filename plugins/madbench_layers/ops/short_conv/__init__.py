"""Short causal depthwise convolution (Hyena's and Mamba's width-3/4 convolutions).

``short_causal_conv(x, weight, bias)``: ``y[b, c, t] = bias[c] + sum_k weight[c, k] x'[b, c, t - K + 1 + k]``
(zeros before the start), i.e. ``nn.Conv1d(C, C, K, groups=C, padding=K - 1)`` and its first ``L``
outputs, as the layers write it, where ``x'`` is ``x`` repeated along its channels to ``C``
(``x.repeat(1, C // C_in, 1)``: Hyena's projection tied over groups; the kernel reads the
copies in place). ``backend="auto"`` runs the Triton kernel (``triton_kernel.py``,
imported on first use) for CUDA tensors when triton imports, else the PyTorch reference
(``reference``, ``F.conv1d``); ``"reference"`` and ``"triton"`` force one, and
``MADBENCH_KERNELS=reference`` forces the reference everywhere. Under autocast the kernel takes
the autocast dtype, as ``F.conv1d`` does.

The kernel reads ``x`` with any strides (a ``(B, L, C)`` projection's transposed view needs no
copy), accumulates in float32, writes ``y`` as ``(B, C, L)`` with aligned rows (``..rows``),
and reduces the weight and bias gradients without atomics (the same result on every run).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from madbench.errors import UsageError

from ..backend import KERNEL_DTYPES, resolve_backend

__all__ = ["short_causal_conv", "reference"]


def reference(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """The PyTorch form: the channels repeated, a grouped ``F.conv1d`` padded by ``K - 1``,
    its first ``L`` outputs."""
    channels, width = weight.shape[0], weight.shape[-1]
    if channels != x.shape[1]:
        x = x.repeat(1, channels // x.shape[1], 1)
    return F.conv1d(x, weight.reshape(channels, 1, width), bias, padding=width - 1,
                    groups=channels)[..., :x.shape[-1]]


def short_causal_conv(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None,
                      backend: str = "auto") -> torch.Tensor:
    """x: (B, C_in, L); weight: (C, K) (or nn.Conv1d's (C, 1, K)), C a multiple of C_in;
    bias: (C,) or None. Returns (B, C, L)."""
    if weight.ndim == 3:
        weight = weight.reshape(weight.shape[0], weight.shape[-1])
    if x.ndim != 3 or weight.ndim != 2 or x.shape[1] == 0 or weight.shape[0] % x.shape[1] \
            or (bias is not None and bias.shape != (weight.shape[0],)):
        raise UsageError(f"short_causal_conv: shapes x {tuple(x.shape)}, weight "
                         f"{tuple(weight.shape)}, bias {None if bias is None else tuple(bias.shape)}"
                         " are not (B, C_in, L), (C, K), (C,) with C a multiple of C_in")
    if resolve_backend(backend, x) == "reference":
        return reference(x, weight, bias)
    if torch.is_autocast_enabled(x.device.type):
        dtype = torch.get_autocast_dtype(x.device.type)
        x, weight = x.to(dtype), weight.to(dtype)
        bias = None if bias is None else bias.to(dtype)
    if x.dtype not in KERNEL_DTYPES or weight.dtype != x.dtype:
        if backend == "triton":
            raise UsageError(f"short_causal_conv triton kernel: dtypes {x.dtype}, {weight.dtype}")
        return reference(x, weight, bias)
    from .triton_kernel import short_conv_op
    with torch.autocast(x.device.type, enabled=False):
        return short_conv_op(x, weight, bias)
