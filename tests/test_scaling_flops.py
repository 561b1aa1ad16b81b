"""Analytic FLOP counts: the paper's table by hand, FlopCounterMode where it counts, the hook."""
import warnings

import pytest
import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

import madbench
from madbench.flops import extra_flop_formulas, layer_flops
from madbench.architecture import ArchitectureSpec, LayerSpec
from madbench.errors import MadbenchError
from madbench.model import LanguageModel
from madbench.plugins import register_plugin, unregister_plugin
from madbench.scaling.flops import architecture_flops
from madbench.scaling.shapes import family_spec

torch.set_num_threads(1)


def test_attention_matches_the_paper_table_by_hand():
    # D = 64, L = 128, H = 4 (inner width D): 6LD^2, 4L^2D, 2HL^2, 2LD^2
    t = layer_flops("mh-attention", 64, 128, {"num_heads": 4}).terms
    assert t["qkv_projections"] == 6 * 128 * 64 * 64 == 3_145_728
    assert t["attention"] == 4 * 128 * 128 * 64 == 4_194_304
    assert t["softmax"] == 2 * 4 * 128 * 128 == 131_072
    assert t["output_projection"] == 2 * 128 * 64 * 64 == 1_048_576


def test_sliding_window_counts_only_the_window():
    full = layer_flops("mh-attention", 64, 128, {"num_heads": 4}).terms["attention"]
    window = layer_flops("mh-attention", 64, 128, {"num_heads": 4, "window": 32}).terms
    assert window["attention"] == full * 32 / 128


def test_glu_and_hyena_match_the_paper_table_by_hand():
    assert layer_flops("swiglu", 64, 128, {"inner": 176}).terms == {"glu": 6 * 128 * 64 * 176}
    t = layer_flops("hyena-modal", 64, 128, {"modes": 8, "short_filter": 3}).terms
    assert t["projections"] == 6 * 128 * 64 ** 2                 # 6LD^2
    assert t["short_convs"] == 18 * 128 * 64                     # 18LD (three streams, width 3)
    assert t["fft_conv"] == 10 * 128 * 7 * 64                    # 10 L log2(L) D, log2(128) = 7
    assert t["gates"] == 4 * 128 * 64                            # 4LD
    assert t["output_projection"] == 2 * 128 * 64 ** 2           # 2LD^2
    assert t["filter_featurisation"] == 10 * 8 * 128 * 64        # S L D with S = 10 x modes


def test_mamba_matches_the_paper_table_by_hand():
    # D = 64, E = 2 (ED = 128), S = 16, D_dt = 4, conv width 4
    t = layer_flops("mamba", 64, 128, {"d_state": 16, "d_conv": 4, "expand": 2,
                                       "dt_rank": 4}).terms
    assert t["projections"] == 4 * 128 * 64 ** 2 * 2             # 4 L D^2 E
    assert t["featurisation"] == 2 * 128 * 128 * (4 + 32) + 2 * 128 * 128 * 4
    assert t["scan"] == 2 * 128 * 128 * 16                       # 2 L D E S
    assert t["output_projection"] == 2 * 128 * 64 ** 2 * 2       # 2 L D^2 E
    assert t["short_conv"] == 2 * 4 * 128 * 128                  # re-derived: 2k per channel


def test_moe_terms_are_re_derived_with_the_factor_l_and_active_experts():
    # router 2 L D E, active experts 6 L D w k, combination 2 L D k
    t = layer_flops("moe-mlp", 64, 128, {"experts": 8, "expert_width": 32, "top_k": 2}).terms
    assert t == {"router": 2 * 128 * 64 * 8, "expert_projections": 6 * 128 * 64 * 32 * 2,
                 "combine": 2 * 128 * 64 * 2}
    dense = layer_flops("swiglu", 64, 128, {"inner": 64}).total
    assert t["expert_projections"] == dense      # 2 active experts of width 32 = one of 64


def test_conventions_per_token_and_training():
    spec = family_spec("hyena", 32, 2)
    fl = architecture_flops(spec, 64, 256)
    assert fl.forward == pytest.approx(fl.embedding + fl.head + sum(l.total for l in fl.layers))
    assert fl.embedding == fl.head == 2 * 64 * 32 * 256          # 4LDV in all
    assert fl.forward_per_token == fl.forward / 64
    assert fl.training_per_token == 3 * fl.forward_per_token
    assert architecture_flops(spec, 64, 256, embeddings=False).forward == \
        fl.forward - 4 * 64 * 32 * 256
    assert fl.method == "analytic"


def _counted(spec, seq_len):
    model = LanguageModel(spec, 256)
    counter = FlopCounterMode(display=False, custom_mapping=extra_flop_formulas())
    with torch.no_grad(), counter:
        model(torch.randint(0, 256, (1, seq_len)))
    return counter.get_total_flops()


def test_transformer_block_agrees_with_flopcountermode():
    """FlopCounterMode counts every matrix product (fused attention included) but neither the
    softmax nor the input embedding (a lookup): the analytic count minus those two terms must
    equal it exactly."""
    L = 16
    spec = family_spec("transformer++", 32, 2)
    fl = architecture_flops(spec, L, 256)
    softmax = sum(l.terms.get("softmax", 0) for l in fl.layers)
    assert _counted(spec, L) == fl.forward - fl.embedding - softmax


def test_flopcountermode_misses_the_fft_and_pads_the_short_convolution():
    """Where FlopCounterMode does not count correctly: the FFT convolution, gates and filter
    are invisible to it, and it counts the short convolution over its padded output
    (L + k - 1 positions)."""
    L, D, k = 16, 32, 3
    spec = family_spec("hyena", D, 1)
    fl = architecture_flops(spec, L, 256)
    hyena = fl.layers[0].terms
    padded_conv = 2 * (L + k - 1) * k * 3 * D
    matmuls = hyena["projections"] + hyena["output_projection"] + fl.layers[1].total + fl.head
    assert _counted(spec, L) == matmuls + padded_conv
    assert hyena["fft_conv"] > 0 and hyena["gates"] > 0 and hyena["filter_featurisation"] > 0


class Doubler(nn.Module):
    """A toy mixer with no built-in formula: a causal running sum (no matrix product)."""

    def __init__(self, dim: int, scale: float = 2.0):
        super().__init__()
        self.scale = scale

    def forward(self, x):
        return self.scale * x.cumsum(dim=1)


class MatmulMixer(nn.Module):
    def __init__(self, dim: int):
        super().__init__()
        self.proj = nn.Linear(dim, dim, bias=False)

    def forward(self, x):
        return self.proj(x)


class _ToyPlugin:
    @madbench.hookimpl
    def madbench_register_mixers(self, register):
        register("toy-doubler", Doubler, shorthand="Tdb")
        register("toy-matmul", MatmulMixer, shorthand="Tmm")

    @madbench.hookimpl
    def madbench_flops(self, layer, dim, seq_len, kwargs):
        if layer == "toy-doubler":
            return {"cumsum": float(dim * seq_len), "scale": float(dim * seq_len)}
        return None


@pytest.fixture
def toy_plugin():
    register_plugin(_ToyPlugin(), "toy-flops")
    yield
    unregister_plugin("toy-flops")


def test_hook_supplies_formulas_for_third_party_mixers(toy_plugin):
    lf = layer_flops("toy-doubler", 16, 10)
    assert lf.method == "hook" and lf.total == 2 * 16 * 10
    assert lf.terms == {"cumsum": 160.0, "scale": 160.0}
    spec = ArchitectureSpec("toy", (LayerSpec("toy-doubler"), LayerSpec("swiglu")), 16)
    assert architecture_flops(spec, 10, 256).method == "hook"


def test_without_formula_or_hook_flopcounter_is_the_fallback(toy_plugin, capsys, monkeypatch):
    import madbench.flops
    monkeypatch.setattr(madbench.flops, "_WARNED", set())     # as in a fresh process
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        lf = layer_flops("toy-matmul", 16, 10)
    assert lf.method == "flopcounter" and lf.total == 2 * 10 * 16 * 16
    # one line on stderr, not a Python UserWarning with a file path
    err = capsys.readouterr().err
    assert err.startswith("Warning: no FLOP formula for mixer 'toy-matmul'")
    assert "lower bound" in err and err.count("\n") == 1 and not caught
    layer_flops("toy-matmul", 32, 10)                 # said once per mixer (it was per call)
    assert capsys.readouterr().err == ""
    with pytest.raises(MadbenchError, match="madbench_flops hook"):
        layer_flops("toy-matmul", 16, 10, fallback="error")


def test_a_measured_zero_is_refused(toy_plugin):
    unregister_plugin("toy-flops")

    class NoHook(_ToyPlugin):
        madbench_flops = None

    register_plugin(NoHook(), "toy-flops")
    with pytest.raises(MadbenchError, match="counts 0"):
        layer_flops("toy-doubler", 16, 10)
