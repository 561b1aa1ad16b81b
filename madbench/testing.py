"""Conformance checks for mixer authors, to call from your own pytest suite.

Plain functions that raise ``AssertionError`` with a readable message; importing this module
registers nothing with pytest (it is not a pytest11 plugin)::

    from madbench.testing import check_mixer

    def test_my_mixer_conforms():
        check_mixer(MyMixer, dim=16, state=8)   # constructor kwargs after dim

Keep ``dim`` small (16-32) so the state audit stays fast: its cost grows with the cube of the
declared state. ``check_mixer`` runs the shape contract (shape, dtype, finite outputs, batch
independence), the causality check and the state audit; ``assert_causal`` and
``assert_state_declared`` run one each.
"""
from __future__ import annotations

from typing import Any

from .checks import (AuditResult, CausalityResult, MixerLike, as_module, audit_state,
                     check_causality, check_contract, declared_state)
from .checks._common import one_line


def _name(mixer: MixerLike) -> str:
    cls = mixer if isinstance(mixer, type) else type(mixer)
    return getattr(cls, "__qualname__", repr(mixer))


def _contract(mixer: MixerLike, module, dim: int, seq_len: int):
    """``check_contract`` of the built ``module``; a forward that raises (a wrong signature,
    a shape it cannot take) is an AssertionError naming the call, as eval's check names it."""
    try:
        return check_contract(module, dim, seq_len)
    except Exception as exc:  # noqa: BLE001 - any failure of the forward is the finding
        raise AssertionError(f"{_name(mixer)} fails to run forward(x) on a float32 (batch, "
                             f"{seq_len}, {dim}) input: {one_line(exc)}") from exc


def assert_contract(mixer: MixerLike, dim: int = 16, seq_len: int = 16,
                    mixer_kwargs: dict | None = None) -> None:
    """Output shape and dtype equal the input's, outputs finite, batch elements independent."""
    result = _contract(mixer, as_module(mixer, dim, mixer_kwargs), dim, seq_len)
    assert result.ok, f"{_name(mixer)} breaks the mixer contract: {result.message}"


def assert_causal(mixer: MixerLike, dim: int = 16, seq_len: int = 16,
                  positions: list[int] | None = None, atol: float | None = None,
                  mixer_kwargs: dict | None = None) -> CausalityResult:
    """Outputs up to t must not change when inputs after t do (several t)."""
    result = check_causality(mixer, dim, seq_len, positions, atol, mixer_kwargs=mixer_kwargs)
    assert result.causal, f"{_name(mixer)} is {result.message}"
    return result


def assert_state_declared(mixer: MixerLike, dim: int = 16, mixer_kwargs: dict | None = None,
                          require_fixed: bool = False, **audit_kwargs: Any) -> AuditResult:
    """The mixer declares ``state_size(seq_len)`` and the measured state (Jacobian rank across
    a split point) does not exceed ``state_size + cache_size``. With ``require_fixed``, the
    declared state must also be the same at every length (a fixed-state mixer)."""
    module = as_module(mixer, dim, mixer_kwargs)
    long_state, _ = declared_state(module, 8192)
    assert long_state is not None, (f"{_name(mixer)} declares no state_size(seq_len): add one "
                                    "(kv-cache included for attention)")
    if require_fixed:
        other, _ = declared_state(module, 16384)
        assert other == long_state, (f"{_name(mixer)} state_size grows with seq_len "
                                     f"({long_state} at 8192, {other} at 16384)")
    result = audit_state(module, dim, **audit_kwargs)
    assert result.ok, f"{_name(mixer)}: {result.message}"
    return result


def check_mixer(mixer: MixerLike, dim: int = 16, seq_len: int = 16,
                **mixer_kwargs: Any) -> dict:
    """Run every check on ``mixer`` (a class or factory built as ``mixer(dim, **mixer_kwargs)``,
    or a module of width ``dim``); raise AssertionError on the first failure. Returns the
    results: ``{"contract", "causality", "audit"}`` as dicts."""
    module = as_module(mixer, dim, mixer_kwargs)
    contract = _contract(mixer, module, dim, seq_len)
    assert contract.ok, f"{_name(mixer)} breaks the mixer contract: {contract.message}"
    causality = assert_causal(module, dim, seq_len)
    audit = assert_state_declared(module, dim)
    return {"contract": contract.to_dict(), "causality": causality.to_dict(),
            "audit": audit.to_dict()}
