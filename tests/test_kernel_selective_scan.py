"""Selective scan kernel: the fused Triton op (under TRITON_INTERPRET=1 without a GPU) against the
step-by-step loop over time in float64, forward and gradients; vmap over a configuration axis;
the backend dispatch. GPU-only tests (MAD shapes, bf16) are marked ``gpu``."""
import os

import pytest
import torch
import torch.nn.functional as F

if not torch.cuda.is_available():
    os.environ["TRITON_INTERPRET"] = "1"  # before triton is imported
triton = pytest.importorskip("triton")

from madbench_layers.ops.selective_scan import (  # noqa: E402
    resolve_backend, selective_scan, selective_scan_naive, selective_scan_reference)

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
gpu = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


def scan_inputs(batch=2, seq_len=37, d_inner=12, d_state=3, seed=0, device=DEVICE):
    """fp32 inputs; B and C are strided views of one projection and u is a transposed view, as
    in the Mamba layer. seq_len 37 and d_inner 12 leave partial chunks and channel blocks."""
    g = torch.Generator().manual_seed(seed)
    u = torch.randn(batch, d_inner, seq_len, generator=g).transpose(1, 2)
    delta = F.softplus(torch.randn(batch, seq_len, d_inner, generator=g))
    A = -torch.rand(d_inner, d_state, generator=g) * 4
    proj = torch.randn(batch, seq_len, 2 + 2 * d_state, generator=g)
    B, C = proj[..., 2:2 + d_state], proj[..., 2 + d_state:]
    D = torch.randn(d_inner, generator=g)
    return [x.to(device) for x in (u, delta, A, B, C, D)]


def loop_over_time(args, weight):
    """Output and gradients of sum(y * weight) from the step-by-step loop, in float64."""
    args = [a.detach().cpu().double().requires_grad_() for a in args]
    y = selective_scan_naive(*args)
    grads = torch.autograd.grad((y * weight.cpu().double()).sum(), args)
    return y, grads


@pytest.fixture(scope="module")
def kernel_and_loop():
    args = [a.requires_grad_() for a in scan_inputs()]
    weight = torch.randn(2, 37, 12, generator=torch.Generator().manual_seed(1)).to(DEVICE)
    y = selective_scan(*args, backend="triton")
    grads = torch.autograd.grad((y * weight).sum(), args)
    return (y, grads), loop_over_time(args, weight)


def test_forward_matches_loop_over_time(kernel_and_loop):
    """Property: y_t = C_t . h_t + D u_t with h_t = exp(delta_t A) h_{t-1} + delta_t B_t u_t."""
    (y, _), (y_loop, _) = kernel_and_loop
    assert y.dtype == torch.float32 and y.shape == (2, 37, 12)
    torch.testing.assert_close(y.cpu().double(), y_loop, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("index, name", list(enumerate(["u", "delta", "A", "B", "C", "D"])))
def test_gradients_match_loop_over_time(kernel_and_loop, index, name):
    """Property: the fused backward gives the gradient of the recurrence for every input."""
    (_, grads), (_, loop_grads) = kernel_and_loop
    torch.testing.assert_close(grads[index].cpu().double(), loop_grads[index],
                               rtol=1e-4, atol=1e-5, msg=f"d{name}")


def test_forward_without_gradients_matches_loop():
    """Under no_grad the kernel stores no checkpoints and still computes the same output."""
    args = scan_inputs(batch=1, seq_len=21, d_inner=8, d_state=2, seed=2)
    with torch.no_grad():
        y = selective_scan(*args, backend="triton")
    y_loop = selective_scan_naive(*[a.cpu().double() for a in args])
    torch.testing.assert_close(y.cpu().double(), y_loop, rtol=1e-5, atol=1e-5)


def test_vmap_over_configurations_matches_loop_per_configuration():
    """Property: vmapping over stacked configurations (batched u, delta, A, C, D; B shared)
    equals running each configuration alone, forward and gradients (the layout of the sweep
    engine, which vmaps the model over stacked weights)."""
    configs = [scan_inputs(batch=1, seq_len=20, d_inner=8, d_state=2, seed=s) for s in (3, 4)]
    shared_B = configs[0][3]
    stacked = [torch.stack([c[i] for c in configs]).requires_grad_() for i in (0, 1, 2, 4, 5)]
    B = shared_B.clone().requires_grad_()
    weight = torch.randn(2, 1, 20, 8, generator=torch.Generator().manual_seed(5)).to(DEVICE)
    y = torch.func.vmap(lambda u, dt, A, C, D: selective_scan(u, dt, A, B, C, D,
                                                              backend="triton"))(*stacked)
    grads = torch.autograd.grad((y * weight).sum(), [*stacked, B])
    dB_total = 0
    for k, c in enumerate(configs):
        args = [c[0], c[1], c[2], shared_B, c[4], c[5]]
        y_loop, loop_grads = loop_over_time(args, weight[k])
        torch.testing.assert_close(y[k].detach().cpu().double(), y_loop, rtol=1e-5, atol=1e-5)
        for g, g_loop in zip(grads[:5], [loop_grads[i] for i in (0, 1, 2, 4, 5)]):
            torch.testing.assert_close(g[k].cpu().double(), g_loop, rtol=1e-4, atol=1e-5)
        dB_total = dB_total + loop_grads[3]
    torch.testing.assert_close(grads[5].cpu().double(), dB_total, rtol=1e-4, atol=1e-5)


def test_auto_on_cpu_is_the_reference():
    args = scan_inputs(batch=1, seq_len=9, d_inner=4, d_state=2, device="cpu")
    assert torch.equal(selective_scan(*args), selective_scan_reference(*args))


@gpu
@pytest.mark.gpu
def test_mad_shapes_on_gpu_match_reference():
    """At MAD sizes (d_inner 256, d_state 4, L 512) the kernel matches the fp32 reference."""
    g = torch.Generator().manual_seed(0)
    u = torch.randn(8, 512, 256, generator=g)
    delta = F.softplus(torch.randn(8, 512, 256, generator=g) - 3)
    A = -torch.arange(1, 5, dtype=torch.float32).repeat(256, 1)
    B, C = torch.randn(2, 8, 512, 4, generator=g)
    D = torch.ones(256)
    args = [x.cuda().requires_grad_() for x in (u, delta, A, B, C, D)]
    assert resolve_backend("auto", args[0]) == "triton"
    dy = torch.randn(8, 512, 256, device="cuda")
    y = selective_scan(*args)
    y_ref = selective_scan(*args, backend="reference")
    rel = lambda a, b: ((a - b).abs().max() / b.abs().max()).item()  # noqa: E731
    assert rel(y, y_ref) < 1e-5
    for g_k, g_r in zip(torch.autograd.grad(y, args, dy), torch.autograd.grad(y_ref, args, dy)):
        assert rel(g_k, g_r) < 1e-4


@gpu
@pytest.mark.gpu
@pytest.mark.parametrize("d_state", [8, 12, 16])
def test_scaling_run_states_on_gpu_match_loop(d_state):
    """The launch configs for larger states (scaling runs use d_state 16; 12 leaves a partly
    masked state block) give the loop's output and gradients; u is a transposed view."""
    args = [a.requires_grad_() for a in scan_inputs(batch=2, seq_len=261, d_inner=40,
                                                    d_state=d_state, seed=5)]
    weight = torch.randn(2, 261, 40, generator=torch.Generator().manual_seed(6)).cuda()
    y = selective_scan(*args, backend="triton")
    grads = torch.autograd.grad((y * weight).sum(), args)
    y_loop, grads_loop = loop_over_time(args, weight)
    torch.testing.assert_close(y.cpu().double(), y_loop, rtol=1e-4, atol=1e-4)
    for got, want in zip(grads, grads_loop):
        torch.testing.assert_close(got.cpu().double(), want, rtol=1e-3, atol=1e-3)


@gpu
@pytest.mark.gpu
def test_bf16_inputs_on_gpu():
    """bf16 inputs: the kernel scans in fp32 and returns bf16 close to the fp32 reference."""
    args = scan_inputs(batch=4, seq_len=300, d_inner=64, d_state=4, device="cuda")
    y = selective_scan(*[a.bfloat16() for a in args], backend="triton")
    assert y.dtype == torch.bfloat16
    y_ref = selective_scan_reference(*[a.bfloat16().float() for a in args])
    assert ((y.float() - y_ref).abs().max() / y_ref.abs().max()).item() < 2e-2


@gpu
@pytest.mark.gpu
def test_mamba_layer_vmapped_on_gpu_uses_kernel_and_matches_reference(monkeypatch):
    """The Mamba layer on CUDA, vmapped over two stacked configurations as the sweep engine
    does, runs the kernel and gives the reference's outputs and parameter gradients."""
    import copy

    from torch.func import functional_call, stack_module_state, vmap

    from madbench_layers.mamba import Mamba
    from madbench_layers.ops.selective_scan import triton_kernel

    calls = []
    kernel = triton_kernel.selective_scan_triton
    monkeypatch.setattr(triton_kernel, "selective_scan_triton",
                        lambda *a: calls.append(1) or kernel(*a))
    torch.manual_seed(0)
    layers = [Mamba(32).cuda() for _ in range(2)]
    params, buffers = stack_module_state(layers)
    base = copy.deepcopy(layers[0]).to("meta")
    x = torch.randn(4, 64, 32, device="cuda")
    out = vmap(lambda p, b, x: functional_call(base, (p, b), (x,)),
               in_dims=(0, 0, None))(params, buffers, x)
    grads = torch.autograd.grad(out.square().sum(), list(params.values()))
    assert calls
    monkeypatch.setenv("MADBENCH_KERNELS", "reference")
    for k, layer in enumerate(layers):
        ref = layer(x)
        torch.testing.assert_close(out[k], ref, rtol=1e-4, atol=1e-5)
        ref_grads = torch.autograd.grad(ref.square().sum(), list(layer.parameters()))
        for g, g_ref in zip(grads, ref_grads):
            torch.testing.assert_close(g[k], g_ref, rtol=1e-3, atol=1e-4)


def test_mamba_layer_through_both_kernels_matches_its_pytorch_form(monkeypatch):
    """The whole Mamba layer with its short convolution and its scan forced through the Triton
    kernels (on the GPU, or under the interpreter), against the same layer's PyTorch path:
    outputs and every gradient, float32, at an odd length."""
    from madbench_layers.mamba import Mamba
    from madbench_layers.ops import selective_scan as scan_op
    from madbench_layers.ops import short_conv as conv_op
    torch.manual_seed(0)
    layer = Mamba(32).to(DEVICE)
    x = torch.randn(2, 37, 32, device=DEVICE, requires_grad=True)
    inputs = [x, *layer.parameters()]

    def run():
        out = layer(x)
        return [out, *torch.autograd.grad(out.square().sum(), inputs)]
    monkeypatch.setenv("MADBENCH_KERNELS", "reference")
    want = run()
    monkeypatch.delenv("MADBENCH_KERNELS")
    for op in (scan_op, conv_op):
        monkeypatch.setattr(op, "resolve_backend", lambda *args: "triton")
    for got, ref in zip(run(), want):
        torch.testing.assert_close(got, ref, rtol=1e-4, atol=1e-6 * ref.abs().max().item())
