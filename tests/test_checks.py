"""Causality guard, mixer contract and state audit, on small mixers written here whose true
behaviour is known independently (a linear recurrence of n states has a state of exactly n;
a short convolution of width w keeps w - 1 past inputs; softmax attention keeps every past
token), and on every bundled sequence mixer at small widths."""
import math
import subprocess
import sys

import pytest
import torch
from torch import nn

import madbench
from madbench.architecture import ArchitectureSpec, LayerSpec, build_mixer
from madbench.checks import (audit_architecture, audit_state, check_causality, check_contract,
                             guard_architecture, state_failures)
from madbench.errors import CheckFailed
from madbench.plugins import get_registry
from madbench.testing import assert_causal, assert_state_declared, check_mixer

from helpers import LinearRecurrence


# -- small mixers with known behaviour (and LinearRecurrence, from helpers) -------------
class GatedRecurrence(nn.Module):
    """A GRU-like nonlinear recurrence with n hidden units: state exactly n."""

    def __init__(self, dim, state=10):
        super().__init__()
        self.n = state
        self.cell = nn.GRUCell(dim, state)
        self.out = nn.Linear(state, dim)

    def forward(self, x):
        h, out = x.new_zeros(x.shape[0], self.n), []
        for t in range(x.shape[1]):
            h = self.cell(x[:, t], h)
            out.append(self.out(h))
        return torch.stack(out, 1)

    def state_size(self, seq_len):
        return self.n


class ShortConv(nn.Module):
    """Depthwise causal convolution of width 3: keeps the last 2 inputs of every channel."""

    def __init__(self, dim, declare_cache=True):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(3, dim))
        self.declare_cache = declare_cache

    def forward(self, x):
        padded = nn.functional.pad(x, (0, 0, 2, 0))
        return sum(self.weight[i] * padded[:, i:i + x.shape[1]] for i in range(3))

    def state_size(self, seq_len):
        return 0

    def cache_size(self, seq_len):
        return 2 * self.weight.shape[1] if self.declare_cache else 0


class Bidirectional(nn.Module):
    """Adds the mean over the whole sequence: every output sees the future."""

    def __init__(self, dim):
        super().__init__()
        self.proj = nn.Linear(dim, dim)

    def forward(self, x):
        return self.proj(x) + x.mean(1, keepdim=True)

    def state_size(self, seq_len):
        return 0


class PeekAhead(nn.Module):
    """y_t = x_t + x_{t+k} (zero past the end): output t leaks input t + k."""

    def __init__(self, dim, k=3):
        super().__init__()
        self.k = k

    def forward(self, x):
        ahead = torch.cat([x[:, self.k:], torch.zeros_like(x[:, :self.k])], 1)
        return x + ahead


class SoftmaxAttention(nn.Module):
    """Plain causal softmax attention that claims a fixed state of 64."""

    def __init__(self, dim):
        super().__init__()
        self.qkv = nn.Linear(dim, 3 * dim, bias=False)

    def forward(self, x):
        q, k, v = self.qkv(x).chunk(3, -1)
        scores = q @ k.transpose(1, 2) / math.sqrt(x.shape[-1])
        future = torch.ones(x.shape[1], x.shape[1], dtype=torch.bool).triu(1)
        return scores.masked_fill(future, float("-inf")).softmax(-1) @ v

    def state_size(self, seq_len):
        return 64


class DetachedSum(nn.Module):
    """Carries a running sum of the inputs past autograd: the Jacobian cannot see it."""

    def __init__(self, dim):
        super().__init__()
        self.proj = nn.Linear(dim, dim)

    def forward(self, x):
        return self.proj(x) + x.detach().cumsum(1)

    def state_size(self, seq_len):
        return 0


class LeaksInFloat32(Bidirectional):
    """Honest in float64, bidirectional in float32 (the dtype models train in)."""

    def forward(self, x):
        return super().forward(x) if x.dtype == torch.float32 else self.proj(x)


class BatchMixing(nn.Module):
    def __init__(self, dim):
        super().__init__()

    def forward(self, x):
        return x + x.mean(0, keepdim=True)


class Truncating(nn.Module):
    def __init__(self, dim):
        super().__init__()

    def forward(self, x):
        return x[..., :-1]


class Exploding(nn.Module):
    def __init__(self, dim):
        super().__init__()

    def forward(self, x):
        return x / 0.0


# -- causality ---------------------------------------------------------------------------
def test_causal_recurrence_passes_with_no_change_at_all():
    # a Python loop over time cannot see later inputs: the earlier outputs are bit-identical
    result = check_causality(LinearRecurrence, dim=4, seq_len=12)
    assert result.causal and result.first_leak is None
    assert result.max_change == 0.0
    assert result.dtype == "float64"


def test_bidirectional_mixer_leaks_at_position_zero():
    result = check_causality(Bidirectional, dim=4, seq_len=12)
    assert not result.causal
    assert (result.first_leak, result.perturbed_after) == (0, 0)
    assert "position 0" in result.message


def test_a_leak_only_in_float32_is_caught():
    result = check_causality(LeaksInFloat32, dim=4, seq_len=12)
    assert not result.causal and result.dtype == "float32" and result.first_leak == 0


@pytest.mark.parametrize("t,k", [(8, 3), (5, 1), (10, 4)])
def test_first_leaking_position_is_t_plus_one_minus_k(t, k):
    # y_s depends on x_{s+k}; perturbing the inputs after t first moves output t + 1 - k
    result = check_causality(PeekAhead, dim=3, seq_len=16, positions=[t], mixer_kwargs={"k": k})
    assert not result.causal
    assert result.first_leak == t + 1 - k and result.perturbed_after == t


# -- contract ----------------------------------------------------------------------------
def test_contract_accepts_an_honest_mixer():
    assert check_contract(LinearRecurrence, dim=4, seq_len=8).ok


@pytest.mark.parametrize("cls,field", [(BatchMixing, "batch_independent"),
                                       (Truncating, "shape_ok"), (Exploding, "finite")])
def test_contract_catches_each_violation(cls, field):
    result = check_contract(cls, dim=4, seq_len=8)
    assert not result.ok and getattr(result, field) is False
    assert result.problems


def test_contract_catches_a_changed_dtype():
    class Doubling(nn.Module):
        def __init__(self, dim):
            super().__init__()

        def forward(self, x):
            return x.double()

    result = check_contract(Doubling, dim=4, seq_len=8)
    assert not result.dtype_ok


# -- state audit -------------------------------------------------------------------------
@pytest.mark.parametrize("dim,n", [(4, 12), (3, 7), (8, 5)])
def test_audit_measures_the_state_of_a_linear_recurrence(dim, n):
    result = audit_state(LinearRecurrence, dim, {"state": n})
    assert result.measured_state == n
    assert result.ok and result.informative and not result.saturated


def test_audit_measures_a_nonlinear_recurrence():
    result = audit_state(GatedRecurrence, 4, {"state": 10})
    assert result.measured_state == 10 and result.ok


def test_audit_flags_an_under_declared_recurrence():
    # the automatic split (2 + 2 positions of 4) sees 8 > 6 and stops there (saturated) ...
    result = audit_state(LinearRecurrence, 4, {"state": 12, "declared": 6})
    assert result.ok is False and result.informative and result.saturated
    assert result.measured_state == 8
    assert "UNDER-DECLARED" in result.message
    # ... a longer split measures all 12
    longer = audit_state(LinearRecurrence, 4, {"state": 12, "declared": 6}, prefix=5, suffix=5)
    assert longer.measured_state == 12 and longer.ok is False


def test_audit_counts_short_convolution_caches():
    # width-3 depthwise convolution: the last 2 inputs of each of 5 channels cross the split
    honest = audit_state(ShortConv, 5)
    assert honest.measured_state == 2 * 5 and honest.ok
    hidden = audit_state(ShortConv, 5, {"declare_cache": False}, prefix=3, suffix=3)
    assert hidden.measured_state == 10 and hidden.ok is False


def test_softmax_attention_declaring_64_is_caught():
    result = audit_state(SoftmaxAttention, 16)
    assert result.informative and result.ok is False
    assert result.measured_state > 64


def test_audit_refuses_state_hidden_from_autograd():
    # the detached running sum carries 4 numbers across the split, yet the Jacobian is 0
    result = audit_state(DetachedSum, 4)
    assert result.measured_state == 0
    assert result.gradient_ok is False and result.ok is False
    assert "finite differences" in result.message
    assert audit_state(LinearRecurrence, 4).gradient_error < 1e-8


def test_audit_of_an_undeclared_mixer_reports_a_measurement():
    class Undeclared(LinearRecurrence):
        state_size = None

    result = audit_state(Undeclared, 4, {"state": 6})
    assert result.declared_state is None and result.ok is None
    assert result.measured_state == 6


class ZeroReadout(LinearRecurrence):
    """The linear recurrence of n distinct decays (state exactly n) with its readout C
    zero-initialized, as fla's RWKV7Attention zeroes o_proj: the output is identically zero
    as built, and any C that training reaches reads out all n states."""

    def __init__(self, dim, state=6, declared=None, zero=True):
        super().__init__(dim, state, declared)
        if zero:
            self.C.data.zero_()


class UndeclaredZeroReadout(ZeroReadout):
    state_size = None


@pytest.mark.parametrize("dim,n", [(4, 6), (3, 7)])
def test_audit_sees_the_state_behind_a_zero_initialized_readout(dim, n):
    # as built the Jacobian across the split is exactly zero (what the audit measured before)
    built = UndeclaredZeroReadout(dim, n)
    x = torch.randn(1, 16, dim, dtype=torch.float64)
    jac = torch.autograd.functional.jacobian(lambda u: built.double()(u)[:, 8:], x)
    assert not jac.any()
    result = audit_state(UndeclaredZeroReadout, dim, {"state": n})
    assert result.declared_state is None and result.ok is None
    assert (result.measured_state, result.measured_as_built, result.perturbed) == (n, 0, True)
    assert f"measured state {n} (at perturbed weights; 0 as built)" in result.message
    assert result.to_dict()["measured_as_built"] == 0 and result.to_dict()["perturbed"]


def test_audit_of_a_readout_already_generic_is_not_raised_by_perturbation():
    result = audit_state(UndeclaredZeroReadout, 4, {"state": 6, "zero": False})
    assert (result.measured_state, result.measured_as_built, result.perturbed) == (6, 6, False)
    assert "perturbed" not in result.message


def test_a_zeroed_readout_is_held_to_its_declared_state():
    honest = audit_state(ZeroReadout, 4, {"state": 6})
    assert honest.ok and honest.informative and honest.measured_state == 6
    assert honest.perturbed and honest.measured_as_built == 0
    # declaring 5 splits after 2 positions of 4 (8 > 5 inputs): the 6 states all cross it
    under = audit_state(ZeroReadout, 4, {"state": 6, "declared": 5})
    assert under.ok is False and under.informative and under.measured_state == 6
    assert "UNDER-DECLARED: measured 6 (at perturbed weights; 0 as built)" in under.message


class FragileGain(LinearRecurrence):
    """The linear recurrence (random readout, state n) scaled by sqrt(gain), gain = 1e-3 per
    channel: the audit's perturbation (noise of 0.02 on a constant) makes some gains negative,
    so the perturbed outputs are NaN (or, with ``strict``, the forward pass raises)."""

    def __init__(self, dim, state=6, strict=False):
        super().__init__(dim, state)
        self.gain = nn.Parameter(torch.full((dim,), 1e-3))
        self.strict = strict

    def forward(self, x):
        if self.strict and bool((self.gain < 0).any()):
            raise ValueError("gain must be positive")
        return super().forward(x) * self.gain.sqrt()


@pytest.mark.parametrize("strict,why", [(False, "non-finite"), (True, "ValueError")])
def test_audit_falls_back_to_the_weights_as_built_when_perturbed_ones_break(strict, why):
    from madbench.checks.state_audit import perturbed_copy

    assert (perturbed_copy(FragileGain(4).double()).gain < 0).any()  # the premise
    result = audit_state(FragileGain, 4, {"state": 6, "strict": strict})
    assert result.ok and result.gradient_ok
    assert (result.measured_state, result.measured_as_built, result.perturbed) == (6, 6, None)
    assert why in result.perturbed_failure and "as built only" in result.message


def test_perturbed_copy_is_seeded_and_leaves_buffers_and_frozen_parameters():
    from madbench.checks.state_audit import PERTURBATION_FLOOR, perturbed_copy

    model = ZeroReadout(4, 6).double()
    model.register_buffer("mask", torch.zeros(3, dtype=torch.float64))
    model.B.requires_grad_(False)
    one, two = perturbed_copy(model, seed=3), perturbed_copy(model, seed=3)
    assert all(torch.equal(a, b) for a, b in zip(one.parameters(), two.parameters()))
    assert not torch.equal(one.C, perturbed_copy(model, seed=4).C)
    assert torch.equal(one.B, model.B) and not one.mask.any() and not model.C.any()
    # a zero tensor gets the floor; a spread one half its std
    assert abs(float(one.C.detach().std()) / PERTURBATION_FLOOR - 1) < 0.5
    spread = float(model.decay.detach().std())
    assert abs(float((one.decay - model.decay).detach().std()) / (0.5 * spread) - 1) < 0.7



def test_perturbed_copy_keeps_ties_and_perturbs_complex_parameters():
    """A parameter shared by two modules stays one tensor in the copy (perturbed once, both
    modules see the same values); a complex parameter gets complex noise (both parts move)."""
    from madbench.checks.state_audit import perturbed_copy

    model = nn.Module()
    model.a, model.b = nn.Linear(3, 3, bias=False), nn.Linear(3, 3, bias=False)
    model.b.weight = model.a.weight                                   # tied
    model.z = nn.Parameter(torch.ones(4, dtype=torch.complex128))
    copy = perturbed_copy(model, seed=1)
    assert copy.a.weight is copy.b.weight
    assert not torch.equal(copy.a.weight, model.a.weight)
    assert (copy.z.real != 1).all() and (copy.z.imag != 0).all()

# -- whole architectures -----------------------------------------------------------------
class Crashing(nn.Module):
    def __init__(self, dim):
        super().__init__()
        self.proj = nn.Linear(dim + 1, dim)

    def forward(self, x):
        return self.proj(x)


class ToyPlugin:
    @madbench.hookimpl
    def madbench_register_mixers(self, register):
        register("toy-recurrence", LinearRecurrence, shorthand="Tr")
        register("toy-crash", Crashing)
        register("toy-under", LinearRecurrence, defaults={"declared": 4})
        register("toy-bidir", Bidirectional)
        register("toy-id", ShortConv, kind="channel")
        register("toy-zero-readout", UndeclaredZeroReadout)


def _spec(*names):
    return ArchitectureSpec("toy", tuple(LayerSpec(n) for n in names), dim=8)


def test_guard_passes_a_causal_architecture(register_plugin):
    register_plugin(ToyPlugin(), "toy")
    report = guard_architecture(_spec("toy-recurrence", "toy-recurrence"), seq_len=12)
    assert report["causal"] and report["contract_ok"] and not report["failures"]
    assert report["model"]["causal"]


def test_guard_refuses_a_bidirectional_layer_naming_it(register_plugin):
    register_plugin(ToyPlugin(), "toy")
    with pytest.raises(CheckFailed) as info:
        guard_architecture(_spec("toy-recurrence", "toy-bidir"), seq_len=12)
    message = str(info.value)
    assert "layer 1 (toy-bidir" in message and "position 0" in message
    assert "\n" not in message
    report = guard_architecture(_spec("toy-recurrence", "toy-bidir"), seq_len=12,
                                raise_on_failure=False)
    assert not report["causal"] and not report["model"]["causal"]
    assert [l["causality"]["causal"] for l in report["layers"]] == [True, False]


def test_guard_refuses_a_crashing_layer_in_one_line(register_plugin):
    register_plugin(ToyPlugin(), "toy")
    with pytest.raises(CheckFailed, match=r"^layer 1 \(toy-crash.*fails to run.*RuntimeError"):
        guard_architecture(_spec("toy-recurrence", "toy-crash"), seq_len=8)


def test_audit_architecture_flags_the_under_declared_layer(register_plugin):
    register_plugin(ToyPlugin(), "toy")
    audit = audit_architecture(_spec("toy-recurrence", "toy-id", "toy-under"))
    assert [l["index"] for l in audit["layers"]] == [0, 2]  # channel mixers are not audited
    assert audit["state_ok"] is False
    # the under-declared layer is split after one position of 8 inputs: enough to see 8 > 4
    assert [l["measured_state"] for l in audit["layers"]] == [12, 8]
    assert audit["declared_state"] == 12 + 4 and audit["measured_state"] == 12 + 8
    (failure,) = state_failures(audit)
    assert failure.startswith("layer 2 (toy-under")


def test_an_undeclared_zero_readout_is_accounted_its_full_state(register_plugin):
    # the state madbench accounts for a layer without state_size is the audit's measurement:
    # 6 (the recurrence's), not the 0 its zero readout shows as built
    from madbench.verdict import measured_state_note

    register_plugin(ToyPlugin(), "toy")
    spec = _spec("toy-zero-readout", "toy-id")
    (layer,) = audit_architecture(spec)["layers"]
    assert (layer["measured_state"], layer["measured_as_built"], layer["perturbed"]) == (6, 0, True)
    assert "layer 0 (toy-zero-readout) 6;" in measured_state_note(spec, 4096)


# -- the conformance helpers -------------------------------------------------------------
def test_check_mixer_passes_an_honest_mixer_and_returns_results():
    results = check_mixer(LinearRecurrence, dim=4, state=6)
    assert results["audit"]["measured_state"] == 6 and results["causality"]["causal"]


def test_conformance_helpers_raise_assertion_errors():
    with pytest.raises(AssertionError, match="not causal"):
        assert_causal(Bidirectional, dim=4)
    with pytest.raises(AssertionError, match="UNDER-DECLARED"):
        assert_state_declared(LinearRecurrence, dim=4, mixer_kwargs={"declared": 3})
    with pytest.raises(AssertionError, match="declares no state_size"):
        check_mixer(PeekAhead, dim=4, k=0)


class NeedsMask(nn.Module):
    """A forward with the wrong signature: forward(x, mask)."""

    def __init__(self, dim):
        super().__init__()

    def forward(self, x, mask):
        return x


def test_a_forward_that_cannot_be_called_is_an_assertion_error_too():
    """check_mixer's docs promise AssertionError; forward(x, mask) raised a bare TypeError."""
    from madbench.testing import assert_contract
    for helper in (check_mixer, assert_contract):
        with pytest.raises(AssertionError) as caught:
            helper(NeedsMask, dim=4)
        assert str(caught.value) == (
            "NeedsMask fails to run forward(x) on a float32 (batch, 16, 4) input: TypeError: "
            "NeedsMask.forward() missing 1 required positional argument: 'mask'")


def test_testing_module_does_not_import_pytest():
    code = "import sys, madbench.testing; print('pytest' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == "False"


# -- the bundled sequence mixers ---------------------------------------------------------
#: Small configurations (width, kwargs) that keep the audit fast: state shrinks with them.
SMALL = {
    "attention": (8, {}), "mh-attention": (32, {}),
    "sliding-attention": (8, {"window": 4}), "mh-sliding-attention": (32, {"window": 4}),
    "linear-attention": (8, {}), "mh-linear-attention": (32, {}),
    "gated-linear-attention": (8, {}), "mh-gated-linear-attention": (16, {}),
    "hyena": (8, {"inner_factor": 1, "filter_order": 2}), "mh-hyena": (16, {"heads": 8}),
    "hyena-experts": (8, {"expert_width": 2, "experts": 4, "filter_order": 2}),
    "hyena-modal": (8, {"modes": 2}), "mh-hyena-modal": (32, {}),
    "hyena-experts-modal": (8, {"expert_width": 2, "modes": 2}), "mamba": (8, {}),
    "deltanet": (8, {"num_heads": 2}), "gated-deltanet": (8, {"num_heads": 2}),
    "mamba2": (8, {"head_dim": 4, "expand": 1}), "rwkv7": (8, {"head_dim": 4}),
}
#: Layers whose state is declared by a convention (implicit filters): the audit measures and
#: reports them, it does not pass or fail them.
BY_CONVENTION = {"hyena", "mh-hyena", "hyena-experts"}


def test_every_bundled_sequence_mixer_has_a_small_configuration():
    bundled = {n for n, e in get_registry().mixers.items()
               if e.plugin == "reference-layers" and e.metadata.get("kind") == "sequence"}
    assert bundled == set(SMALL)


@pytest.mark.parametrize("name", sorted(SMALL))
def test_bundled_sequence_mixer_is_causal_and_declares_enough_state(name):
    dim, kwargs = SMALL[name]

    def factory(d):
        return build_mixer(LayerSpec(name, kwargs), d)

    assert check_contract(factory, dim, seq_len=12).ok
    causality = check_causality(factory, dim, seq_len=12)
    assert causality.causal, causality.message
    audit = audit_state(factory, dim)
    if name in BY_CONVENTION:
        assert audit.ok is None and audit.convention and audit.measured_state > 0
        return
    assert audit.ok, audit.message
    assert audit.informative or "attention" in name and "sliding" not in name


def test_the_layer_tests_causality_oracle_catches_a_leak_and_a_layer_that_ignores_input():
    """``helpers.assert_causal_prefixes``, the property the layer tests share (independent of
    madbench.checks): a mixer whose output at t is the input at t + 1 fails it, as does one
    whose later outputs do not move when later inputs do; a running sum passes."""
    from helpers import assert_causal_prefixes
    x = torch.randn(2, 8, 4, dtype=torch.float64)
    with pytest.raises(AssertionError):
        assert_causal_prefixes(lambda x: torch.roll(x, -1, dims=1), x, (3,))
    with pytest.raises(AssertionError):
        assert_causal_prefixes(torch.zeros_like, x, (3,))
    torch.testing.assert_close(assert_causal_prefixes(lambda x: x.cumsum(1), x, (0, 3, 6)),
                               x.cumsum(1))
