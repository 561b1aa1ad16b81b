"""Triton GLA kernel against the step-by-step recurrence: outputs and gradients, block splits,
strong forgetting, vmap over a configuration axis, the backend dispatcher; on a GPU, MAD shapes
and bf16. Without CUDA the kernel runs under the Triton interpreter at tiny shapes."""
import os

import pytest
import torch

if not torch.cuda.is_available():
    os.environ["TRITON_INTERPRET"] = "1"  # before anything imports triton
pytest.importorskip("triton")

from madbench.errors import UsageError  # noqa: E402
from madbench_layers.ops.gla import chunk_gla, resolve_backend  # noqa: E402
from madbench_layers.ops.gla.reference import gla_recurrent  # noqa: E402

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
gpu = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


def kernel():
    from madbench_layers.ops.gla.triton_kernel import chunk_gla_triton, launch_config
    return chunk_gla_triton, launch_config


def random_inputs(batch, heads, seq_len, dk, dv, gate_scale=1.0, seed=0, device=DEVICE,
                  layer_layout=True):
    """q, k, v, log_alpha in fp32; with ``layer_layout`` they are (batch, seq_len, heads, d)
    tensors viewed as (batch, heads, seq_len, d), as the layer passes them."""
    g = torch.Generator(device=device).manual_seed(seed)

    def draw(d):
        x = torch.randn(batch, seq_len, heads, d, generator=g, device=device)
        return x.transpose(1, 2) if layer_layout else x.transpose(1, 2).contiguous()
    q, k, v, gate = draw(dk), draw(dk), draw(dv), draw(dk)
    return q, k, v, torch.nn.functional.logsigmoid(gate_scale * gate)


def recurrent_with_grads(inputs, grad_out):
    """Output and input gradients of the fp64 step-by-step recurrence (autograd)."""
    leaves = [x.detach().double().requires_grad_() for x in inputs]
    out = gla_recurrent(*leaves)
    return out, torch.autograd.grad(out, leaves, grad_out.double())


def kernel_with_grads(op, inputs, grad_out):
    leaves = [x.detach().clone().requires_grad_() for x in inputs]
    out = op(*leaves)
    return out, torch.autograd.grad(out, leaves, grad_out)


def assert_matches(got, expected, tol):
    out, grads = got
    ref_out, ref_grads = expected
    for name, a, b in zip(["o", "dq", "dk", "dv", "dlog_alpha"], [out, *grads],
                          [ref_out, *ref_grads]):
        assert torch.isfinite(a).all(), name
        scale = b.abs().max().item()
        err = (a.double() - b).abs().max().item()
        assert err <= tol * scale, f"{name}: max error {err:.2e} vs scale {scale:.2e}"


@pytest.mark.parametrize("batch,heads,seq_len,dk,dv,gate_scale", [
    (2, 2, 37, 4, 8, 1.0),    # no multiple of the 16-step chunk; channels padded to 16
    (1, 1, 21, 16, 16, 4.0),  # one full and one partial chunk, strong gates
])
def test_kernel_matches_recurrence(batch, heads, seq_len, dk, dv, gate_scale):
    """Property: the kernel's output and its gradients for q, k, v, log_alpha equal those of
    the fp64 recurrence S_t = diag(alpha_t) S_{t-1} + k_t^T v_t, o_t = q_t S_t."""
    op, _ = kernel()
    inputs = random_inputs(batch, heads, seq_len, dk, dv, gate_scale)
    grad_out = torch.randn(batch, heads, seq_len, dv, device=DEVICE)
    assert_matches(kernel_with_grads(op, inputs, grad_out),
                   recurrent_with_grads(inputs, grad_out), 2e-5)


@pytest.mark.parametrize("max_spread", [120.0, -1.0])
def test_kernel_block_splits_match_recurrence(max_spread):
    """Property: splitting dk and dv into blocks over the grid (partial outputs and gradients
    summed, the gate gradient cumulated by torch) gives the same result, with the in-chunk
    matrix-product path and with the exact column-by-column path (max_spread -1 forces it);
    contiguous (batch, heads, seq_len, d) inputs work too."""
    op, launch_config = kernel()
    config = {**launch_config(24, 20), "BT": 16, "BV_FWD": 16, "BK_BWD": 16, "BV_BWD": 16,
              "max_spread": max_spread}
    inputs = random_inputs(1, 2, 19, 24, 20, layer_layout=False, seed=3)
    grad_out = torch.randn(1, 2, 19, 20, device=DEVICE)
    assert_matches(kernel_with_grads(lambda *x: op(*x, config=config), inputs, grad_out),
                   recurrent_with_grads(inputs, grad_out), 2e-5)


def test_backward_recomputes_missing_states():
    """The backward kernel given no saved chunk states (a forward run without grad) rebuilds
    them: same gradients as with the states the forward pass stored."""
    from madbench_layers.ops.gla.triton_kernel import gla_backward, gla_forward
    inputs = random_inputs(1, 2, 21, 8, 8, seed=2)
    grad_out = torch.randn(1, 2, 21, 8, device=DEVICE)
    _, states = gla_forward(*inputs, store_states=True)
    with_states = gla_backward(*inputs, states, grad_out)
    recomputed = gla_backward(*inputs, states[:0].flatten(), grad_out)
    for a, b in zip(with_states, recomputed):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_kernel_is_finite_under_strong_forgetting():
    """Property: log-gates of -60 per step (exp(+960) would overflow) leave the fp32 kernel
    finite and equal to the fp64 recurrence (to 5e-4 of the largest value: the cumulated
    log-gates reach about -1,000 within a chunk, so their fp32 differences, exponentiated, carry
    about 1e-4 relative error). Only the first chunk forgets that fast: the others take the
    matrix-product path."""
    op, launch_config = kernel()
    q, k, v, _ = random_inputs(1, 1, 90, 8, 8, seed=1)
    mask = torch.rand(q.shape, generator=torch.Generator().manual_seed(1)).to(DEVICE) < 0.5
    mask[:, :, launch_config(8, 8)["BT"]:] = False
    log_alpha = torch.where(mask, -60.0, -1e-3)
    grad_out = torch.randn_like(v)
    assert_matches(kernel_with_grads(op, (q, k, v, log_alpha), grad_out),
                   recurrent_with_grads((q, k, v, log_alpha), grad_out), 5e-4)


def test_vmap_over_a_configuration_axis():
    """Property: vmap over a leading configuration axis (one input shared by all
    configurations) equals the recurrence on each configuration, values and gradients."""
    op, _ = kernel()
    configs = 3
    q, k, v, log_alpha = (torch.stack(x) for x in zip(*[
        random_inputs(2, 1, 18, 8, 8, seed=s) for s in range(configs)]))
    shared_k = k[0].clone()
    leaves = [x.clone().requires_grad_() for x in (q, shared_k, v, log_alpha)]
    out = torch.func.vmap(op, in_dims=(0, None, 0, 0))(*leaves)
    grad_out = torch.randn_like(out)
    grads = torch.autograd.grad(out, leaves, grad_out)
    ref_leaves = [x.detach().double().requires_grad_() for x in (q, shared_k, v, log_alpha)]
    ref = torch.stack([gla_recurrent(ref_leaves[0][c], ref_leaves[1], ref_leaves[2][c],
                                     ref_leaves[3][c]) for c in range(configs)])
    ref_grads = torch.autograd.grad(ref, ref_leaves, grad_out.double())
    assert_matches((out, grads), (ref, ref_grads), 2e-5)


def test_dispatcher_backends(monkeypatch):
    """auto picks the reference for CPU tensors and triton for CUDA ones;
    MADBENCH_KERNELS=reference overrides a forced triton backend; an unknown backend is a usage
    error; forced triton equals the reference."""
    inputs = random_inputs(1, 1, 9, 4, 4)
    assert resolve_backend("auto", inputs[0].cpu()) == "reference"
    assert resolve_backend("auto", inputs[0]) == ("triton" if DEVICE == "cuda" else "reference")
    assert resolve_backend("triton", inputs[0]) == "triton"
    with pytest.raises(UsageError):
        resolve_backend("cuda", inputs[0])
    torch.testing.assert_close(chunk_gla(*inputs, backend="triton"),
                               chunk_gla(*inputs, backend="reference"), rtol=1e-5, atol=1e-5)
    monkeypatch.setenv("MADBENCH_KERNELS", "reference")
    assert resolve_backend("triton", inputs[0]) == "reference"


@pytest.mark.gpu
@gpu
@pytest.mark.parametrize("heads,dk,dv", [(8, 16, 16), (1, 128, 128)])
def test_gpu_mad_shapes_match_reference(heads, dk, dv):
    """On the GPU at MAD head shapes (L = 1,024): the kernel against the fp64 recurrence's
    chunked equivalent (the reference op in fp64), values and gradients."""
    op, _ = kernel()
    inputs = random_inputs(4, heads, 1024, dk, dv)
    inputs = (inputs[0] * dk ** -0.5, inputs[1], inputs[2], inputs[3] / 16)
    grad_out = torch.randn(4, heads, 1024, dv, device=DEVICE)
    leaves = [x.detach().double().requires_grad_() for x in inputs]
    ref = chunk_gla(*leaves, backend="reference")
    expected = ref, torch.autograd.grad(ref, leaves, grad_out.double())
    assert_matches(kernel_with_grads(op, inputs, grad_out), expected, 1e-3)


@pytest.mark.gpu
@gpu
def test_gpu_bf16_inputs():
    """bf16 inputs: outputs and gradients in bf16, close to the fp32 computation."""
    op, _ = kernel()
    inputs = random_inputs(2, 8, 512, 16, 16)
    inputs = (inputs[0] * 0.25, inputs[1], inputs[2], inputs[3] / 16)
    grad_out = torch.randn(2, 8, 512, 16, device=DEVICE)
    half = [x.bfloat16() for x in inputs]
    out, grads = kernel_with_grads(op, half, grad_out.bfloat16())
    assert out.dtype == torch.bfloat16 and all(g.dtype == torch.bfloat16 for g in grads)
    expected = recurrent_with_grads([x.float() for x in half], grad_out.bfloat16().float())
    assert_matches((out, grads), expected, 3e-2)
