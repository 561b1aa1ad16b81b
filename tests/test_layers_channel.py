"""Channel mixers (SwiGLU, MLP, top-k MoE) against formulas written out here."""
import math

import pytest
import torch
from torch._subclasses.fake_tensor import DynamicOutputShapeException, FakeTensorMode

from madbench.architecture import LayerSpec, build_mixer
from madbench_layers.channel import MLP, SwiGLU
from madbench_layers.hyena_modal import ModalHyenaExperts
from madbench_layers.moe import MoeMLP


def silu(z):
    return z / (1 + torch.exp(-z))


def gelu_tanh(z):
    return 0.5 * z * (1 + torch.tanh(math.sqrt(2 / math.pi) * (z + 0.044715 * z**3)))


def naive_moe_token(layer: MoeMLP, x):
    """One token (dim,): softmax over its top-k logits, weighted sum of those experts."""
    logits = (layer.router.weight.detach() @ x).tolist()
    top = sorted(range(layer.experts), key=lambda e: -logits[e])[: layer.top_k]
    z = sum(math.exp(logits[e]) for e in top)
    out = torch.zeros_like(x)
    for e in top:
        g, u, d = layer.gate[e].detach(), layer.up[e].detach(), layer.down[e].detach()
        out += math.exp(logits[e]) / z * (d @ (silu(g @ x) * (u @ x)))
    return out


def test_swiglu_and_mlp_formulas():
    torch.manual_seed(0)
    x = torch.randn(2, 5, 16, dtype=torch.float64)
    sg = SwiGLU(16, inner=24).double()
    w1, w3, w2 = sg.gate.weight.detach(), sg.up.weight.detach(), sg.down.weight.detach()
    torch.testing.assert_close(sg(x), (silu(x @ w1.T) * (x @ w3.T)) @ w2.T)
    mlp = MLP(16, inner=24).double()
    torch.testing.assert_close(
        mlp(x), gelu_tanh(x @ mlp.up.weight.detach().T) @ mlp.down.weight.detach().T)


def test_moe_token_output_is_softmax_weighted_sum_of_its_top2_experts():
    """Property: each token's output is the softmax (over the top-2 logits only) weighted sum of
    its two experts, computed by hand."""
    torch.manual_seed(0)
    layer = MoeMLP(16, experts=4, expert_width=6, top_k=2).double()
    x = torch.randn(3, 5, 16, dtype=torch.float64)
    y = layer(x)
    for b in range(3):
        for t in range(5):
            torch.testing.assert_close(y[b, t], naive_moe_token(layer, x[b, t]))


def test_moe_under_bf16_autocast_matches_fp32():
    """Under autocast the experts compute in bf16 (as on the GPU in training); the layer still
    runs forward and backward and stays within bf16 rounding of its fp32 output."""
    torch.manual_seed(0)
    layer = MoeMLP(16, experts=4, expert_width=8, top_k=2)
    x = torch.randn(2, 6, 16, requires_grad=True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = layer(x)
    assert y.dtype == torch.float32                     # returned in the input's dtype
    y.float().sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()
    torch.testing.assert_close(y.float(), layer(x).detach(), rtol=5e-2, atol=5e-2)


def test_moe_unselected_expert_has_exactly_zero_weight():
    """Property: zeroing an unselected expert leaves the token unchanged; an expert that no
    token selects receives no gradient (its exact zero weight stops it)."""
    torch.manual_seed(0)
    layer = MoeMLP(16, experts=4, expert_width=6, top_k=2).double()
    x = torch.randn(1, 6, 16, dtype=torch.float64)
    y = layer(x).detach()
    logits = (x[0, 2] @ layer.router.weight.detach().T).tolist()
    e = min(range(4), key=lambda i: logits[i])
    with torch.no_grad():
        layer.gate[e] = 0
        layer.up[e] = 0
        layer.down[e] = 0
    torch.testing.assert_close(layer(x)[0, 2], y[0, 2], atol=0, rtol=0)

    layer = MoeMLP(16, experts=4, expert_width=6, top_k=2).double()
    xs = torch.rand(1, 6, 16, dtype=torch.float64) + 0.1        # positive inputs
    with torch.no_grad():  # expert 3's logit is below -16 for every token: never chosen
        layer.router.weight[3] = -10.0
    assert not (layer.router(xs).topk(2, -1).indices == 3).any()
    layer(xs).sum().backward()
    assert layer.gate.grad[3].abs().max() == 0 and layer.down.grad[3].abs().max() == 0
    assert layer.gate.grad[:3].abs().max() > 0


def test_channel_mixers_are_position_wise():
    """Property: permuting positions permutes the outputs (no mixing across positions)."""
    torch.manual_seed(0)
    x = torch.randn(2, 7, 16, dtype=torch.float64)
    perm = torch.randperm(7)
    for layer in (SwiGLU(16, 24), MLP(16, 24), MoeMLP(16, 4, 6, 2)):
        layer = layer.double()
        torch.testing.assert_close(layer(x)[:, perm], layer(x[:, perm]))


@pytest.mark.parametrize("layer", [SwiGLU(16, 24), MLP(16, 24), MoeMLP(16, 4, 6, 2)])
def test_shape_and_dtype_are_kept(layer):
    layer = layer.to(torch.bfloat16)
    y = layer(torch.randn(2, 5, 16).bfloat16())
    assert y.shape == (2, 5, 16) and y.dtype == torch.bfloat16


def test_mad_default_parameter_counts():
    """Hand counts at width 128, no biases."""
    d = 128
    counts = {"swiglu": 3 * d * 512, "mlp": 2 * d * 512, "moe-mlp": d * 8 + 8 * 3 * d * 16}
    assert counts == {"swiglu": 196608, "mlp": 131072, "moe-mlp": 50176}
    for name, expected in counts.items():
        layer = build_mixer(LayerSpec(name), d)
        assert sum(p.numel() for p in layer.parameters()) == expected, name
        assert not any("bias" in n for n, _ in layer.named_parameters())
    moe = build_mixer(LayerSpec("moe-mlp"), d)
    assert moe.active_parameters() == d * 8 + 2 * 3 * d * 16 == 13312


def test_registered_metadata():
    from madbench_layers import channel, moe
    by_name = {name: meta for name, _, meta in channel.MIXERS + moe.MIXERS}
    assert {n: m["shorthand"] for n, m in by_name.items()} == {
        "swiglu": "Sg", "mlp": "M", "moe-mlp": "MoE"}
    assert all(m["kind"] == "channel" for m in by_name.values())


@pytest.mark.parametrize("make", [lambda: MoeMLP(16, experts=4, expert_width=6, top_k=2),
                                  lambda: ModalHyenaExperts(16, experts=4, expert_width=4)],
                         ids=["moe-mlp", "hyena-experts-modal"])
def test_routed_layers_have_no_data_dependent_shapes(make):
    """A CUDA graph cannot capture an operation whose output shape depends on the data (e.g.
    ``nonzero``, which reads a count back on the host). Under fake tensors such an operation
    raises; the routed layers' forward and backward run through (and the check does catch one)."""
    layer = make()
    with FakeTensorMode(allow_non_fake_inputs=True):
        y = layer(torch.randn(2, 8, 16))
        y.sum().backward()
        assert y.shape == (2, 8, 16)
        with pytest.raises(DynamicOutputShapeException):
            (torch.randn(5) > 0).nonzero()
