"""The modal Hyena family (hyena-modal, mh-hyena-modal, hyena-experts-modal) and its modal long
filter, against naive references written here."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from madbench.architecture import LayerSpec, build_mixer
from madbench_layers.hyena_modal import ModalHyena as Hyena
from madbench_layers.hyena_modal import ModalHyenaExperts as HyenaExperts
from madbench_layers.hyena_modal import ModalMultiHeadHyena as MultiHeadHyena
from madbench_layers.modal_filter import ModalFilter, direct_causal_conv, fft_causal_conv

from helpers import assert_causal_prefixes


# -- naive references ----------------------------------------------------------------------
def numpy_causal_conv(u, h):
    """Per row, np.convolve truncated to the first L outputs."""
    length = u.shape[-1]
    u2, h2 = np.broadcast_arrays(u.numpy(), h.numpy())
    flat_u, flat_h = u2.reshape(-1, length), h2.reshape(-1, length)
    out = np.stack([np.convolve(a, b)[:length] for a, b in zip(flat_u, flat_h)])
    return torch.from_numpy(out.reshape(u2.shape))


def naive_filter(f: ModalFilter, length: int) -> torch.Tensor:
    """h[c, t] = Re(sum_m R lambda^t) + D delta_t, in complex arithmetic."""
    lam = torch.exp(torch.complex(-F.softplus(f.decay), f.angle)).detach()
    residue = torch.complex(f.residue_real, f.residue_imag).detach()
    t = torch.arange(length).to(lam.dtype)
    h = (residue[..., None] * lam[..., None] ** t).sum(1).real.clone()
    if f.direct is not None:
        h[:, 0] += f.direct.detach()
    return h


def naive_streams(layer, x):
    """Input projection, then the short causal conv as an explicit sum; (B, L, inner) each."""
    proj = x @ layer.in_proj.weight.detach().T
    weight = layer.short_conv.conv.weight.detach()[:, 0, :]   # (channels, width)
    width = weight.shape[1]
    out = torch.zeros_like(proj)
    for t in range(x.shape[1]):
        for j in range(width):
            s = t - (width - 1) + j
            if s >= 0:
                out[:, t] += weight[:, j] * proj[:, s]
    return out.chunk(3, dim=-1)


def naive_long_conv(h, u):
    """y[b, t, c] = sum_{s<=t} h[c, t - s] u[b, s, c]; h (C, L), u (B, L, C)."""
    y = torch.zeros_like(u)
    for t in range(u.shape[1]):
        for s in range(t + 1):
            y[:, t] += h[:, t - s] * u[:, s]
    return y


def naive_hyena(layer: Hyena, x):
    v, x1, x2 = naive_streams(layer, x)
    y = x2 * naive_long_conv(naive_filter(layer.filter, x.shape[1]), x1 * v)
    return y @ layer.out_proj.weight.detach().T


def naive_mh_hyena(layer: MultiHeadHyena, x):
    """y[t, head, j] = sum_i q[t, head, i] sum_{s<=t} h_(head,i)[t-s] k[s, head, i] v[s, head, j]
    (h has one filter per key channel (head, i), shared over the value index j)."""
    batch, length, dim = x.shape
    nh, d = layer.heads, layer.head_dim
    q, k, v = (s.reshape(batch, length, nh, d) for s in naive_streams(layer, x))
    h = naive_filter(layer.filter, length).reshape(nh, d, length)
    y = torch.zeros(batch, length, nh, d, dtype=x.dtype)
    for t in range(length):
        for s in range(t + 1):
            kv = k[:, s, :, :, None] * v[:, s, :, None, :]          # (B, H, i, j)
            y[:, t] += (q[:, t, :, :, None] * h[None, :, :, None, t - s] * kv).sum(2)
    return y.reshape(batch, length, dim) @ layer.out_proj.weight.detach().T


def naive_expert_outputs(layer: HyenaExperts, x):
    """Every expert's output at every position, computed densely: (E, B, L, dim)."""
    v, x1, x2 = naive_streams(layer, x)
    c = naive_long_conv(naive_filter(layer.filter, x.shape[1]), x1 * v)
    w, out_w = layer.expert_width, layer.out_proj.weight.detach()
    return torch.stack([(x2[..., e * w:(e + 1) * w] * c[..., e * w:(e + 1) * w])
                        @ out_w[:, e * w:(e + 1) * w].T for e in range(layer.experts)])


def naive_hyena_experts(layer: HyenaExperts, x):
    """Per token: softmax over its top-k router logits, weighted sum of those experts only."""
    experts = naive_expert_outputs(layer, x)
    logits = x @ layer.router.weight.detach().T
    out = torch.zeros_like(x)
    for b in range(x.shape[0]):
        for t in range(x.shape[1]):
            row = logits[b, t].tolist()
            top = sorted(range(len(row)), key=lambda e: -row[e])[: layer.top_k]
            z = sum(np.exp(row[e]) for e in top)
            for e in top:
                out[b, t] += np.exp(row[e]) / z * experts[e, b, t]
    return out


SMALL = {
    "hyena": lambda: Hyena(8, modes=3),
    "mh-hyena": lambda: MultiHeadHyena(8, heads=2, modes=2),
    "hyena-experts": lambda: HyenaExperts(8, experts=4, expert_width=3, top_k=2, modes=2),
}
NAIVE = {"hyena": naive_hyena, "mh-hyena": naive_mh_hyena, "hyena-experts": naive_hyena_experts}


def small_layer(name):
    torch.manual_seed(0)
    layer = SMALL[name]().double()
    with torch.no_grad():  # a non-zero direct term, so that it is exercised
        layer.filter.direct.normal_()
    return layer


# -- the convolution -----------------------------------------------------------------------
def test_fft_and_direct_convolution_equal_numpy_convolve():
    """Property: both convolutions are the causal (truncated) linear convolution."""
    torch.manual_seed(0)
    u = torch.randn(2, 3, 17, dtype=torch.float64)
    h = torch.randn(3, 17, dtype=torch.float64)
    expected = numpy_causal_conv(u, h)
    torch.testing.assert_close(fft_causal_conv(u, h), expected, atol=1e-12, rtol=0)
    torch.testing.assert_close(direct_causal_conv(u, h), expected, atol=1e-12, rtol=0)


def test_fft_convolution_keeps_dtype_and_computes_in_float32():
    u = torch.randn(2, 4, 16).bfloat16()
    h = torch.randn(4, 16)
    y = fft_causal_conv(u, h)
    assert y.dtype == torch.bfloat16
    torch.testing.assert_close(y.float(), numpy_causal_conv(u.double(), h.double()).float(),
                               atol=0.05, rtol=0.02)


def test_modal_filter_is_the_damped_complex_exponential_sum():
    """Property: h_c[t] = Re(sum_m R_cm lambda_cm^t) + D_c delta_t with |lambda| < 1."""
    torch.manual_seed(0)
    f = ModalFilter(5, 4).double()
    with torch.no_grad():
        f.direct.normal_()
    torch.testing.assert_close(f(40), naive_filter(f, 40), atol=1e-12, rtol=0)
    assert (torch.exp(-F.softplus(f.decay)) < 1).all()


def test_modal_recurrence_reproduces_fft_convolution_with_2_modes_state_per_channel():
    """Property: stepping a state of channels * modes * 2 reals gives the FFT convolution."""
    torch.manual_seed(0)
    f = ModalFilter(5, 3).double()
    with torch.no_grad():
        f.direct.normal_()
    u = torch.randn(2, 5, 30, dtype=torch.float64)
    state = f.initial_state(2, dtype=torch.float64)
    assert state[0].numel() == f.state_size() == 5 * 3 * 2
    ys = []
    for t in range(30):
        y, state = f.step(u[..., t], state)
        ys.append(y)
    torch.testing.assert_close(torch.stack(ys, -1), fft_causal_conv(u, f(30)), atol=1e-10,
                               rtol=0)


# -- the layers ----------------------------------------------------------------------------
@pytest.mark.parametrize("name", list(SMALL))
def test_layer_equals_naive_reference(name):
    """Property: forward equals the layer's formula evaluated with explicit loops."""
    layer = small_layer(name)
    x = torch.randn(2, 9, 8, dtype=torch.float64)
    torch.testing.assert_close(layer(x), NAIVE[name](layer, x), atol=1e-10, rtol=0)


@pytest.mark.parametrize("name", list(SMALL))
def test_layer_is_a_recurrence_with_exactly_the_declared_state(name):
    """Property: stepping one token at a time, carrying state_size modal elements plus
    cache_size short-conv elements per sequence, reproduces forward."""
    layer = small_layer(name)
    batch, length = 2, 12
    x = torch.randn(batch, length, 8, dtype=torch.float64)
    state = layer.initial_state(batch, dtype=torch.float64)
    assert state["modal"][0].numel() == layer.state_size(length)
    assert state["cache"][0].numel() == layer.cache_size(length)
    ys = []
    for t in range(length):
        y, state = layer.step(x[:, t], state)
        ys.append(y)
    torch.testing.assert_close(torch.stack(ys, 1), layer(x), atol=1e-10, rtol=0)


@pytest.mark.parametrize("name", list(SMALL))
def test_layer_is_causal(name):
    """Property: changing inputs after t leaves outputs up to t unchanged."""
    layer = small_layer(name)
    assert_causal_prefixes(layer, torch.randn(2, 10, 8, dtype=torch.float64), (0, 4, 8))


@pytest.mark.parametrize("name", list(SMALL))
def test_shape_and_dtype_are_kept(name):
    torch.manual_seed(0)
    layer = SMALL[name]().to(torch.bfloat16)
    y = layer(torch.randn(2, 7, 8).bfloat16())
    assert y.shape == (2, 7, 8) and y.dtype == torch.bfloat16 and torch.isfinite(y).all()


def test_hyena_experts_unselected_expert_has_no_influence():
    """Property: zeroing every weight of an expert that a token did not select leaves that
    token's output unchanged (its weight is exactly zero, not merely small)."""
    layer = small_layer("hyena-experts")
    x = torch.randn(1, 9, 8, dtype=torch.float64)
    y = layer(x)
    t = 6
    logits = (x[0, t] @ layer.router.weight.detach().T).tolist()
    unselected = sorted(range(layer.experts), key=lambda e: logits[e])[0]  # lowest logit
    w = layer.expert_width
    own = range(unselected * w, (unselected + 1) * w)           # its channels in every stream
    cols = [c + j * layer.inner for j in range(3) for c in own]
    with torch.no_grad():
        layer.in_proj.weight[cols] = 0
        layer.short_conv.conv.weight[cols] = 0
        layer.filter.residue_real[unselected * w:(unselected + 1) * w] = 0
        layer.filter.residue_imag[unselected * w:(unselected + 1) * w] = 0
        layer.filter.direct[unselected * w:(unselected + 1) * w] = 0
        layer.out_proj.weight[:, unselected * w:(unselected + 1) * w] = 0
    y_zeroed = layer(x)
    torch.testing.assert_close(y_zeroed[0, t], y[0, t], atol=1e-12, rtol=0)
    assert not torch.allclose(y_zeroed, y)  # the expert did matter somewhere else


# -- MAD defaults at width 128 -------------------------------------------------------------
def test_mad_default_parameter_and_state_counts():
    """Hand counts at width 128 (no biases; filters: residue re/im + decay + angle per mode,
    plus one direct term per filtered channel)."""
    d = 128
    hyena = 3 * d * d + 3 * d * 3 + (4 * d * 8 + d) + d * d                  # 70,912
    mh_hyena = 3 * d * d + 3 * d * 3 + (4 * d * 1 + d) + d * d               # 67,328
    he_total = d * 8 + 3 * d * d + 3 * d * 3 + (4 * d * 8 + d) + d * d      # 71,936
    he_active = he_total - 6 * 16 * d                                        # 59,648
    expected = {"hyena-modal": (hyena, None), "mh-hyena-modal": (mh_hyena, None),
                "hyena-experts-modal": (he_total, he_active)}
    for name, (params, active) in expected.items():
        layer = build_mixer(LayerSpec(name), d)
        assert sum(p.numel() for p in layer.parameters()) == params, name
        if active is not None:
            assert layer.active_parameters() == active
        for length in (16, 128, 1024):
            assert layer.state_size(length) == 2048, name
            assert layer.cache_size(length) == 3 * d * 2, name
    assert (hyena, mh_hyena, he_total, he_active) == (70912, 67328, 71936, 59648)


def test_registered_metadata():
    from madbench_layers import hyena_modal
    by_name = {name: meta for name, _, meta in hyena_modal.MIXERS}
    assert {n: m["shorthand"] for n, m in by_name.items()} == {
        "hyena-modal": "Hm", "mh-hyena-modal": "mHm", "hyena-experts-modal": "Hem"}
    assert all(m["kind"] == "sequence" and m["description"] for m in by_name.values())


def test_bad_layout_is_a_usage_error():
    from madbench.errors import UsageError
    with pytest.raises(UsageError, match="divisible"):
        MultiHeadHyena(12, heads=5)
    with pytest.raises(UsageError, match="top_k"):
        HyenaExperts(8, experts=2, top_k=3)
