"""Choosing between an op's Triton kernel and its pure-PyTorch reference.

``"auto"`` uses the kernel for CUDA tensors of a kernel dtype when triton imports, else the
reference; ``"reference"`` and ``"triton"`` force one. ``MADBENCH_KERNELS=reference`` forces the
reference everywhere.
"""
from __future__ import annotations

import functools
import os

import torch

from madbench.errors import UsageError

BACKENDS = ("auto", "reference", "triton")
KERNEL_DTYPES = (torch.float32, torch.bfloat16, torch.float16)


@functools.lru_cache(maxsize=1)
def triton_importable() -> bool:
    try:
        import triton  # noqa: F401
    except ImportError:
        return False
    return True


def resolve_backend(backend: str, tensor: torch.Tensor,
                    dtypes: tuple[torch.dtype, ...] = KERNEL_DTYPES) -> str:
    """The backend an op would use for ``tensor``: "reference" or "triton"."""
    if backend not in BACKENDS:
        raise UsageError(f"unknown kernel backend {backend!r}; choose one of {', '.join(BACKENDS)}")
    if os.environ.get("MADBENCH_KERNELS", "").strip().lower() == "reference":
        return "reference"
    if backend == "auto":
        fits = tensor.is_cuda and tensor.dtype in dtypes
        return "triton" if fits and triton_importable() else "reference"
    if backend == "triton" and not triton_importable():
        raise UsageError("backend 'triton' asked for, but triton cannot be imported")
    return backend


def last_axis_contiguous(x: torch.Tensor | None) -> torch.Tensor | None:
    """``x`` with a contiguous last axis (the axis the kernels' tiles read along; a transposed
    view would make every load a gather); None stays None."""
    if x is None or x.stride(-1) == 1:
        return x
    return x.contiguous()
