"""Gated linear attention: the chunked op against its recurrent form, the whole layer against a
step-by-step re-derivation from its definition, causality, counts and state."""
import pytest
import torch

from madbench.plugins import get_registry
from madbench_layers.gla import GatedLinearAttention, chunk_gla, gla_recurrent

from helpers import assert_causal_prefixes


def build(name, dim=128, **kwargs):
    entry = get_registry().mixers[name]
    return entry.obj(dim, **{**entry.metadata.get("defaults", {}), **kwargs})


def random_inputs(seq_len, dtype=torch.float64, gate_scale=3.0, seed=0):
    g = torch.Generator().manual_seed(seed)
    q, k = torch.randn(2, 2, 3, seq_len, 4, dtype=dtype, generator=g)
    v = torch.randn(2, 3, seq_len, 5, dtype=dtype, generator=g)
    log_alpha = torch.nn.functional.logsigmoid(
        gate_scale * torch.randn(2, 3, seq_len, 4, dtype=dtype, generator=g))
    return q, k, v, log_alpha


@pytest.mark.parametrize("chunk_size", [1, 3, 4, 16, 64])
def test_chunked_matches_recurrent(chunk_size):
    """Property: chunk_gla equals the step-by-step recurrence; seq_len 21 is no multiple of
    3, 4 or 16, and shorter than 64."""
    q, k, v, log_alpha = random_inputs(21)
    torch.testing.assert_close(chunk_gla(q, k, v, log_alpha, chunk_size),
                               gla_recurrent(q, k, v, log_alpha), rtol=1e-10, atol=1e-10)


def test_recurrent_form_is_the_definition():
    """gla_recurrent against S_t = diag(alpha_t) S_{t-1} + k_t^T v_t, o_t = q_t S_t written
    with explicit matrices for one head."""
    q, k, v, log_alpha = random_inputs(6)
    state = torch.zeros(4, 5, dtype=torch.float64)
    for t in range(6):
        state = torch.diag(log_alpha[1, 2, t].exp()) @ state + torch.outer(k[1, 2, t], v[1, 2, t])
        torch.testing.assert_close(gla_recurrent(q, k, v, log_alpha)[1, 2, t], q[1, 2, t] @ state)


def test_chunked_is_finite_and_accurate_in_fp32_under_strong_forgetting():
    """Property: with log-gates of -60 per step (exp(-60 * 16) underflows, exp(+960) would
    overflow), the fp32 chunked op stays finite and matches the fp64 recurrence."""
    q, k, v, log_alpha = random_inputs(40, gate_scale=0.0)
    log_alpha = torch.where(torch.rand(log_alpha.shape, generator=torch.Generator().manual_seed(1))
                            < 0.5, -60.0, -1e-3).double()
    expected = gla_recurrent(q, k, v, log_alpha)
    got = chunk_gla(q.float(), k.float(), v.float(), log_alpha.float(), 16)
    assert torch.isfinite(got).all()
    torch.testing.assert_close(got.double(), expected, rtol=1e-4, atol=1e-4)


def naive_gla_layer(layer, x):
    """The layer from its definition, one step at a time: alpha = sigmoid(x W1 W2 + b)^(1/16),
    q scaled by dk^-1/2, per-head RMSNorm with a shared gain, swish(x W_g) gate, out proj."""
    batch, seq_len, _ = x.shape
    h, dk, dv = layer.num_heads, layer.head_k_dim, layer.head_v_dim
    split = lambda t, d: t.view(batch, seq_len, h, d)  # noqa: E731
    q = split(x @ layer.q_proj.weight.T, dk) / dk ** 0.5
    k = split(x @ layer.k_proj.weight.T, dk)
    v = split(x @ layer.v_proj.weight.T, dv)
    low, up = layer.gk_proj
    alpha = split(torch.sigmoid(x @ low.weight.T @ up.weight.T + up.bias), dk) ** (1 / 16)
    state = torch.zeros(batch, h, dk, dv, dtype=x.dtype)
    out = torch.zeros(batch, seq_len, h, dv, dtype=x.dtype)
    for t in range(seq_len):
        state = alpha[:, t, :, :, None] * state + k[:, t, :, :, None] * v[:, t, :, None, :]
        o = torch.einsum("bhk,bhkv->bhv", q[:, t], state)
        out[:, t] = o / torch.sqrt((o ** 2).mean(-1, keepdim=True) + layer.norm_eps) * layer.norm_weight
    gate = x @ layer.g_proj.weight.T
    gated = out.reshape(batch, seq_len, h * dv) * gate * torch.sigmoid(gate)
    return gated @ layer.o_proj.weight.T


@pytest.mark.parametrize("num_heads,chunk_size", [(1, 4), (4, 16)])
def test_layer_matches_naive_definition(num_heads, chunk_size):
    torch.manual_seed(0)
    layer = GatedLinearAttention(16, num_heads=num_heads, chunk_size=chunk_size).double()
    with torch.no_grad():
        layer.norm_weight.uniform_(0.5, 1.5)
    x = torch.randn(2, 11, 16, dtype=torch.float64)
    torch.testing.assert_close(layer(x), naive_gla_layer(layer, x), rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("name", ["gated-linear-attention", "mh-gated-linear-attention"])
def test_causal_and_shape_preserving(name):
    """Property: perturbing inputs after t leaves outputs up to t unchanged (several t)."""
    torch.manual_seed(1)
    layer = build(name, 32, chunk_size=4).double()
    x = torch.randn(2, 14, 32, dtype=torch.float64)
    y = assert_causal_prefixes(layer, x, (0, 3, 6, 12))
    assert y.shape == x.shape and y.dtype == x.dtype
    assert build(name, 32)(x.float()).dtype == torch.float32


def test_parameter_counts_at_mad_defaults():
    """Hand count: q, k, v, output gate and output projections 5 * 128 * 128; low-rank forget
    gate 128 * 16 + 16 * 128 + bias 128; RMSNorm gain of one head (16 or 128)."""
    shared = 5 * 128 * 128 + 128 * 16 + 16 * 128 + 128
    assert sum(p.numel() for p in build("mh-gated-linear-attention").parameters()) == shared + 16 == 86_160
    assert sum(p.numel() for p in build("gated-linear-attention").parameters()) == shared + 128 == 86_272


@pytest.mark.parametrize("seq_len", [1, 128, 4096])
def test_state_sizes(seq_len):
    """heads * dk * dv, the same for every seq_len: 8 * 16 * 16 and 1 * 128 * 128."""
    assert build("mh-gated-linear-attention").state_size(seq_len) == 8 * 16 * 16 == 2_048
    assert build("gated-linear-attention").state_size(seq_len) == 128 * 128 == 16_384
    assert build("mh-gated-linear-attention").cache_size(seq_len) == 0


def test_registered_defaults():
    mixers = get_registry().mixers
    assert mixers["mh-gated-linear-attention"].metadata["shorthand"] == "mAlg"
    assert mixers["gated-linear-attention"].metadata["shorthand"] == "Alg"
    layer = build("mh-gated-linear-attention")
    assert (layer.num_heads, layer.head_k_dim, layer.head_v_dim) == (8, 16, 16)


def madlab_gla_draws(dim, num_heads, low_rank=16, order=("q", "k", "v", "g", "o", "gk0", "gk1")):
    """mad-lab's GatedLinearAttention.__init__ written out, to be called right after a seed:
    nn.Linear q, k, v, g (no bias), the low-rank forget gate (dim -> 16 no bias, 16 -> key
    width with bias), o (no bias), each drawing PyTorch's default init as it is created; the
    RMSNorm gain (ones) draws nothing; then reset_parameters re-draws every weight
    Xavier-uniform with gain 2^-2.5 in the order q, k, v, g, o, gk_proj[0], gk_proj[1]. The
    forget-gate bias keeps its creation draw. Returns tensors under the bundled layer's names."""
    made = {"q": torch.nn.Linear(dim, dim, bias=False), "k": torch.nn.Linear(dim, dim, bias=False),
            "v": torch.nn.Linear(dim, dim, bias=False), "g": torch.nn.Linear(dim, dim, bias=False),
            "gk0": torch.nn.Linear(dim, low_rank, bias=False),
            "gk1": torch.nn.Linear(low_rank, dim, bias=True),
            "o": torch.nn.Linear(dim, dim, bias=False)}
    for key in order:
        torch.nn.init.xavier_uniform_(made[key].weight, gain=2 ** -2.5)
    names = {"q": "q_proj", "k": "k_proj", "v": "v_proj", "g": "g_proj", "o": "o_proj",
             "gk0": "gk_proj.0", "gk1": "gk_proj.1"}
    out = {f"{names[key]}.weight": m.weight.detach() for key, m in made.items()}
    out["gk_proj.1.bias"] = made["gk1"].bias.detach()
    out["norm_weight"] = torch.ones(dim // num_heads)
    return out


@pytest.mark.parametrize("dim,num_heads,seed", [(32, 1, 0), (32, 4, 7), (128, 8, 3), (128, 1, 1)])
def test_initial_weights_drawn_in_madlab_order(dim, num_heads, seed):
    """At the same seed the bundled layer draws exactly mad-lab's initial tensors (so a
    bundled and a reference model built at one seed start from the same weights), and leaves
    the global generator where mad-lab's constructor does (so the layers built after it in a
    backbone draw the same too)."""
    torch.manual_seed(seed)
    layer = GatedLinearAttention(dim, num_heads=num_heads)
    after_layer = torch.rand(8)
    torch.manual_seed(seed)
    expected = madlab_gla_draws(dim, num_heads)
    after_expected = torch.rand(8)
    got = {name: p.detach() for name, p in layer.named_parameters()}
    assert got.keys() == expected.keys()
    for name in got:
        assert torch.equal(got[name], expected[name]), name
    assert torch.equal(after_layer, after_expected)
    # the comparison is sensitive to the order: o's Xavier draw before g's changes both
    torch.manual_seed(seed)
    swapped = madlab_gla_draws(dim, num_heads, order=("q", "k", "v", "o", "g", "gk0", "gk1"))
    assert not torch.equal(got["g_proj.weight"], swapped["g_proj.weight"])
