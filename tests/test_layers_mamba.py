"""Mamba: the selective scan against a loop over time, the whole layer against a step-by-step
re-derivation (explicit causal convolution taps), initialisation, causality, counts, state."""
import math

import pytest
import torch
import torch.nn.functional as F

from madbench.plugins import get_registry
from madbench_layers.mamba import Mamba, selective_scan, selective_scan_naive

from helpers import assert_causal_prefixes


def build(dim=128, **kwargs):
    entry = get_registry().mixers["mamba"]
    return entry.obj(dim, **{**entry.metadata.get("defaults", {}), **kwargs})


def scan_inputs(batch=2, seq_len=19, d_inner=6, d_state=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    u = torch.randn(batch, seq_len, d_inner, dtype=torch.float64, generator=g)
    delta = F.softplus(torch.randn(batch, seq_len, d_inner, dtype=torch.float64, generator=g))
    A = -torch.rand(d_inner, d_state, dtype=torch.float64, generator=g) * 4
    B, C = torch.randn(2, batch, seq_len, d_state, dtype=torch.float64, generator=g)
    D = torch.randn(d_inner, dtype=torch.float64, generator=g)
    return u, delta, A, B, C, D


def test_selective_scan_matches_loop_over_time():
    """Property: the scan equals h_t = exp(delta_t A) h_{t-1} + delta_t B_t u_t,
    y_t = C_t . h_t + D u_t, evaluated one step at a time."""
    args = scan_inputs()
    torch.testing.assert_close(selective_scan(*args), selective_scan_naive(*args),
                               rtol=1e-12, atol=1e-12)


def test_naive_scan_is_the_definition_for_one_channel():
    """The reference loop against scalar arithmetic for one (batch, channel) pair."""
    u, delta, A, B, C, D = scan_inputs(seq_len=5)
    h = [0.0] * A.shape[1]
    for t in range(5):
        dt, x = delta[1, t, 4].item(), u[1, t, 4].item()
        h = [math.exp(dt * A[4, n].item()) * h[n] + dt * B[1, t, n].item() * x
             for n in range(A.shape[1])]
        y = sum(C[1, t, n].item() * h[n] for n in range(A.shape[1])) + D[4].item() * x
        assert selective_scan_naive(u, delta, A, B, C, D)[1, t, 4].item() == pytest.approx(y, rel=1e-12)


def test_selective_scan_gradients_match_loop():
    args = [a.requires_grad_() for a in scan_inputs(seq_len=9)]
    grads = torch.autograd.grad(selective_scan(*args).square().sum(), args)
    naive = torch.autograd.grad(selective_scan_naive(*args).square().sum(), args)
    for g1, g2 in zip(grads, naive):
        torch.testing.assert_close(g1, g2, rtol=1e-10, atol=1e-10)


def naive_mamba_layer(layer, x):
    """The layer from its definition, position by position: the causal depthwise convolution
    as a sum over its d_conv taps, then the recurrence of a selective SSM."""
    batch, seq_len, _ = x.shape
    x_in, z = (x @ layer.in_proj.weight.T).chunk(2, dim=-1)
    w = layer.conv.weight[:, 0, :]  # (d_inner, d_conv); tap j multiplies x_{t - (d_conv-1) + j}
    h = torch.zeros(batch, layer.d_inner, layer.d_state, dtype=x.dtype)
    A = -torch.exp(layer.A_log)
    outs = []
    for t in range(seq_len):
        conv = sum(w[:, j] * x_in[:, t - (layer.d_conv - 1) + j]
                   for j in range(layer.d_conv) if t - (layer.d_conv - 1) + j >= 0)
        if layer.conv.bias is not None:
            conv = conv + layer.conv.bias
        xc = conv * torch.sigmoid(conv)
        proj = xc @ layer.x_proj.weight.T
        dt_low, B, C = proj.split([layer.dt_rank, layer.d_state, layer.d_state], dim=-1)
        delta = torch.log1p(torch.exp(dt_low @ layer.dt_proj.weight.T + layer.dt_proj.bias))
        h = torch.exp(delta[..., None] * A) * h + (delta * xc)[..., None] * B[:, None, :]
        y = (h * C[:, None, :]).sum(-1) + layer.D * xc
        outs.append((y * z[:, t] * torch.sigmoid(z[:, t])) @ layer.out_proj.weight.T)
    return torch.stack(outs, dim=1)


def test_layer_matches_naive_definition():
    torch.manual_seed(0)
    layer = Mamba(16, d_state=3, d_conv=3, expand=1.5, dt_rank=2).double()
    x = torch.randn(2, 10, 16, dtype=torch.float64)
    torch.testing.assert_close(layer(x), naive_mamba_layer(layer, x), rtol=1e-10, atol=1e-10)


def test_initialisation():
    """S4D-real A = -(1, 2, .., d_state) in every channel; D = 1; softplus(dt bias) in
    [dt_min, dt_max]; a conv bias (mad-lab's default) and no projection biases."""
    torch.manual_seed(0)
    layer = build()
    expected_A = -torch.arange(1, 5, dtype=torch.float32).repeat(256, 1)
    torch.testing.assert_close(-torch.exp(layer.A_log), expected_A)
    assert torch.all(layer.D == 1)
    dt = F.softplus(layer.dt_proj.bias)
    assert dt.min() >= 1e-3 * (1 - 1e-5) and dt.max() <= 0.1 * (1 + 1e-5)
    # the reference's biases: on the convolution (mad-lab's conv_bias: true), none in the
    # linear projections
    assert layer.conv.bias is not None and layer.in_proj.bias is None and layer.out_proj.bias is None
    assert Mamba(16, conv_bias=False).conv.bias is None


def test_one_seed_draws_mamba_ssms_initial_weights():
    """The same seed gives the same initial tensors as mamba-ssm's construction order (the
    reference's Mamba): in_proj, conv, x_proj, dt_proj (default init, then its weight uniform
    and its bias from log-uniform steps), out_proj. Written out here with plain modules."""
    dim, d_inner, dt_rank = 32, 64, 2
    torch.manual_seed(3)
    layer = Mamba(dim)
    torch.manual_seed(3)
    in_proj = torch.nn.Linear(dim, 2 * d_inner, bias=False)
    conv = torch.nn.Conv1d(d_inner, d_inner, 4, groups=d_inner, padding=3, bias=True)
    x_proj = torch.nn.Linear(d_inner, dt_rank + 2 * 4, bias=False)
    dt_proj = torch.nn.Linear(dt_rank, d_inner)
    torch.nn.init.uniform_(dt_proj.weight, -dt_rank ** -0.5, dt_rank ** -0.5)
    dt = torch.exp(torch.rand(d_inner) * (math.log(0.1) - math.log(1e-3)) + math.log(1e-3))
    dt = dt.clamp(min=1e-4)
    out_proj = torch.nn.Linear(d_inner, dim, bias=False)
    pairs = [(layer.in_proj.weight, in_proj.weight), (layer.conv.weight, conv.weight),
             (layer.conv.bias, conv.bias), (layer.x_proj.weight, x_proj.weight),
             (layer.dt_proj.weight, dt_proj.weight), (layer.out_proj.weight, out_proj.weight)]
    for ours, theirs in pairs:
        assert torch.equal(ours, theirs)
    torch.testing.assert_close(F.softplus(layer.dt_proj.bias), dt)


def test_causal_and_shape_preserving():
    """Property: perturbing inputs after t leaves outputs up to t unchanged (several t)."""
    torch.manual_seed(1)
    layer = build(32).double()
    x = torch.randn(2, 12, 32, dtype=torch.float64)
    y = assert_causal_prefixes(layer, x, (0, 2, 5, 10))
    assert y.shape == x.shape and y.dtype == x.dtype
    assert build(32)(x.float()).dtype == torch.float32


def test_parameter_count_at_mad_defaults():
    """Hand count at width 128 (d_inner 256, d_state 4, d_conv 4, dt_rank 8), conv bias as
    mad-lab: in_proj 128*512, conv 256*4 + 256, x_proj 256*(8+4+4), dt_proj 8*256 + 256,
    A_log 256*4, D 256, out_proj 256*128 (mad-lab's table: 107,264)."""
    expected = 128 * 512 + 256 * 4 + 256 + 256 * 16 + 8 * 256 + 256 + 256 * 4 + 256 + 256 * 128
    assert expected == 107_264
    assert sum(p.numel() for p in build().parameters()) == expected
    # mad-lab's conv bias adds 256 (its published count)
    assert sum(p.numel() for p in build(conv_bias=True).parameters()) == 107_264


@pytest.mark.parametrize("seq_len", [1, 128, 4096])
def test_state_and_cache_sizes(seq_len):
    layer = build()
    assert layer.state_size(seq_len) == 256 * 4 == 1_024
    assert layer.cache_size(seq_len) == 256 * 3


def test_registered_as_channel_mixing():
    metadata = get_registry().mixers["mamba"].metadata
    assert metadata["shorthand"] == "Mb" and metadata["mixes_channels"] is True


def test_step_bias_is_added_in_fp32_under_bf16_autocast(monkeypatch):
    """As mamba-ssm: the step is softplus(W dt + b) with b added in fp32 after the (bf16)
    product, not rounded with it. With W = 0 the step must be softplus(b) to fp32 precision,
    which a bias rounded to bf16 (8 bits of mantissa) misses by far more than fp32 eps."""
    import madbench_layers.mamba as module
    torch.manual_seed(0)
    layer = Mamba(16)
    with torch.no_grad():
        layer.dt_proj.weight.zero_()
    seen = {}

    def capture(u, delta, A, B, C, D):
        seen["delta"] = delta
        return selective_scan(u, delta, A, B, C, D)

    monkeypatch.setattr(module, "selective_scan", capture)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = layer(torch.randn(2, 5, 16))
    delta, bias = seen["delta"], layer.dt_proj.bias.detach()
    assert delta.dtype == torch.float32 and y.shape == (2, 5, 16)
    expected = torch.log1p(torch.exp(bias.double())).float()     # softplus, independently
    torch.testing.assert_close(delta, expected.expand_as(delta), rtol=1e-6, atol=1e-7)
    rounded = torch.log1p(torch.exp(bias.bfloat16().double())).float()
    assert (rounded - expected).abs().max() > 1e-4    # the test can tell the two apart
