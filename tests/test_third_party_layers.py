"""What a third-party layer (e.g. the reference implementation's, by import path) meets in the
harness: its sequence length, FLOP counting that never blocks, an audit when it declares no
state, and a clear refusal when it returns a tuple."""
import sys
import types

import pytest
import torch
from torch import nn

from madbench.accounting import describe_architecture
from madbench.architecture import ArchitectureSpec, LayerSpec, build_mixer
from madbench.checks import guard_architecture
from madbench.errors import CheckFailed
from madbench.verdict import architecture_checks


class GradOnly(nn.Module):
    """Like the reference Hyena's layer: its forward asserts grad mode."""

    def __init__(self, dim):
        super().__init__()
        self.proj = nn.Linear(dim, dim, bias=False)

    def forward(self, x):
        if not torch.is_grad_enabled():
            raise AssertionError("Expected gradient function to be set")
        return self.proj(x).cumsum(1)


class Broken(nn.Module):
    def __init__(self, dim):
        super().__init__()

    def forward(self, x):
        raise RuntimeError("boom in forward")


class WithLength(nn.Module):
    def __init__(self, dim, l_max: int = 7):
        super().__init__()
        self.l_max = l_max

    def forward(self, x):
        return x.cumsum(1)


class CatchAll(nn.Module):
    def __init__(self, dim, *args, **kwargs):
        super().__init__()
        self.kwargs = kwargs

    def forward(self, x):
        return x


class Undeclared(nn.Module):
    """A causal running mean of a projection: state dim, declared nowhere."""

    def __init__(self, dim):
        super().__init__()
        self.proj = nn.Linear(dim, dim, bias=False)

    def forward(self, x):
        return self.proj(x).cumsum(1)


class Tuple(nn.Module):
    def __init__(self, dim):
        super().__init__()

    def forward(self, x):
        return x, None, None


@pytest.fixture
def third_party(monkeypatch):
    module = types.ModuleType("third_party_layers")
    for cls in (GradOnly, Broken, WithLength, CatchAll, Undeclared, Tuple):
        setattr(module, cls.__name__, cls)
        cls.__module__ = "third_party_layers"
    monkeypatch.setitem(sys.modules, "third_party_layers", module)
    return "third_party_layers"


def test_flops_of_a_layer_that_needs_grad_mode_are_counted(third_party):
    spec = ArchitectureSpec("g", (LayerSpec(f"{third_party}:GradOnly"), LayerSpec("swiglu")), 8)
    d = describe_architecture(spec, seq_len=16, vocab_size=8)
    assert d["layers"][0]["flop_method"] == "flopcounter"
    assert d["layers"][0]["flops_per_token"] == 2 * 8 * 8       # its one matrix product


def test_a_layer_whose_flops_cannot_be_counted_is_unknown_not_refused(third_party, capsys):
    spec = ArchitectureSpec("b", (LayerSpec(f"{third_party}:Broken"), LayerSpec("swiglu")), 8)
    d = describe_architecture(spec, seq_len=16, vocab_size=8)
    assert d["layers"][0]["flop_method"] == "unknown"
    assert d["layers"][0]["flops_per_token"] is None and d["flops_per_token"] is None
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "FLOPs of layer 0" in err[0] and "boom in forward" in err[0]


def test_sequence_length_reaches_a_named_length_argument_only(third_party):
    assert build_mixer(LayerSpec(f"{third_party}:WithLength"), 8, 96).l_max == 96
    assert build_mixer(LayerSpec(f"{third_party}:WithLength", {"l_max": 5}), 8, 96).l_max == 5
    assert build_mixer(LayerSpec(f"{third_party}:CatchAll"), 8, 96).kwargs == {}


def test_an_undeclared_state_is_measured_and_flagged_not_refused(third_party):
    spec = ArchitectureSpec("u", (LayerSpec(f"{third_party}:Undeclared"),
                                  LayerSpec("swiglu")), 8)
    checks = architecture_checks(spec)
    assert "state-measured" in checks["flags"] and "state-mismatch" not in checks["flags"]
    # a running sum of a width-8 projection carries 8 numbers across any split
    assert "measured by the audit: layer 0" in checks["iso_state"]["message"]
    assert " 8" in checks["iso_state"]["message"]
    from madbench.verdict import architecture_verdict, verdict_lines
    line = verdict_lines(architecture_verdict(spec, seq_len=16, vocab_size=8))[1]
    assert line.startswith("iso-state: UNVERIFIED: state not declared")   # not "ok"


def test_a_layer_returning_a_tuple_is_refused_with_a_hint(third_party):
    spec = ArchitectureSpec("t", (LayerSpec(f"{third_party}:Tuple"), LayerSpec("swiglu")), 8)
    with pytest.raises(CheckFailed, match="returns a tuple, not a tensor.*first element"):
        guard_architecture(spec)


def test_a_layer_returning_no_tensor_and_no_tuple_gets_no_tuple_hint():
    """forward returning None read 'returns a NoneType ... e.g. the first element of the
    NoneType': advice for tuples, given where there is nothing to take an element of."""
    from madbench.checks.contract import check_contract

    class Returns(nn.Module):
        def __init__(self, dim, value=None):
            super().__init__()
            self.value = value

        def forward(self, x):
            return self.value

    (none,) = check_contract(Returns(8), 8).problems
    assert none == ("forward returns None, not a tensor (forward must return the output "
                    "tensor, of the input's shape)")
    (number,) = check_contract(Returns(8, 3.0), 8).problems
    assert number.startswith("forward returns a float, not a tensor (") and "element" not in number
    (pair,) = check_contract(Returns(8, [1, 2]), 8).problems
    assert pair.endswith("e.g. the first element of the list)")


class Annotated(nn.Module):
    def __init__(self, dim, heads: int = 2, scale: float | None = None, act="silu", window=32,
                 dt_rank="auto"):
        super().__init__()


@pytest.mark.parametrize("kwargs", [{}, {"heads": 3}, {"scale": 1}, {"scale": 0.5},
                                    {"scale": None}, {"act": "gelu"}, {"window": None},
                                    {"window": 16.0}, {"heads": torch.tensor(3).item()},
                                    {"dt_rank": 8}])
def test_constructor_arguments_that_fit_the_signature_are_not_refused(kwargs):
    """The signature check (``kwargs_problem``) refuses only what cannot fit: an integer for a
    float, None for an unannotated default, a float for an int default all pass."""
    from madbench.architecture import kwargs_problem
    assert kwargs_problem(Annotated, kwargs) is None
    assert kwargs_problem(CatchAll, {"anything": "goes"}) is None      # it takes **kwargs
