"""Triton long-convolution kernel (Hyena's gated form and multi-head Hyena's form) against naive
Toeplitz sums written here: outputs and gradients, absent gates, lengths that are not a multiple
of the tile, vmap over a configuration axis, the backend dispatcher; on a GPU, MAD shapes in fp32
and bf16 and the layers end to end. Without CUDA the kernel runs under the Triton interpreter at
tiny shapes."""
import os

import pytest
import torch

if not torch.cuda.is_available():
    os.environ["TRITON_INTERPRET"] = "1"  # before anything imports triton
pytest.importorskip("triton")

from madbench.errors import UsageError  # noqa: E402
from madbench_layers.ops.long_conv import (causal_conv, gated_long_conv,  # noqa: E402
                                           multihead_long_conv, reference)

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
gpu = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
# float32 products: exact under the interpreter, tf32 tensor cores (10-bit mantissa) on a GPU
TOL = 2e-5 if DEVICE == "cpu" else 5e-3


# -- naive references (float64, explicit Toeplitz matrices) --------------------------------
def toeplitz(h, length):
    """T[..., t, s] = h[..., t - s] for s <= t, else 0."""
    t = torch.arange(length, device=h.device)
    lag = t[:, None] - t[None, :]
    return torch.where(lag >= 0, h[..., lag.clamp(min=0)], 0.0)


def naive_gated(v, x1, x2, h):
    """x2[b, c, t] * sum_s T_c[t, s] x1[b, c, s] v[b, c, s]."""
    u = v if x1 is None else x1 * v
    y = torch.einsum("cts,bcs->bct", toeplitz(h, v.shape[-1]), u)
    return y if x2 is None else x2 * y


def naive_multihead(q, k, v, h):
    """y[b, head, j, t] = sum_i q[b,head,i,t] sum_s T_(head,i)[t, s] k[b,head,i,s] v[b,head,j,s]."""
    return torch.einsum("bhit,hits,bhis,bhjs->bhjt", q, toeplitz(h, v.shape[-1]), k, v)


def with_grads(fn, inputs, grad_out, dtype=None):
    """Output and gradients of ``fn`` on fresh leaves (cast to ``dtype`` when given)."""
    leaves = [None if x is None else x.detach().to(dtype or x.dtype).requires_grad_()
              for x in inputs]
    out = fn(*leaves)
    present = [x for x in leaves if x is not None]
    grad = grad_out.to(out.dtype)
    return out, torch.autograd.grad(out, present, grad)


def assert_close_to(got, expected, tol):
    """Every tensor within ``tol`` of the reference, relative to the reference's largest entry."""
    out, grads = got
    ref_out, ref_grads = expected
    assert len(grads) == len(ref_grads)
    for i, (a, b) in enumerate(zip([out, *grads], [ref_out, *ref_grads])):
        assert a.shape == b.shape, i
        assert torch.isfinite(a).all(), i
        err = (a.double() - b.double()).abs().max().item()
        assert err <= tol * b.abs().max().item(), f"tensor {i}: max error {err:.2e}"


def draw(*shape, seed):
    g = torch.Generator(device=DEVICE).manual_seed(seed)
    return torch.randn(*shape, generator=g, device=DEVICE)


def hyena_inputs(batch, channels, length, seed=0):
    v, x1, x2 = (draw(batch, channels, length, seed=seed + i) for i in range(3))
    h = draw(channels, length, seed=seed + 3) / length**0.5
    return v, x1, x2, h


def triton_gated(v, x1, x2, h):
    return gated_long_conv(v, x1, x2, h, backend="triton")


def triton_multihead(q, k, v, h):
    return multihead_long_conv(q, k, v, h, backend="triton")


# -- interpreter (or GPU) at tiny shapes ---------------------------------------------------
@pytest.mark.parametrize("length", [16, 37])
def test_gated_conv_forward_and_gradients_equal_toeplitz_sum(length):
    """Property: y = x2 * (h * (x1 * v)), and the gradients of v, x1, x2 and h, equal the
    explicit Toeplitz sum's; 37 is not a multiple of the tile, so several blocks and the ragged
    edge are covered."""
    inputs = hyena_inputs(2, 3, length)
    grad = draw(2, 3, length, seed=9)
    expected = with_grads(naive_gated, inputs, grad, torch.float64)
    assert_close_to(with_grads(triton_gated, inputs, grad), expected, TOL)


def test_absent_gates_give_the_plain_convolution():
    """Property: with no gates (``causal_conv``) or only the input gate, the kernel computes the
    plain / input-gated convolution, gradients included."""
    v, x1, _, h = hyena_inputs(2, 2, 24, seed=1)
    grad = draw(2, 2, 24, seed=8)
    got = with_grads(lambda u, f: causal_conv(u, f, backend="triton"), (v, h), grad)
    expected = with_grads(lambda u, f: naive_gated(u, None, None, f), (v, h), grad, torch.float64)
    assert_close_to(got, expected, TOL)
    got = with_grads(lambda a, b, f: triton_gated(a, b, None, f), (v, x1, h), grad)
    expected = with_grads(lambda a, b, f: naive_gated(a, b, None, f), (v, x1, h), grad,
                          torch.float64)
    assert_close_to(got, expected, TOL)


def test_streams_split_from_one_tensor_at_odd_length():
    """The layer's layout: v, x1, x2 are views of one (B, 3C, L) tensor at an odd L (the
    recall tasks' seq_len - 1), the output gradient a transposed view. Output and gradients
    equal the Toeplitz sum's, and the output's rows start where ``ops.rows`` puts them (at
    multiples of ROW_ALIGN elements)."""
    from madbench_layers.ops.rows import padded_length, rows_aligned
    batch, channels, length = 2, 3, 37
    base = draw(batch, 3 * channels, length, seed=5)
    h = draw(channels, length, seed=6) / length**0.5
    grad = draw(batch, length, channels, seed=7).transpose(1, 2)

    def split(fn):
        return lambda b, f: fn(*b.split(channels, dim=1), f)
    got = with_grads(split(triton_gated), (base, h), grad)
    expected = with_grads(split(naive_gated), (base, h), grad, torch.float64)
    assert_close_to(got, expected, TOL)
    assert got[0].stride(-2) == padded_length(length) and rows_aligned(got[0])


def test_what_lies_past_the_length_changes_nothing():
    """Hostile layout: the streams and the output gradient are views of rows padded past L (as
    ``ops.rows`` lays them out) whose extra columns hold NaN. The kernels read those columns
    (their masks run to the padded length, so that Triton can vectorise), and must zero them:
    the output and every gradient are finite and equal, bit for bit, to those of the same values
    in contiguous tensors. Hyena's gated form and the multi-head form."""
    from madbench_layers.ops.rows import padded_length, rows_aligned
    length = 37

    def nan_tailed(x):
        wide = torch.full((*x.shape[:-1], padded_length(length)), float("nan"), device=DEVICE)
        wide[..., :length] = x
        assert rows_aligned(wide[..., :length])
        return wide[..., :length]

    base = draw(2, 9, length, seed=5)
    h = draw(3, length, seed=6) / length**0.5
    grad = draw(2, 3, length, seed=7)

    def hyena(b, f):
        return triton_gated(*b.split(3, dim=1), f)
    clean = with_grads(hyena, (base, h), grad)
    dirty = with_grads(hyena, (nan_tailed(base), h), nan_tailed(grad))
    q, k, v = (draw(2, 2, 2, length, seed=s) for s in (1, 2, 3))    # 2 heads, dk = dv = 2
    hm = draw(2, 2, length, seed=4) / length**0.5
    grad_mh = draw(2, 2, 2, length, seed=8)
    clean_mh = with_grads(triton_multihead, (q, k, v, hm), grad_mh)
    dirty_mh = with_grads(triton_multihead, (*map(nan_tailed, (q, k, v)), hm),
                          nan_tailed(grad_mh))
    for got, want in ((dirty, clean), (dirty_mh, clean_mh)):
        for a, b in zip([got[0], *got[1]], [want[0], *want[1]]):
            assert torch.isfinite(a).all() and torch.equal(a, b)


def test_multihead_forward_and_gradients_equal_toeplitz_sum():
    """Property: per head, sum_i q_i * (h_i * (k_i v_j)) and all four gradients equal the
    explicit sum (dk = 2 filters summed per output, dv = 4 rows sharing each filter)."""
    batch, heads, dk, dv, length = 2, 2, 2, 4, 20
    q, k = draw(batch, heads, dk, length, seed=0), draw(batch, heads, dk, length, seed=1)
    v = draw(batch, heads, dv, length, seed=2)
    h = draw(heads, dk, length, seed=3) / length**0.5
    grad = draw(batch, heads, dv, length, seed=4)
    expected = with_grads(naive_multihead, (q, k, v, h), grad, torch.float64)
    assert_close_to(with_grads(triton_multihead, (q, k, v, h), grad), expected, TOL)


def test_vmap_over_configurations_equals_a_loop():
    """Property: vmapping over stacked configurations (streams and filters batched, one gate
    shared) gives, output and gradients, what calling the op per configuration gives."""
    configs, batch, channels, length = 3, 2, 2, 20
    v, x1 = draw(configs, batch, channels, length, seed=0), draw(configs, batch, channels,
                                                                 length, seed=1)
    x2 = draw(batch, channels, length, seed=2)                  # shared by every configuration
    h = draw(configs, channels, length, seed=3) / length**0.5
    grad = draw(configs, batch, channels, length, seed=4)

    def vmapped(v, x1, x2, h):
        return torch.func.vmap(triton_gated, in_dims=(0, 0, None, 0))(v, x1, x2, h)

    def looped(v, x1, x2, h):
        return torch.stack([naive_gated(v[i], x1[i], x2, h[i]) for i in range(configs)])

    expected = with_grads(looped, (v, x1, x2, h), grad, torch.float64)
    assert_close_to(with_grads(vmapped, (v, x1, x2, h), grad), expected, TOL)


# -- dispatcher (resolve_backend itself: test_kernel_backend.py) ----------------------------
def test_shapes_the_kernel_does_not_cover():
    """A filter that broadcasts along batch axes, or a non power-of-two head size: the reference
    under "auto" (on any device), a UsageError when the kernel is forced."""
    u = torch.randn(2, 3, 8, device=DEVICE)
    h = torch.randn(2, 3, 8, device=DEVICE)                     # one filter per (batch, channel)
    torch.testing.assert_close(causal_conv(u, h), reference.fft_causal_conv(u, h))
    with pytest.raises(UsageError, match="long_conv"):
        causal_conv(u, h, backend="triton")
    q = k = torch.randn(1, 2, 2, 8, device=DEVICE)
    v = torch.randn(1, 2, 3, 8, device=DEVICE)
    with pytest.raises(UsageError, match="power of two"):
        multihead_long_conv(q, k, v, torch.randn(2, 2, 8, device=DEVICE), backend="triton")


# -- GPU: MAD shapes, bf16, the layers -----------------------------------------------------
def bf16_streams(op):
    """``op`` on bfloat16 streams and a float32 filter, as under autocast."""
    return lambda a, b, c, h: op(a.bfloat16(), b.bfloat16(), c.bfloat16(), h)


@pytest.mark.gpu
@gpu
@pytest.mark.parametrize("length", [128, 1024])
def test_gpu_mad_shapes_fp32_and_bf16(length):
    """At batch 128, width 128: fp32 (tf32 tensor cores) within 1e-2 and bf16 within 3e-2 of
    the FFT reference computed in float64, for output and gradients."""
    inputs = hyena_inputs(128, 128, length)
    grad = draw(128, 128, length, seed=7)
    expected = with_grads(reference.gated_long_conv, inputs, grad, torch.float64)
    assert_close_to(with_grads(triton_gated, inputs, grad), expected, 1e-2)
    assert_close_to(with_grads(bf16_streams(triton_gated), inputs, grad), expected, 3e-2)
    q, k, v = (draw(128, 16, 8, length, seed=i) for i in range(3))
    h = draw(16, 8, length, seed=3) / length**0.5
    grad = draw(128, 16, 8, length, seed=4)
    expected = with_grads(reference.multihead_long_conv, (q, k, v, h), grad, torch.float64)
    assert_close_to(with_grads(triton_multihead, (q, k, v, h), grad), expected, 1e-2)
    assert_close_to(with_grads(bf16_streams(triton_multihead), (q, k, v, h), grad), expected,
                    3e-2)


@pytest.mark.gpu
@gpu
@pytest.mark.parametrize("name", ["hyena", "mh-hyena", "hyena-experts", "hyena-modal",
                                  "mh-hyena-modal", "hyena-experts-modal"])
def test_gpu_layers_match_the_reference_path(name, monkeypatch):
    """The layers on CUDA (kernel) equal the same layers with MADBENCH_KERNELS=reference,
    output and every gradient (input and parameters)."""
    from madbench.architecture import LayerSpec, build_mixer
    torch.manual_seed(0)
    layer = build_mixer(LayerSpec(name), 128, 256)
    layer = layer.cuda()
    x = torch.randn(16, 256, 128, device="cuda", requires_grad=True)
    leaves = [x, *layer.parameters()]

    def run():
        out = layer(x)
        return out, torch.autograd.grad(out, leaves, torch.ones_like(out))

    got = run()
    monkeypatch.setenv("MADBENCH_KERNELS", "reference")
    assert_close_to(got, run(), 1e-2)
