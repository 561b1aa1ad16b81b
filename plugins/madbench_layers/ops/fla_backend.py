"""Choosing between flash-linear-attention's kernels and madbench's pure-PyTorch references.

fla (``pip install 'madbench[fla]'``) is optional: its Triton kernels run on CUDA only, so
``"auto"`` uses them for CUDA tensors when ``fla`` can be imported and the pure-PyTorch
reference otherwise; ``"reference"`` and ``"fla"`` force one. ``MADBENCH_KERNELS=reference``
forces the reference everywhere. Nothing here imports fla until a kernel runs.
"""
from __future__ import annotations

import functools
import importlib.util
import os

import torch

from madbench.errors import UsageError

FLA_BACKENDS = ("auto", "reference", "fla")


@functools.lru_cache(maxsize=1)
def fla_importable() -> bool:
    """Whether ``fla`` is installed (found, not imported: importing it costs seconds)."""
    return importlib.util.find_spec("fla") is not None


def resolve_fla_backend(backend: str, tensor: torch.Tensor) -> str:
    """The backend an op would use for ``tensor``: "reference" or "fla"."""
    if backend not in FLA_BACKENDS:
        raise UsageError(f"unknown kernel backend {backend!r}; choose one of "
                         f"{', '.join(FLA_BACKENDS)}")
    if os.environ.get("MADBENCH_KERNELS", "").strip().lower() == "reference":
        return "reference"
    if backend == "auto":
        return "fla" if tensor.is_cuda and fla_importable() else "reference"
    if backend == "fla" and not fla_importable():
        raise UsageError("backend 'fla' asked for, but flash-linear-attention is not installed "
                         "(pip install 'madbench[fla]')")
    return backend


def token_major(*tensors: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """(batch, heads, seq_len, ...) tensors as (batch, seq_len, heads, ...), fla's layout."""
    return tuple(t.transpose(1, 2).contiguous() for t in tensors)
