"""The row layout of the sequence-axis kernels (``madbench_layers.ops.rows``): rows at strides
that are multiples of 16 elements, the values those of the contiguous tensor, and storage that
extends to the padded end of every row (the kernels read there)."""
import pytest
import torch

from madbench_layers.ops.rows import (aligned, empty_rows, kernel_strides, padded_length,
                                      rows_aligned)


@pytest.mark.parametrize("length,padded", [(1, 16), (16, 16), (31, 32), (127, 128), (128, 128),
                                           (1023, 1024)])
def test_padded_length_rounds_up_to_sixteen(length, padded):
    assert padded_length(length) == padded


def test_empty_rows_has_the_shape_and_aligned_strides():
    x = empty_rows((3, 5, 127), torch.bfloat16, torch.device("cpu"))
    assert x.shape == (3, 5, 127) and x.dtype == torch.bfloat16
    assert x.stride() == (5 * 128, 128, 1)
    assert rows_aligned(x)


def test_aligned_keeps_an_aligned_tensor_and_copies_the_others():
    base = torch.randn(2, 6, 32)
    assert aligned(base) is base                              # stride 32: nothing to do
    view = base[..., :31]                                     # odd length in rows of 32
    assert aligned(view) is view
    odd = torch.randn(2, 6, 31)                               # contiguous, rows at stride 31
    assert not rows_aligned(odd)
    for x in (odd, torch.randn(2, 31, 6).transpose(1, 2), odd[:, 1:4]):
        y = aligned(x)
        assert rows_aligned(y) and y.data_ptr() != x.data_ptr()
        assert torch.equal(y, x)
    assert aligned(None) is None


def test_axes_of_size_one_do_not_count():
    x = torch.randn(1, 4, 32)[:, :1, :20]                     # stride 128, 32, 1; sizes 1, 1
    assert rows_aligned(x)


def test_a_row_whose_padding_is_outside_the_storage_is_not_aligned():
    """Hostile layout: strides are multiples of 16 but the storage ends where the last row
    does, so a kernel reading to the padded length would read past it; ``aligned`` copies."""
    flat = torch.randn(128 + 127)
    x = flat.as_strided((2, 127), (128, 1))
    assert x.stride() == (128, 1) and not rows_aligned(x)
    y = aligned(x)
    assert y is not x and rows_aligned(y) and torch.equal(y, x)


def test_kernel_strides_zero_the_axes_of_size_one():
    x = torch.randn(1, 4, 1, 127)                    # strides (508, 127, 127, 1)
    assert kernel_strides(x, 3) == (0, 127, 0)
    assert kernel_strides(None, 4) == (0, 0, 0, 0)
