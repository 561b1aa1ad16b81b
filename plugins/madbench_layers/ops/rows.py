"""Row layout for the kernels that tile along the sequence axis (the Hyena convolutions).

Triton vectorises a tile's loads and stores only when it can prove that every row starts
16-byte aligned (from strides that are multiples of 16 elements) and that the mask is constant
over runs of 16 positions (from a length bound that is a multiple of 16). In-context and noisy
recall train at odd lengths (``L = seq_len - 1``: 127, 255, ...), where contiguous rows and a
``t < L`` mask make every access scalar (the PTX of the long convolution's forward kernel then
has no vector load or store at all; benchmarks/RESULTS.md, nineteenth session).

So the kernels' tensors keep rows at a stride of ``padded_length(L)`` (``L`` rounded up to a
multiple of ROW_ALIGN): each is a view of a slightly wider buffer. The kernels mask loads and
stores by the padded length, so they read and write the columns past ``L`` too: what they read
there is garbage and is replaced by zeros (``tl.where``) before use, and what they write there
is never read as data. The values in the first ``L`` columns are those of the contiguous layout,
bit for bit.
"""
from __future__ import annotations

import torch

#: elements: rows start every multiple of it, and the kernels' masks run to the padded length.
ROW_ALIGN = 16


def padded_length(length: int) -> int:
    """``length`` rounded up to a multiple of ROW_ALIGN."""
    return -(-length // ROW_ALIGN) * ROW_ALIGN


def empty_rows(shape: tuple[int, ...], dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """An uninitialised ``shape`` tensor whose rows (last axis) start every
    ``padded_length(shape[-1])`` elements."""
    *lead, length = shape
    return torch.empty(*lead, padded_length(length), dtype=dtype, device=device)[..., :length]


def rows_aligned(x: torch.Tensor) -> bool:
    """Whether ``x``'s last axis is contiguous, its other strides are multiples of ROW_ALIGN
    (axes of size 1 do not count), its start is 16-byte aligned, and its storage extends to the
    padded end of its last row (the kernels read up to ``padded_length``)."""
    if x.stride(-1) != 1 or x.data_ptr() % 16 or not all(
            s % ROW_ALIGN == 0 for s, n in zip(x.stride()[:-1], x.shape[:-1]) if n > 1):
        return False
    if x.numel() == 0:
        return True
    last = x.storage_offset() + sum((n - 1) * s for n, s in zip(x.shape, x.stride()))
    end = last + 1 + padded_length(x.shape[-1]) - x.shape[-1]
    return end * x.element_size() <= x.untyped_storage().nbytes()


def aligned(x: torch.Tensor | None) -> torch.Tensor | None:
    """``x`` itself when ``rows_aligned``, else a copy in ``empty_rows``; None stays None."""
    if x is None or rows_aligned(x):
        return x
    out = empty_rows(tuple(x.shape), x.dtype, x.device)
    out.copy_(x)
    return out


def kernel_strides(x: torch.Tensor | None, ndim: int) -> tuple[int, ...]:
    """The first ``ndim`` strides of ``x`` for a kernel's arguments, 0 for an axis of size 1 (its
    index is always 0; a stride such as ``L = 127`` there would keep Triton from proving the
    rows aligned); all 0 for None."""
    if x is None:
        return (0,) * ndim
    return tuple(0 if n == 1 else s for n, s in zip(x.shape[:ndim], x.stride()[:ndim]))

