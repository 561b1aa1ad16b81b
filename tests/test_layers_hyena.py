"""The bundled Hyena family (H, mH, He) as the reference implementation builds it: against naive
computations of the reference's arithmetic written here (loops over positions), the
reference's parameter counts, the state conventions, and the reference's initial draws (the
same seed gives the same initial weights)."""
import math

import pytest
import torch

from madbench.architecture import ArchitectureSpec, LayerSpec, build_mixer
from madbench.checks import audit_state, check_causality
from madbench.model import LanguageModel
from madbench_layers.hyena import Hyena, HyenaExperts, MultiHeadHyena


# -- naive references ----------------------------------------------------------------------
def naive_filter(f, length):
    """The implicit filter, position by position: MLP of the (learned) positional features,
    sine activations with the shared frequency, exponential window with rates spread linearly
    from log(1e-2)/1.5 to log(1e-2)/0.3 over the channels."""
    n, channels = f.max_length, f.channels
    rates = [abs(math.log(1e-2) / 1.5 + (math.log(1e-2) / 0.3 - math.log(1e-2) / 1.5)
                 * c / max(channels - 1, 1)) for c in range(channels)]
    out = torch.zeros(channels, length, dtype=torch.float64)
    for t in range(length):
        z = f.features[0, t].double()
        a = torch.sin(f.frequency[0].double() * (f.first.weight.double() @ z
                                                 + f.first.bias.double()))
        for layer in f.hidden:
            a = torch.sin(f.frequency[0].double() * (layer.weight.double() @ a
                                                     + layer.bias.double()))
        window = torch.tensor([math.exp(-(t / (n - 1)) * r) for r in rates], dtype=torch.float64)
        out[:, t] = (f.last.weight.double() @ a) * window
    return out


def test_filter_features_start_as_the_references():
    """(t / (n - 1), cos(1e-4 w_t), -sin(1e-4 w_t)) with w_t = 2 pi t / n, and frequency 1."""
    f = Hyena(8, max_length=20).filter
    for t in (0, 7, 19):
        w = 2 * math.pi * t / 20
        expected = torch.tensor([t / 19, math.cos(1e-4 * w), -math.sin(1e-4 * w)])
        torch.testing.assert_close(f.features[0, t], expected)
    assert f.features.shape == (1, 20, 3) and f.frequency.shape == (1, 4)
    assert bool((f.frequency == 1).all())


def naive_streams(layer, x):
    """in_proj, tiled proj_groups times, then a causal depthwise convolution with bias."""
    u = x.double() @ layer.in_proj.weight.double().T + layer.in_proj.bias.double()
    u = u.repeat(1, 1, layer.proj_groups)                      # (B, L, 3 inner)
    w, b = layer.short_conv.weight.double()[:, 0], layer.short_conv.bias.double()
    out = torch.zeros_like(u)
    for t in range(u.shape[1]):
        for j in range(w.shape[1]):            # tap j multiplies u[t - (width - 1 - j)]
            s = t - (w.shape[1] - 1 - j)
            if s >= 0:
                out[:, t] += w[:, j] * u[:, s]
        out[:, t] += b
    return out.split(layer.inner, dim=-1)                      # each (B, L, inner)


def naive_conv(u, h, d):
    """y[t] = sum_{s<=t} h[t-s] u[s] + d u[t], per channel; u (B, L, C), h (C, L)."""
    y = torch.zeros_like(u)
    for t in range(u.shape[1]):
        for s in range(t + 1):
            y[:, t] += h[:, t - s] * u[:, s]
    return y + d * u


def naive_hyena(layer, x):
    x0, x1, v = naive_streams(layer, x)
    h = naive_filter(layer.filter, x.shape[1])
    y = x0 * naive_conv(x1 * v, h, layer.direct.double())
    return y @ layer.out_proj.weight.double().T + layer.out_proj.bias.double()


def naive_mh_hyena(layer, x):
    q, v, k = naive_streams(layer, x)
    batch, length, _ = x.shape
    hd, heads = layer.head_size, layer.heads
    h = naive_filter(layer.filter, length)
    y = torch.zeros(batch, length, layer.dim, dtype=torch.float64)
    for g in range(heads):
        for j in range(hd):
            acc = 0
            for i in range(hd):
                kv = (k[..., g * hd + i] * v[..., g * hd + j])[..., None]
                filtered = naive_conv(kv, h[g:g + 1], layer.direct[g].double())[..., 0]
                acc = acc + q[..., g * hd + i] * filtered
            y[..., g * hd + j] = acc
    return y @ layer.out_proj.weight.double().T + layer.out_proj.bias.double()


def naive_hyena_experts(layer, x):
    x0, x1, v = naive_streams(layer, x)
    h = naive_filter(layer.filter, x.shape[1])
    y = x0 * naive_conv(x1 * v, h, layer.direct.double())      # (B, L, E w): channel i*E + e
    logits = x.double() @ layer.router.weight.double().T + layer.router.bias.double()
    out = torch.zeros(*x.shape[:2], layer.expert_width, dtype=torch.float64)
    for b in range(x.shape[0]):
        for t in range(x.shape[1]):
            row = logits[b, t]
            top = sorted(range(layer.experts), key=lambda e: -float(row[e]))[:layer.top_k]
            z = sum(math.exp(float(row[e])) for e in top)
            for e in top:
                out[b, t] += math.exp(float(row[e])) / z * \
                    y[b, t, [i * layer.experts + e for i in range(layer.expert_width)]]
    return out @ layer.out_proj.weight.double().T + layer.out_proj.bias.double()


SMALL = {
    "hyena": (lambda: Hyena(8, max_length=12, inner_factor=2, proj_groups=3, filter_order=3),
              naive_hyena),
    "mh-hyena": (lambda: MultiHeadHyena(8, max_length=12, heads=2, filter_order=2),
                 naive_mh_hyena),
    "hyena-experts": (lambda: HyenaExperts(8, max_length=12, experts=4, expert_width=3,
                                           filter_order=5), naive_hyena_experts),
}


@pytest.mark.parametrize("name", sorted(SMALL))
def test_layers_equal_the_naive_reference_arithmetic(name):
    make, naive = SMALL[name]
    torch.manual_seed(0)
    layer = make()
    with torch.no_grad():                       # non-trivial values everywhere
        for p in layer.parameters():
            p.add_(0.1 * torch.randn_like(p))
    x = torch.randn(2, 10, 8)
    with torch.no_grad():
        torch.testing.assert_close(layer(x).double(), naive(layer, x), atol=2e-5, rtol=1e-4)


@pytest.mark.parametrize("name", sorted(SMALL))
def test_layers_are_causal(name):
    result = check_causality(SMALL[name][0](), dim=8, seq_len=12)
    assert result.causal, result.message


# -- the reference's counts at width 128 --------------------------------------------------
def test_parameter_counts_match_the_reference():
    """mad-lab's layers at width 128, max_length 128 (mad-protocol.md section 6.3): Hyena
    124,348 = 123,964 + 3 max_length; mH 30,862 in its own layout (8 heads of 16); He 57,464."""
    count = lambda m: sum(p.numel() for p in m.parameters())   # noqa: E731
    assert count(Hyena(128, max_length=128)) == 124_348
    assert count(MultiHeadHyena(128, max_length=128, heads=8, head_size=16)) == 30_862
    assert count(HyenaExperts(128, max_length=128)) == 57_464
    # the paper's layout: 16 filters of width 2 instead of 8 -> 8 more filter weights + 8 D
    assert count(MultiHeadHyena(128, max_length=128)) == 30_862 + 16 + 8


def test_state_by_the_papers_convention():
    assert Hyena(128).state_size(128) == 512 * 4 == 2048
    assert MultiHeadHyena(128).state_size(128) == 16 * 8 * 8 * 2 == 2048
    assert MultiHeadHyena(128, heads=8, head_size=16).state_size(128) == 8 * 16 * 16 * 2
    assert HyenaExperts(128).state_size(128) == 128 * 16 == 2048
    for layer in (Hyena(128), MultiHeadHyena(128), HyenaExperts(128)):
        assert layer.state_size(64) == layer.state_size(8192)       # fixed by convention
        assert "convention" in layer.state_convention
    assert Hyena(128).cache_size(1) == 3 * 512 * 2
    assert MultiHeadHyena(128).cache_size(1) == HyenaExperts(128).cache_size(1) == 3 * 128 * 2


def test_audit_reports_the_convention_instead_of_a_verdict():
    """An implicit filter has no finite exact state: the audit says so and neither passes nor
    fails the layer; its rank is still measured."""
    result = audit_state(lambda d: Hyena(d, max_length=64, inner_factor=1), 8, prefix=12,
                         suffix=12)
    assert result.ok is None and result.convention
    assert result.measured_state > 0
    assert "by convention" in result.message and "exact state" in result.message


def test_experts_routing_top_k_is_sparse_and_mad_lab_is_not():
    torch.manual_seed(0)
    top_k = HyenaExperts(16, max_length=8, experts=4, expert_width=4)
    madlab = HyenaExperts(16, max_length=8, experts=4, expert_width=4, routing="mad-lab")
    madlab.load_state_dict(top_k.state_dict())
    x = torch.randn(3, 8, 16)
    w_top, w_mad = top_k.router_weights(x), madlab.router_weights(x)
    assert ((w_top > 0).sum(-1) == 2).all()                  # exactly the two chosen experts
    torch.testing.assert_close(w_top.sum(-1), torch.ones(3, 8))
    assert ((w_mad > 0).sum(-1) == 4).all()                  # every expert keeps a weight
    logits = top_k.router(x)
    kth = logits.topk(2, -1).values[..., -1:]
    expected = torch.softmax(torch.where(logits < kth, torch.zeros_like(logits), logits), -1)
    torch.testing.assert_close(w_mad, expected)


def test_sequence_length_reaches_max_length_unless_given():
    spec = ArchitectureSpec("h", (LayerSpec("hyena"), LayerSpec("swiglu")), dim=16)
    assert LanguageModel(spec, 8, seq_len=40).encoder.blocks[0].mixer.max_length == 40
    fixed = ArchitectureSpec("h", (LayerSpec("hyena", {"max_length": 64}),), dim=16)
    assert LanguageModel(fixed, 8, seq_len=40).encoder.blocks[0].mixer.max_length == 64
    assert build_mixer(LayerSpec("hyena"), 16).max_length == 1280  # none given: the default


def test_longer_than_max_length_is_refused():
    with pytest.raises(ValueError, match="max_length"):
        Hyena(8, max_length=4)(torch.randn(1, 5, 8))


# -- initial weights: the reference's draws, in the reference's order ---------------------------
# mad-lab's HyenaOperator constructor draws: the short convolution (depthwise Conv1d), the long
# convolution (its bias D = randn, then the filter MLP's linears), out_proj, in_proj (tied: 3 inner
# / proj_groups outputs). MultiHeadHyenaOperator runs it, then draws a replacing long
# convolution; HyenaExpertsOperator runs it at inner width dim (4 tied groups), then draws
# in_proj, out_proj, the short convolution and the router. Written out here by hand with
# PyTorch's default initialisers (U(+-1/sqrt(fan_in)) via kaiming_uniform_(a=sqrt(5))).
def _linear(fan_in, fan_out, bias=True):
    w = torch.empty(fan_out, fan_in)
    torch.nn.init.kaiming_uniform_(w, a=math.sqrt(5))
    out = {"weight": w}
    if bias:
        out["bias"] = torch.empty(fan_out).uniform_(-1 / math.sqrt(fan_in), 1 / math.sqrt(fan_in))
    return out


def _depthwise_conv(channels, taps=3):
    w = torch.empty(channels, 1, taps)
    torch.nn.init.kaiming_uniform_(w, a=math.sqrt(5))
    return {"weight": w,
            "bias": torch.empty(channels).uniform_(-1 / math.sqrt(taps), 1 / math.sqrt(taps))}


def _long_conv(filters, order, depth=2):
    drawn = {"direct": torch.randn(filters)}
    drawn.update(_prefixed("filter.first", _linear(3, order)))
    for j in range(depth):
        drawn.update(_prefixed(f"filter.hidden.{j}", _linear(order, order)))
    drawn.update(_prefixed("filter.last", _linear(order, filters, bias=False)))
    return drawn


def _prefixed(prefix, tensors):
    return {f"{prefix}.{k}": v for k, v in tensors.items()}


def madlab_hyena_draws(dim, inner_factor, proj_groups, order):
    inner = inner_factor * dim
    drawn = _prefixed("short_conv", _depthwise_conv(3 * inner))
    drawn.update(_long_conv(inner, order))
    drawn.update(_prefixed("out_proj", _linear(inner, dim)))
    drawn.update(_prefixed("in_proj", _linear(dim, 3 * inner // proj_groups)))
    return drawn


def madlab_mh_hyena_draws(dim, filters, proj_groups, order):
    drawn = _prefixed("short_conv", _depthwise_conv(3 * dim))
    _long_conv(filters, order)                                  # replaced by the subclass
    drawn.update(_prefixed("out_proj", _linear(dim, dim)))
    drawn.update(_prefixed("in_proj", _linear(dim, 3 * dim // proj_groups)))
    drawn.update(_long_conv(filters, order))
    return drawn


def madlab_hyena_experts_draws(dim, experts, width, order):
    _depthwise_conv(3 * dim)                                    # replaced by the subclass
    drawn = _long_conv(dim, order)
    _linear(dim, dim), _linear(dim, 3 * dim // 4)               # replaced by the subclass
    drawn.update(_prefixed("in_proj", _linear(dim, 3 * experts * width)))
    drawn.update(_prefixed("out_proj", _linear(width, dim)))
    drawn.update(_prefixed("short_conv", _depthwise_conv(3 * experts * width)))
    drawn.update(_prefixed("router", _linear(dim, experts)))
    return drawn


DRAWS = {
    "hyena": (lambda L: Hyena(8, max_length=L, inner_factor=2, proj_groups=3, filter_order=3),
              lambda: madlab_hyena_draws(8, 2, 3, 3)),
    "hyena (defaults)": (lambda L: Hyena(128, max_length=L),
                         lambda: madlab_hyena_draws(128, 4, 4, 4)),
    "mh-hyena": (lambda L: MultiHeadHyena(8, max_length=L, heads=2, filter_order=3),
                 lambda: madlab_mh_hyena_draws(8, 2, 4, 3)),
    "mh-hyena (defaults)": (lambda L: MultiHeadHyena(128, max_length=L),
                            lambda: madlab_mh_hyena_draws(128, 16, 4, 2)),
    "mh-hyena (mad-lab layout)": (
        lambda L: MultiHeadHyena(128, max_length=L, heads=8, head_size=16),
        lambda: madlab_mh_hyena_draws(128, 8, 4, 2)),
    "hyena-experts": (lambda L: HyenaExperts(8, max_length=L, experts=4, expert_width=2,
                                             filter_order=5),
                      lambda: madlab_hyena_experts_draws(8, 4, 2, 5)),
    "hyena-experts (defaults)": (lambda L: HyenaExperts(128, max_length=L, routing="mad-lab"),
                                 lambda: madlab_hyena_experts_draws(128, 8, 16, 16)),
}


@pytest.mark.parametrize("length", [7, 64])
@pytest.mark.parametrize("seed", [0, 3])
@pytest.mark.parametrize("name", sorted(DRAWS))
def test_initial_weights_are_the_references_draws_in_its_order(name, seed, length):
    """At one seed, every random parameter equals the hand-written draw in the reference's order,
    and the generator is left where the reference leaves it (so the rest of a model built after
    the layer draws the same numbers too)."""
    make, draws = DRAWS[name]
    torch.manual_seed(seed)
    expected = draws()
    expected_next = torch.rand(5)
    torch.manual_seed(seed)
    layer = make(length)
    assert torch.equal(torch.rand(5), expected_next)
    params = dict(layer.named_parameters())
    assert set(params) == set(expected) | {"filter.features", "filter.frequency"}
    for key, value in expected.items():
        assert torch.equal(params[key].detach(), value), key
    assert bool((layer.filter.frequency == 1).all())


@pytest.mark.parametrize("length", [2, 7, 64, 1280])
def test_filter_features_are_the_references_bit_for_bit(length):
    """The reference's features: (t, Re z, Im z), z = exp(-i f w) in complex64 with f = 1e-4
    and w = 2 pi t_n / n over t_n = 0 .. n - 1 (torch.cos differs by 1 ulp at some positions)."""
    t = torch.linspace(0, 1, length)[None, :, None]
    w = 2 * math.pi * torch.linspace(0, length - 1, length)[None, :, None] / length
    z = torch.exp(-1j * torch.linspace(1e-4, 0, 1)[None, None] * w)
    expected = torch.cat([t, z.real, z.imag], dim=-1)
    assert torch.equal(Hyena(8, max_length=length, inner_factor=1).filter.features.detach(),
                       expected)


@pytest.mark.parametrize("name", ["hyena", "mh-hyena", "hyena-experts"])
def test_linear_layers_are_registered_in_the_references_order(name):
    """The autoencoder re-draws every linear weight in module order, so that order is part of the
    reference's draws: the filter MLP, out_proj, in_proj (then the experts' router)."""
    layer = DRAWS[name][0](8)
    linears = [n for n, m in layer.named_modules() if isinstance(m, torch.nn.Linear)]
    expected = ["filter.first", "filter.hidden.0", "filter.hidden.1", "filter.last", "out_proj",
                "in_proj"] + (["router"] if name == "hyena-experts" else [])
    assert linears == expected
