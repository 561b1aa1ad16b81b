"""Vectorised numpy building blocks shared by the task generators."""
from __future__ import annotations

import numpy as np


def distinct_tuples(rng: np.random.Generator, n: int, shape: tuple[int, ...],
                    size: int) -> np.ndarray:
    """Uniformly drawn ordered ``size``-tuples of distinct integers from [0, n), one per
    element of ``shape``: an integer array of shape ``(*shape, size)``.

    Each tuple is as likely as any other, which is what a uniform row of a shuffled table of
    all permutations gives, without building the table. Element j is drawn from the
    n - j values not yet taken and shifted past the taken ones in ascending order. The first
    m < size entries of a tuple are themselves a uniform distinct m-tuple."""
    if size > n:
        raise ValueError(f"cannot draw {size} distinct tokens from {n}")
    dtype = np.int16 if n < 2**15 else np.int64
    out = np.empty((*shape, size), dtype=dtype)
    for j in range(size):
        x = rng.integers(0, n - j, shape, dtype=dtype)
        if j == 1:
            x += x >= out[..., 0]
        elif j == 2:
            low = np.minimum(out[..., 0], out[..., 1])
            x += x >= low
            x += x >= np.maximum(out[..., 0], out[..., 1])
        elif j > 2:
            for taken in np.moveaxis(np.sort(out[..., :j], axis=-1), -1, 0):
                x += x >= taken
        out[..., j] = x
    return out


def first_occurrence(codes: np.ndarray) -> np.ndarray:
    """For each position of each row of ``codes`` (non-negative integers, [N, T]), the index
    of the first position in the same row holding the same code."""
    num, length = codes.shape
    if length == 0:
        return np.zeros_like(codes, dtype=np.int64)
    top = int(codes.max()) + 1
    dtype = np.int32 if top * length < 2**31 else np.int64
    order = codes.astype(dtype) * length + np.arange(length, dtype=dtype)
    order.sort(axis=1)                      # by code, then by position
    pos = order % length
    code = order // length
    starts = np.ones(order.shape, dtype=bool)
    starts[:, 1:] = code[:, 1:] != code[:, :-1]
    group_start = np.where(starts, np.arange(length), 0)
    np.maximum.accumulate(group_start, axis=1, out=group_start)
    first = np.empty((num, length), dtype=np.int64)
    np.put_along_axis(first, pos.astype(np.int64), np.take_along_axis(pos, group_start, axis=1),
                      axis=1)
    return first


def kth_true(mask: np.ndarray, k: np.ndarray) -> np.ndarray:
    """Per row, the column of the k-th (0-based) True entry of ``mask`` [N, T]."""
    return np.argmax(np.cumsum(mask, axis=1, dtype=np.int32) > k[:, None], axis=1)
