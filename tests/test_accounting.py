"""Accounting: parameter, state and FLOP counts of small mixers whose counts are known by hand,
the fixed/dynamic/unknown state rules, and the iso-state and iso-parameter verdicts."""
import textwrap

import pytest
import torch
from torch import nn

import madbench
from madbench.accounting import (check_iso_state, describe_architecture, param_ratio,
                                 param_ratio_flagged, reference_description)
from madbench.architecture import ArchitectureSpec, LayerSpec, resolve_architecture

DIM, VOCAB, LENGTH = 8, 5, 16


class Fixed(nn.Module):
    """dim x dim matrix, no bias; declares a fixed state and a cache."""

    def __init__(self, dim, state=2048, cache=7):
        super().__init__()
        self.proj = nn.Linear(dim, dim, bias=False)
        self.state, self.cache = state, cache

    def forward(self, x):
        return self.proj(x)

    def state_size(self, seq_len):
        return self.state

    def cache_size(self, seq_len):
        return self.cache


class KVCache(Fixed):
    def state_size(self, seq_len):
        return 2 * self.proj.in_features * seq_len


class Window(Fixed):
    def state_size(self, seq_len):
        return 2 * self.proj.in_features * min(seq_len, 32)


class Undeclared(nn.Module):
    def __init__(self, dim):
        super().__init__()
        self.proj = nn.Linear(dim, dim, bias=True)

    def forward(self, x):
        return self.proj(x)


class Sparse(nn.Module):
    """Four dim x dim experts of which one is active per token (channel mixer)."""

    def __init__(self, dim):
        super().__init__()
        self.experts = nn.Parameter(torch.randn(4, dim, dim))

    def forward(self, x):
        return x @ self.experts[0]

    def active_parameters(self):
        return self.experts[0].numel()


class AccountingPlugin:
    @madbench.hookimpl
    def madbench_register_mixers(self, register):
        register("acc-fixed", Fixed, shorthand="Fx")
        register("acc-kv", KVCache, shorthand="Kv")
        register("acc-window", Window)
        register("acc-undeclared", Undeclared)
        register("acc-sparse", Sparse, kind="channel", shorthand="Sp")


@pytest.fixture
def toys(register_plugin):
    register_plugin(AccountingPlugin(), "accounting-toys")


def _spec(*layers):
    return ArchitectureSpec("toy", tuple(LayerSpec(*l) if isinstance(l, tuple) else LayerSpec(l)
                                         for l in layers), dim=DIM)


def test_parameter_counts_by_hand(toys):
    d = describe_architecture(_spec("acc-fixed", "acc-sparse", "acc-undeclared"), LENGTH, VOCAB)
    norm = DIM  # one RMSNorm gain per block
    mixers = [DIM * DIM, 4 * DIM * DIM, DIM * DIM + DIM]
    assert [l["params"] for l in d["layers"]] == mixers
    assert [l["norm_params"] for l in d["layers"]] == [norm] * 3
    assert d["non_embedding_params"] == sum(mixers) + 3 * norm
    assert d["embedding_params"] == VOCAB * DIM
    assert d["head_params"] == DIM + DIM * VOCAB + VOCAB  # final norm, head weight and bias
    assert d["params"] == d["non_embedding_params"] + d["embedding_params"] + d["head_params"]
    # only the sparse layer has inactive parameters: 3 of its 4 experts
    assert [l["active_params"] for l in d["layers"]] == [DIM * DIM, DIM * DIM, DIM * DIM + DIM]
    assert d["params"] - d["active_params"] == 3 * DIM * DIM
    assert d["non_embedding_params"] - d["active_non_embedding_params"] == 3 * DIM * DIM


def test_state_kinds_and_totals(toys):
    spec = _spec("acc-fixed", "acc-kv", "acc-window", "acc-sparse")
    d = describe_architecture(spec, LENGTH, VOCAB)
    kinds = [l["state_kind"] for l in d["layers"]]
    assert kinds == ["fixed", "dynamic", "fixed", "none"]
    assert [l["fixed_state"] for l in d["layers"]] == [2048, 0, 2 * DIM * 32, 0]
    assert [l["dynamic_state"] for l in d["layers"]] == [0, 2 * DIM * LENGTH, 0, 0]
    assert d["fixed_state"] == 2048 + 2 * DIM * 32
    assert d["dynamic_state"] == 2 * DIM * LENGTH
    assert d["cache"] == 3 * 7
    assert d["unknown_state_layers"] == []
    assert describe_architecture(spec, 2 * LENGTH, VOCAB)["dynamic_state"] == 4 * DIM * LENGTH


def test_unknown_state(toys):
    d = describe_architecture(_spec("acc-fixed", "acc-undeclared"), LENGTH, VOCAB)
    assert d["layers"][1]["state_kind"] == "unknown" and d["layers"][1]["fixed_state"] is None
    assert d["fixed_state"] is None and d["dynamic_state"] is None
    assert d["unknown_state_layers"] == [1]
    ok, message = check_iso_state(d)
    assert not ok and "state unknown" in message and "acc-undeclared" in message


def test_flops_per_token_count_the_matrix_products(toys):
    # forward: each dim x dim product costs 2 dim^2 per token; the head 2 dim V; norms count 0
    d = describe_architecture(_spec("acc-fixed", "acc-undeclared"), LENGTH, VOCAB)
    assert [l["flops_per_token"] for l in d["layers"]] == [2 * DIM * DIM] * 2
    assert d["flops_per_token"] == 2 * (2 * DIM * DIM) + 2 * DIM * VOCAB


def test_attention_flops_include_the_score_and_value_products():
    # one causal attention layer (no mask discount), the paper's App. C.4 terms per token:
    # 2 L d for q k^T and 2 L d for p v, 2 H L for the softmax, 2 d (3 d) + 2 d d projections
    d = describe_architecture("A", LENGTH, VOCAB)
    width = d["dim"]
    attention = d["layers"][0]
    heads = 1
    assert attention["flops_per_token"] == 8 * width * width + 4 * LENGTH * width + 2 * heads * LENGTH
    assert attention["flop_method"] == "analytic"


@pytest.mark.parametrize("fixed,tolerance,expected", [
    (4096, 0.0, True), (4095, 0.0, False), (8192, 0.0, False), (4300, 0.05, True),
    (4400, 0.05, False)])
def test_iso_state_verdicts(toys, fixed, tolerance, expected):
    spec = _spec(("acc-fixed", {"state": fixed // 2}), ("acc-fixed", {"state": fixed - fixed // 2}))
    d = describe_architecture(spec, LENGTH, VOCAB)
    assert d["fixed_state"] == fixed
    ok, message = check_iso_state(d, target=4096, tolerance=tolerance)
    assert ok is expected and f"{fixed:,}" in message


def test_iso_state_does_not_apply_to_dynamic_state(toys):
    d = describe_architecture(_spec("acc-fixed", "acc-kv"), LENGTH, VOCAB)
    ok, message = check_iso_state(d)
    assert ok and message.startswith("not normalised")


def test_param_ratio_against_a_reference(toys):
    d = describe_architecture(_spec("acc-fixed", "acc-fixed"), LENGTH, VOCAB)
    ref = describe_architecture(_spec("acc-fixed"), LENGTH, VOCAB)
    assert param_ratio(d, ref) == 2.0  # (2 dim^2 + 2 dim) / (dim^2 + dim)
    assert param_ratio_flagged(1.21) and param_ratio_flagged(0.79)
    assert not param_ratio_flagged(1.19) and not param_ratio_flagged(0.8)
    assert not param_ratio_flagged(1.3, tolerance=0.5)


def test_default_reference_is_mh_attention_with_swiglu():
    ref = reference_description(LENGTH, VOCAB)
    assert [l["mixer"] for l in ref["layers"]] == ["mh-attention", "swiglu"] * 2


def test_describe_leaves_the_global_random_state_alone(toys):
    before = torch.get_rng_state()
    describe_architecture(_spec("acc-fixed"), LENGTH, VOCAB)
    assert torch.equal(before, torch.get_rng_state())


def test_describe_an_import_path_mixer(tmp_path, monkeypatch):
    (tmp_path / "madbench_acc_tmp_mixer.py").write_text(textwrap.dedent("""
        import torch
        from torch import nn

        class CumSum(nn.Module):
            '''Running sum then a projection: the state is the dim running sums.'''
            def __init__(self, dim, scale=1.0):
                super().__init__()
                self.proj = nn.Linear(dim, dim, bias=False)
                self.scale = scale
            def forward(self, x):
                return self.proj(self.scale * x.cumsum(1))
            def state_size(self, seq_len):
                return self.proj.in_features
    """))
    monkeypatch.syspath_prepend(str(tmp_path))
    spec = resolve_architecture("madbench_acc_tmp_mixer:CumSum", mixer_kwargs={"scale": 0.5})
    d = describe_architecture(spec, LENGTH, VOCAB)
    width = spec.dim
    assert [l["mixer"] for l in d["layers"]] == ["madbench_acc_tmp_mixer:CumSum", "swiglu"] * 2
    first = d["layers"][0]
    assert first["class"] == "madbench_acc_tmp_mixer:CumSum"
    assert first["kwargs"] == {"scale": 0.5}
    assert first["params"] == width * width
    assert first["state_kind"] == "fixed" and first["fixed_state"] == width
    assert d["fixed_state"] == 2 * width and d["dynamic_state"] == 0
