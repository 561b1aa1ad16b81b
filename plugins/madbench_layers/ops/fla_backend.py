"""Choosing between flash-linear-attention's kernels and madbench's pure-PyTorch references.

fla (``pip install 'madbench[fla]'``) is optional: its Triton kernels run on CUDA only, so
``"auto"`` uses them for CUDA tensors when ``fla`` can be imported and the pure-PyTorch
reference otherwise; ``"reference"`` and ``"fla"`` force one. ``MADBENCH_KERNELS=reference``
forces the reference everywhere. Nothing here imports fla until a kernel runs.

An op may name a reason fla's kernel would refuse its inputs on this machine (``refusal``: fla's
Hopper/Triton guard, a float32 assertion), computed without running a kernel: ``"auto"`` then
takes the reference on CUDA too and says why once, in one line; ``"fla"`` is a usage error.
"""
from __future__ import annotations

import functools
import importlib.util
import os
from typing import Callable

import torch

from madbench.errors import UsageError, warn

FLA_BACKENDS = ("auto", "reference", "fla")


@functools.lru_cache(maxsize=1)
def fla_importable() -> bool:
    """Whether ``fla`` is installed (found, not imported: importing it costs seconds)."""
    return importlib.util.find_spec("fla") is not None


_WARNED: set[str] = set()   #: fallbacks already announced in this process


def _on_kernel_device(tensor: torch.Tensor) -> bool:
    """Whether fla's kernels would run on ``tensor`` (CUDA)."""
    return tensor.is_cuda


def warn_once(key: str, message: str) -> None:
    """``message`` as one ``Warning:`` line on stderr, the first time ``key`` is seen."""
    if key not in _WARNED:
        _WARNED.add(key)
        warn(message)


def resolve_fla_backend(backend: str, tensor: torch.Tensor,
                        refusal: Callable[[], str | None] | None = None,
                        op: str = "this op") -> str:
    """The backend an op would use for ``tensor``: "reference" or "fla". ``refusal()`` (asked
    only when fla would be used) gives why fla's kernel would refuse these inputs, or None."""
    if backend not in FLA_BACKENDS:
        raise UsageError(f"unknown kernel backend {backend!r}; choose one of "
                         f"{', '.join(FLA_BACKENDS)}")
    forced = os.environ.get("MADBENCH_KERNELS", "").strip().lower() == "reference"
    if backend == "reference" or forced:
        return "reference"
    if backend == "auto" and not (_on_kernel_device(tensor) and fla_importable()):
        return "reference"
    if backend == "fla" and not fla_importable():
        raise UsageError("backend 'fla' asked for, but flash-linear-attention is not installed "
                         "(pip install 'madbench[fla]')")
    reason = refusal() if refusal is not None else None
    if reason is None:
        return "fla"
    if backend == "fla":
        raise UsageError(f"backend 'fla' asked for {op}, but {reason}")
    warn_once(f"{op}: {reason}", f"{op} runs madbench's PyTorch path on CUDA, not fla's "
              f"kernel: {reason}")
    return "reference"


def token_major(*tensors: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """(batch, heads, seq_len, ...) tensors as (batch, seq_len, heads, ...), fla's layout."""
    return tuple(t.transpose(1, 2).contiguous() for t in tensors)
