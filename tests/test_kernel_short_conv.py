"""Triton short causal depthwise convolution against a sum of shifted products written here
(float64): outputs and the three gradients, with and without bias, widths 3 and 4, lengths and
channel counts that are not a multiple of the tile, an input read through a transposed view,
channels repeated (Hyena's tied projection: the input's gradient sums over the copies), the
dispatcher's errors. Without CUDA the kernel runs under the Triton interpreter at tiny
shapes."""
import os

import pytest
import torch

if not torch.cuda.is_available():
    os.environ["TRITON_INTERPRET"] = "1"  # before anything imports triton
pytest.importorskip("triton")

from madbench.errors import UsageError  # noqa: E402
from madbench_layers.ops.short_conv import reference, short_causal_conv  # noqa: E402

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
TOL = 1e-5 if DEVICE == "cpu" else 1e-4


def naive(x, w, b):
    """y[b, c, t] = bias[c] + sum_k w[c, k] x[b, c % C_in, t - K + 1 + k], zeros before t = 0."""
    K, L = w.shape[1], x.shape[-1]
    x = torch.cat([x] * (w.shape[0] // x.shape[1]), dim=1)
    y = torch.zeros_like(x) if b is None else b[None, :, None].expand_as(x).clone()
    for k in range(K):
        shift = K - 1 - k
        y[..., shift:] += w[None, :, k, None] * x[..., :L - shift]
    return y


def grads(fn, x, w, b, gy):
    x, w = x.clone().requires_grad_(), w.clone().requires_grad_()
    b = None if b is None else b.clone().requires_grad_()
    y = fn(x, w, b)
    y.backward(gy)
    return y.detach(), x.grad, w.grad, None if b is None else b.grad


@pytest.mark.parametrize("K,C,L,bias,transposed,repeat", [
    (3, 5, 7, True, False, 1), (4, 40, 70, True, True, 1), (3, 33, 65, False, True, 1),
    (4, 3, 2, False, False, 1), (3, 12, 9, True, True, 4), (3, 34, 66, True, False, 2)])
def test_kernel_matches_shifted_sums(K, C, L, bias, transposed, repeat):
    g = torch.Generator().manual_seed(K * 100 + C + L)
    B, C_in = 2, C // repeat
    x = (torch.randn(B, L, C_in, generator=g).transpose(1, 2) if transposed
         else torch.randn(B, C_in, L, generator=g))
    w, gy = torch.randn(C, K, generator=g), torch.randn(B, C, L, generator=g)
    b = torch.randn(C, generator=g) if bias else None
    want = grads(naive, *[None if t is None else t.double() for t in (x, w, b, gy)])
    dev = [None if t is None else t.to(DEVICE) for t in (x, w, b, gy)]
    got = grads(lambda *a: short_causal_conv(*a, backend="triton"), *dev)
    for name, a, e in zip(("y", "grad x", "grad weight", "grad bias"), got, want):
        if e is None:
            assert a is None, name
            continue
        torch.testing.assert_close(a.double().cpu(), e, atol=TOL * (1 + L * B), rtol=TOL, msg=name)
    from madbench_layers.ops.rows import padded_length
    assert got[0].stride() == (C * padded_length(L), padded_length(L), 1)   # ops.rows' layout


def test_kernel_reads_mambas_half_of_the_projection_in_place():
    """Mamba convolves the first half of its (B, L, 2C) input projection, transposed: rows at
    a stride of 2C. The gradient reaches that half only, and the other half's is zero."""
    g = torch.Generator().manual_seed(7)
    B, C, L = 2, 24, 19
    proj = torch.randn(B, L, 2 * C, generator=g)
    w, b = torch.randn(C, 4, generator=g), torch.randn(C, generator=g)
    gy = torch.randn(B, C, L, generator=g)
    want = grads(naive, proj[..., :C].transpose(1, 2).double(), w.double(), b.double(), gy.double())
    p, w, b = (t.to(DEVICE).requires_grad_() for t in (proj, w, b))
    xs, _ = p.chunk(2, dim=-1)
    y = short_causal_conv(xs.transpose(1, 2), w, b, backend="triton")
    y.backward(gy.to(DEVICE))
    got = (y.detach(), p.grad[..., :C].transpose(1, 2), w.grad, b.grad)
    for name, a, e in zip(("y", "grad x", "grad weight", "grad bias"), got, want):
        torch.testing.assert_close(a.double().cpu(), e, atol=TOL * (1 + L * B), rtol=TOL, msg=name)
    assert not p.grad[..., C:].any()


def test_what_lies_past_the_length_changes_nothing():
    """Hostile layout: the output gradient is a view of rows padded past L (as ``ops.rows``
    lays them out) whose extra columns hold NaN. The backward kernel reads those columns (its
    masks run to the padded length) and must zero them: the gradients are finite and equal, bit
    for bit, to those of the same values in a contiguous tensor."""
    from madbench_layers.ops.rows import padded_length, rows_aligned
    g = torch.Generator().manual_seed(3)
    B, C, L = 2, 12, 37
    x = torch.randn(B, L, C // 4, generator=g).transpose(1, 2).to(DEVICE)   # tied over 4 groups
    w, b = torch.randn(C, 3, generator=g).to(DEVICE), torch.randn(C, generator=g).to(DEVICE)
    gy = torch.randn(B, C, L, generator=g).to(DEVICE)
    wide = torch.full((B, C, padded_length(L)), float("nan"), device=DEVICE)
    wide[..., :L] = gy
    assert rows_aligned(wide[..., :L])

    def run(grad):
        return grads(lambda *a: short_causal_conv(*a, backend="triton"), x, w, b, grad)
    for got, want in zip(run(wide[..., :L]), run(gy)):
        assert torch.isfinite(got).all() and torch.equal(got, want)


def test_reference_is_nn_conv1d_as_the_layers_write_it():
    conv = torch.nn.Conv1d(6, 6, 3, groups=6, padding=2)
    x = torch.randn(2, 6, 9)
    torch.testing.assert_close(reference(x, conv.weight, conv.bias), conv(x)[..., :9])
    torch.testing.assert_close(naive(x, conv.weight[:, 0], conv.bias), conv(x)[..., :9])
    u = torch.randn(2, 9, 3)                       # Hyena: a projection tied over 2 groups
    want = conv(u.repeat(1, 1, 2).transpose(1, 2))[..., :9]
    torch.testing.assert_close(reference(u.transpose(1, 2), conv.weight, conv.bias), want)


def test_shapes_that_do_not_fit_are_refused_in_one_line():
    with pytest.raises(UsageError, match="with C a multiple of C_in"):
        short_causal_conv(torch.randn(2, 4, 5), torch.randn(6, 3))
    with pytest.raises(UsageError, match="unknown kernel backend"):
        short_causal_conv(torch.randn(2, 4, 5), torch.randn(4, 3), backend="cuda")


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_bf16_at_hyena_shape_is_close_to_float32_reference():
    u = torch.randn(8, 128, 1536, device="cuda")
    w, b = torch.randn(1536, 3, device="cuda") / 3, torch.randn(1536, device="cuda")
    want = reference(u.transpose(1, 2), w, b)
    with torch.autocast("cuda", dtype=torch.bfloat16):
        got = short_causal_conv(u.transpose(1, 2), w, b, backend="triton")
    assert got.dtype == torch.bfloat16
    torch.testing.assert_close(got.float(), want, atol=3e-2, rtol=2e-2)


@pytest.mark.parametrize("shared_weights", [False, True])
def test_kernel_under_vmap_matches_each_configuration_alone(shared_weights):
    """The batched engine vmaps the forward pass over configurations (weights stacked, or an
    input per configuration with shared weights), then calls backward: outputs and gradients
    equal the shifted sums per configuration."""
    g = torch.Generator().manual_seed(3)
    G, B, C_in, C, K, L = 3, 2, 4, 8, 3, 11
    if shared_weights:
        w, b = torch.randn(C, K, generator=g), torch.randn(C, generator=g)
        x = torch.randn(G, B, C_in, L, generator=g)
        dims, xs = (None, None, 0), [x[i] for i in range(G)]
        ws, bs = [w] * G, [b] * G
    else:
        w, b = torch.randn(G, C, K, generator=g), torch.randn(G, C, generator=g)
        x = torch.randn(B, C_in, L, generator=g)
        dims, xs = (0, 0, None), [x] * G
        ws, bs = list(w), list(b)
    gy = torch.randn(G, B, C, L, generator=g)
    leaves = [t.clone().to(DEVICE).requires_grad_() for t in (w, b, x)]
    y = torch.vmap(lambda w, b, x: short_causal_conv(x, w, b, backend="triton"),
                   in_dims=dims)(*leaves)
    y.backward(gy.to(DEVICE))
    want = [grads(naive, xs[i].double(), ws[i].double(), bs[i].double(), gy[i].double())
            for i in range(G)]
    torch.testing.assert_close(y.detach().cpu().double(), torch.stack([r[0] for r in want]),
                               atol=TOL, rtol=1e-5)
    if shared_weights:
        wg, bg = sum(r[2] for r in want), sum(r[3] for r in want)
        xg = torch.stack([r[1] for r in want])
    else:
        wg, bg = torch.stack([r[2] for r in want]), torch.stack([r[3] for r in want])
        xg = sum(r[1] for r in want)
    for got, expect in zip(leaves, (wg, bg, xg)):
        torch.testing.assert_close(got.grad.cpu().double(), expect, atol=1e-4, rtol=1e-5)
