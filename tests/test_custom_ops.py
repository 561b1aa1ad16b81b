"""The Triton kernels as registered custom operators (``madbench::long_conv``,
``madbench::short_conv``, ``madbench::selective_scan``, ``madbench::chunk_gla`` and their
backward ops):
``torch.library.opcheck`` (schema, the fake implementation's shapes and strides against the
real outputs', the autograd registration, AOT dispatch), and a compiled function (AOT autograd,
run eagerly) gives eager's outputs and gradients. Without CUDA the kernels run under the Triton
interpreter at tiny shapes."""
import os

import pytest
import torch

if not torch.cuda.is_available():
    os.environ["TRITON_INTERPRET"] = "1"  # before anything imports triton
pytest.importorskip("triton")

from madbench_layers.ops.gla import triton_kernel as gla_kernel  # noqa: E402
from madbench_layers.ops.long_conv import gated_long_conv, multihead_long_conv  # noqa: E402
from madbench_layers.ops.long_conv import triton_kernel as long_kernel  # noqa: E402
from madbench_layers.ops.selective_scan import selective_scan  # noqa: E402
from madbench_layers.ops.selective_scan import triton_kernel as scan_kernel  # noqa: E402
from madbench_layers.ops.short_conv import short_causal_conv  # noqa: E402
from madbench_layers.ops.short_conv import triton_kernel as short_kernel  # noqa: E402

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
PRECISION = "ieee" if DEVICE == "cpu" else "tf32"


def leaf(*shape, seed):
    g = torch.Generator(device=DEVICE).manual_seed(seed)
    return torch.randn(*shape, generator=g, device=DEVICE).requires_grad_()


def assert_compiled_equals_eager(fn, inputs, grad):
    """``fn`` compiled (AOT autograd, one graph: the ops called opaquely) and eager give the
    same output and the same gradients of every input."""
    compiled = torch.compile(fn, backend="aot_eager", fullgraph=True)
    (a, ga), (b, gb) = [(out.detach(), torch.autograd.grad(out, inputs, grad))
                        for out in (fn(*inputs), compiled(*inputs))]
    torch.testing.assert_close(b, a)
    for x, y in zip(gb, ga):
        torch.testing.assert_close(x, y)


@pytest.mark.parametrize("gates,G,R", [(True, 1, 1), (False, 1, 1), (True, 2, 4)])
def test_long_conv_op_passes_opcheck(gates, G, R):
    K, N, Cv, L = 1, 2, 3, 19               # odd L: the outputs' rows are padded to 32
    v = leaf(K, N, Cv, R, L, seed=0)
    x1 = leaf(K, N, Cv, G, L, seed=1) if gates else None
    x2 = leaf(K, N, Cv, G, L, seed=2) if gates else None
    h = leaf(K, Cv, G, L, seed=3)
    torch.library.opcheck(long_kernel.long_conv_op, (v, x1, x2, h, PRECISION))


@pytest.mark.parametrize("bias,repeat", [(True, 1), (False, 4)])
def test_short_conv_op_passes_opcheck(bias, repeat):
    x = leaf(2, 13, 3, seed=4).transpose(1, 2)      # (B, C_in, L) as the layers read it
    w = leaf(3 * repeat, 3, seed=5)
    b = leaf(3 * repeat, seed=6) if bias else None
    torch.library.opcheck(short_kernel.short_conv_op, (x, w, b))


# dynamo traces through ops.backend's cached triton check, and says so: the check has no state
@pytest.mark.filterwarnings("ignore:Dynamo detected a call to a `functools.lru_cache`")
def test_a_compiled_hyena_stream_equals_eager():
    """Short convolution, split, gated and multi-head long convolutions, as the layers chain
    them at an odd length: compiled (AOT autograd, the ops called opaquely) and eager agree,
    outputs and every gradient."""
    def fn(xp, w, b, h, hm):
        u = short_causal_conv(xp.transpose(1, 2), w, b, backend="triton")
        x0, x1, v = u.split(4, dim=1)
        y = gated_long_conv(v, x1, x0, h, backend="triton")
        q, vv, k = (s.reshape(2, 2, 2, 21) for s in (x0, x1, v))
        return y.sum(1) + multihead_long_conv(q, k, vv, hm, backend="triton").sum((1, 2))

    inputs = [leaf(2, 21, 12, seed=7), leaf(12, 3, seed=8), leaf(12, seed=9),
              leaf(4, 21, seed=10), leaf(2, 2, 21, seed=11)]
    assert_compiled_equals_eager(fn, inputs, torch.randn(2, 21, device=DEVICE))


def scan_inputs(groups=0):
    batch, L, d, n = 2, 21, 8, 4
    a_shape = (groups, d, n) if groups else (d, n)
    return [leaf(batch, L, d, seed=12), torch.nn.functional.softplus(leaf(batch, L, d, seed=13)),
            -torch.exp(leaf(*a_shape, seed=14)), leaf(batch, L, n, seed=15),
            leaf(batch, L, n, seed=16), leaf(*a_shape[:-1], seed=17)]


@pytest.mark.parametrize("store_states", [True, False])
def test_selective_scan_op_passes_opcheck(store_states):
    args = [x.detach().requires_grad_() for x in scan_inputs()]
    torch.library.opcheck(scan_kernel.selective_scan_op, (*args, store_states))


def test_a_compiled_scan_equals_eager():
    inputs = [x.detach().requires_grad_() for x in scan_inputs()]
    grad = torch.randn(2, 21, 8, device=DEVICE)

    def fn(*a):
        return selective_scan(*a, backend="triton")
    assert_compiled_equals_eager(fn, inputs, grad)


@pytest.mark.parametrize("store_states", [True, False])
def test_chunk_gla_op_passes_opcheck(store_states):
    """Token-major inputs (batch, heads, seq_len, d) as the layer gives them; decays in log
    space below zero."""
    def token_major(*shape, seed):
        x = leaf(shape[0], shape[2], shape[1], shape[3], seed=seed).detach().transpose(1, 2)
        return x.requires_grad_()
    q, k = token_major(2, 2, 21, 16, seed=18), token_major(2, 2, 21, 16, seed=19)
    v = token_major(2, 2, 21, 16, seed=20)
    g = (-torch.nn.functional.softplus(token_major(2, 2, 21, 16, seed=21))).detach()
    torch.library.opcheck(gla_kernel.chunk_gla_op,
                          (q, k, v, g.requires_grad_(), "", store_states))


def test_a_compiled_gla_equals_eager():
    q, k, v = (leaf(2, 2, 21, 16, seed=s) for s in (22, 23, 24))
    g = (-torch.nn.functional.softplus(leaf(2, 2, 21, 16, seed=25))).detach().requires_grad_()
    inputs = [q, k, v, g]
    grad = torch.randn(2, 2, 21, 16, device=DEVICE)
    assert_compiled_equals_eager(gla_kernel.chunk_gla_triton, inputs, grad)
