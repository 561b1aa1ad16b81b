"""Softmax attention (full and sliding-window, with rotary embeddings) and linear attention,
checked against naive O(L^2) computations written independently here."""
import math

import pytest
import torch

from madbench.plugins import get_registry
from madbench_layers.attention import Attention
from madbench_layers.linear_attention import LinearAttention, causal_linear_attention

from helpers import assert_causal_prefixes


def build(name, dim=128, **kwargs):
    entry = get_registry().mixers[name]
    return entry.obj(dim, **{**entry.metadata.get("defaults", {}), **kwargs})


def n_params(module):
    return sum(p.numel() for p in module.parameters())


def rotary_by_complex(x, base=10000.0):
    """Rotary embedding as complex multiplication: the pair (x_i, x_{i+d/2}) is the complex
    number x_i + j x_{i+d/2}, multiplied by exp(j * position * base^(-2i/d))."""
    seq_len, d = x.shape[-2], x.shape[-1]
    z = torch.complex(x[..., : d // 2], x[..., d // 2:])
    i = torch.arange(d // 2, dtype=torch.float64)
    pos = torch.arange(seq_len, dtype=torch.float64)[:, None]
    z = z * torch.polar(torch.ones(seq_len, d // 2, dtype=torch.float64), pos * base ** (-2 * i / d))
    return torch.cat([z.real, z.imag], dim=-1)


def naive_attention(layer, x, window=None):
    """Per query t, softmax over keys max(0, t-window+1) .. t, all in loops over positions."""
    batch, seq_len, _ = x.shape
    h, d = layer.num_heads, layer.head_dim
    q, k, v = (layer.qkv(x).view(batch, seq_len, 3, h, d).permute(2, 0, 3, 1, 4))
    q, k = rotary_by_complex(q), rotary_by_complex(k)
    out = torch.zeros(batch, h, seq_len, d, dtype=x.dtype)
    for t in range(seq_len):
        first = 0 if window is None else max(0, t - window + 1)
        scores = (q[:, :, t:t + 1] @ k[:, :, first:t + 1].transpose(-1, -2)) / math.sqrt(d)
        out[:, :, t] = (scores.softmax(-1) @ v[:, :, first:t + 1])[:, :, 0]
    return layer.out(out.transpose(1, 2).reshape(batch, seq_len, h * d))


@pytest.mark.parametrize("num_heads", [1, 4])
def test_attention_matches_naive_masked_softmax_with_complex_rotary(num_heads):
    """Property: the layer equals causal softmax attention over rotary-rotated q and k."""
    torch.manual_seed(0)
    layer = Attention(16, num_heads=num_heads).double()
    x = torch.randn(2, 11, 16, dtype=torch.float64)
    torch.testing.assert_close(layer(x), naive_attention(layer, x), rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("num_heads,window", [(1, 4), (2, 1), (2, 5)])
def test_sliding_attention_matches_explicit_band(num_heads, window):
    """Property: query t attends to exactly the `window` keys t-window+1 .. t."""
    torch.manual_seed(1)
    layer = Attention(16, num_heads=num_heads, window=window).double()
    x = torch.randn(2, 13, 16, dtype=torch.float64)
    torch.testing.assert_close(layer(x), naive_attention(layer, x, window), rtol=1e-10, atol=1e-10)


def test_sliding_window_at_least_seq_len_is_full_attention():
    torch.manual_seed(2)
    full = Attention(16, num_heads=2).double()
    sliding = Attention(16, num_heads=2, window=9).double()
    sliding.load_state_dict(full.state_dict())
    x = torch.randn(1, 9, 16, dtype=torch.float64)
    torch.testing.assert_close(sliding(x), full(x), rtol=0, atol=1e-12)


def naive_linear_attention(layer, x):
    """o_t = sum_{s<=t} (phi(q_t).phi(k_s)) v_s / (sum_{s<=t} phi(q_t).phi(k_s) + eps), with
    phi(x) = x + 1 for x > 0 and exp(x) otherwise (that is elu(x) + 1)."""
    batch, seq_len, _ = x.shape
    h, d = layer.num_heads, layer.head_dim
    q, k, v = layer.qkv(x).view(batch, seq_len, 3, h, d).permute(2, 0, 3, 1, 4)
    phi = lambda t: torch.where(t > 0, t + 1, torch.exp(t))  # noqa: E731
    scores = phi(q) @ phi(k).transpose(-1, -2)
    mask = torch.ones(seq_len, seq_len, dtype=torch.bool).tril()
    scores = scores * mask
    out = (scores @ v) / (scores.sum(-1, keepdim=True) + layer.eps)
    return layer.out(out.transpose(1, 2).reshape(batch, seq_len, h * d))


@pytest.mark.parametrize("num_heads,chunk_size", [(1, 4), (4, 5), (4, 64), (2, 1)])
def test_linear_attention_matches_naive_quadratic_form(num_heads, chunk_size):
    """Property: the chunked form equals the O(L^2) masked form (seq_len 13 is no multiple
    of the chunk sizes 4 and 5, and shorter than 64)."""
    torch.manual_seed(3)
    layer = LinearAttention(16, num_heads=num_heads, chunk_size=chunk_size).double()
    x = torch.randn(2, 13, 16, dtype=torch.float64)
    torch.testing.assert_close(layer(x), naive_linear_attention(layer, x), rtol=1e-10, atol=1e-10)


def test_linear_attention_op_carries_sums_across_chunks():
    """Property: chunk size does not change the op's result (fp64)."""
    torch.manual_seed(4)
    q, k = torch.rand(2, 2, 3, 17, 4, dtype=torch.float64)
    v = torch.randn(2, 3, 17, 5, dtype=torch.float64)
    reference = causal_linear_attention(q, k, v, chunk_size=17)
    for chunk_size in (1, 2, 6):
        torch.testing.assert_close(causal_linear_attention(q, k, v, chunk_size), reference)


LAYERS = ["attention", "mh-attention", "sliding-attention", "mh-sliding-attention",
          "linear-attention", "mh-linear-attention"]


@pytest.mark.parametrize("name", LAYERS)
def test_causal_and_shape_preserving(name):
    """Property: perturbing inputs after t leaves outputs up to t unchanged (several t);
    outputs keep the input's shape and dtype."""
    torch.manual_seed(5)
    kwargs = {"window": 4} if "sliding" in name else {}
    layer = build(name, 32, **kwargs).double()
    x = torch.randn(2, 12, 32, dtype=torch.float64)
    y = assert_causal_prefixes(layer, x, (0, 3, 7, 10))
    assert y.shape == x.shape and y.dtype == x.dtype
    assert build(name, 32, **kwargs)(x.float()).dtype == torch.float32


def test_parameter_counts_at_mad_defaults():
    """Hand count: q, k, v and output projections of 128 x 128 = 4 * 16,384, plus mad-lab's
    biases (3 * 128 on QKV, 128 on the output); without them, the paper's 65,536."""
    for name in LAYERS:
        if "linear" in name:                # mad-lab's linear attention has no biases
            assert n_params(build(name)) == 4 * 128 * 128 == 65_536, name
            continue
        assert n_params(build(name)) == 4 * 128 * 128 + 4 * 128 == 66_048, name
        assert n_params(build(name, bias=False)) == 4 * 128 * 128 == 65_536, name


def test_registered_defaults():
    assert build("mh-attention").num_heads == 16 and build("mh-attention").head_dim == 8
    assert build("attention").num_heads == 1 and build("attention").head_dim == 128
    assert build("sliding-attention").window == 32 and build("mh-sliding-attention").window == 32
    assert build("mh-linear-attention").num_heads == 16
    shorthands = {n: get_registry().mixers[n].metadata["shorthand"] for n in LAYERS}
    assert shorthands == {"attention": "A", "mh-attention": "mA", "sliding-attention": "As",
                          "mh-sliding-attention": "mAs", "linear-attention": "Al",
                          "mh-linear-attention": "mAl"}


@pytest.mark.parametrize("seq_len", [1, 31, 32, 128, 1000])
def test_state_sizes(seq_len):
    """kv-cache 2 * 128 * L for attention, 2 * 128 * min(L, 32) with a window of 32;
    linear attention: S (heads * dk * dv) plus the normaliser (heads * dk), for every L."""
    for name in ("attention", "mh-attention"):
        assert build(name).state_size(seq_len) == 2 * 128 * seq_len
    for name in ("sliding-attention", "mh-sliding-attention"):
        assert build(name).state_size(seq_len) == 2 * 128 * min(seq_len, 32)
    assert build("linear-attention").state_size(seq_len) == 128 * 128 + 128
    assert build("mh-linear-attention").state_size(seq_len) == 16 * 8 * 8 + 16 * 8
    for name in LAYERS:
        assert build(name).cache_size(seq_len) == 0
