"""Row layout for the kernels that tile along the sequence axis (the Hyena convolutions).

Triton vectorises a tile's loads and stores only when it can prove every row 16-byte aligned,
which it infers from strides that are multiples of 16 elements. In-context and noisy recall
train at odd lengths (``L = seq_len - 1``: 127, 255, ...), so a contiguous ``(..., L)``
tensor has rows at stride ``L`` and every access is scalar. These helpers keep rows at a
stride of ``L`` rounded up to a multiple of ``ROW_ALIGN``: the tensor is a view of a slightly
wider buffer whose extra columns are never read. The values are those of the contiguous
layout.
"""
from __future__ import annotations

import torch

#: elements. 1 keeps rows contiguous, as on main: the layout probe found no consistent gain
#: from 16 (Triton's divisibility hint; benchmarks/RESULTS.md, issue #15, fourteenth session).
#: The helpers read it at call time, so 16 can be tried without other changes.
ROW_ALIGN = 1


def padded_length(length: int) -> int:
    """``length`` rounded up to a multiple of ROW_ALIGN."""
    return -(-length // ROW_ALIGN) * ROW_ALIGN


def empty_rows(shape: tuple[int, ...], dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """An uninitialised ``shape`` tensor whose rows (last axis) start every
    ``padded_length(shape[-1])`` elements."""
    *lead, length = shape
    return torch.empty(*lead, padded_length(length), dtype=dtype, device=device)[..., :length]


def rows_aligned(x: torch.Tensor) -> bool:
    """Whether ``x``'s last axis is contiguous and its other strides are multiples of
    ROW_ALIGN (axes of size 1 do not count), with a 16-byte aligned start."""
    return x.stride(-1) == 1 and x.data_ptr() % 16 == 0 and all(
        s % ROW_ALIGN == 0 for s, n in zip(x.stride()[:-1], x.shape[:-1]) if n > 1)


def aligned(x: torch.Tensor | None) -> torch.Tensor | None:
    """``x`` itself when ``rows_aligned``, else a copy in ``empty_rows``; None stays None."""
    if x is None or rows_aligned(x):
        return x
    out = empty_rows(tuple(x.shape), x.dtype, x.device)
    out.copy_(x)
    return out
