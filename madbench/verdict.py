"""One verdict on an architecture's accounting, shared by ``madbench eval`` (which refuses or
flags before training), ``madbench check``, ``madbench arch describe`` and ``madbench leaderboard
submit``, so that the four never disagree:

- **iso-state**: a model without attention must carry the target total fixed state (4,096, the
  paper's App. B.3), within ``state_tolerance``; one that misses it (or whose state is unknown)
  is *refused* unless ``allow_state_mismatch``, and then flagged ``state-mismatch``. Models with
  attention (dynamic state) are not normalised: the rule does not apply. A layer that declares
  no ``state_size`` is measured by the state audit instead (a lower bound), and the model is
  flagged ``state-measured``, not refused.
- **parameters**: non-embedding parameters more than ``param_tolerance`` away from the
  mA-Sg-mA-Sg baseline are flagged ``param-mismatch`` (never refused).

Causality (``madbench.checks.guard_architecture``) is a separate check that refuses on its own.
"""
from __future__ import annotations

from typing import Any

from .accounting import (PARAM_TOLERANCE, REFERENCE_ARCHITECTURE, STATE_TARGET,
                         check_iso_state, describe_architecture, has_dynamic_state,
                         param_ratio, param_ratio_flagged)

#: where the verdict counts (dynamic state is reported at this length)
SEQ_LEN = 128
VOCAB_SIZE = 16


def architecture_verdict(spec: Any, seq_len: int = SEQ_LEN, vocab_size: int = VOCAB_SIZE,
                         state_target: int = STATE_TARGET, state_tolerance: float = 0.0,
                         param_tolerance: float = PARAM_TOLERANCE,
                         allow_state_mismatch: bool = False) -> dict:
    """``description`` (``describe_architecture``), ``iso_state`` (ok, applies, message,
    target, tolerance), ``param_ratio`` (value, reference, tolerance, flagged), ``flags`` and
    ``refusal``: the one-line reason ``madbench eval`` refuses the architecture, or None."""
    description = describe_architecture(spec, seq_len, vocab_size)
    measured = description["fixed_state"] is None and description["dynamic_state"] is None
    if measured:       # some layer declares no state_size: measured, flagged, not refused
        ok, message = True, measured_state_note(spec, state_target)
    else:
        ok, message = check_iso_state(description, state_target, state_tolerance)
    ratio = param_ratio(description)
    flagged = param_ratio_flagged(ratio, param_tolerance)
    flags = ((["state-measured"] if measured else []) + (["state-mismatch"] if not ok else [])
             + (["param-mismatch"] if flagged else []))
    refusal = None
    if not ok and not allow_state_mismatch:
        refusal = (f"{message} (use --allow-state-mismatch to evaluate anyway; the result is "
                   "then flagged)")
    return {"description": description,
            "iso_state": {"ok": ok, "applies": not has_dynamic_state(description),
                          "message": message, "target": state_target,
                          "tolerance": state_tolerance},
            "param_ratio": {"value": ratio, "reference": REFERENCE_ARCHITECTURE,
                            "tolerance": param_tolerance, "flagged": flagged},
            "flags": flags, "refusal": refusal}


def measured_state_note(spec: Any, state_target: int) -> str:
    """For layers that declare no ``state_size``: what the state audit measures instead (a
    lower bound, ``madbench.checks.audit_architecture``)."""
    from .checks import audit_architecture
    audit = audit_architecture(spec)
    parts = [f"layer {l['index']} ({l['mixer']}) {l['measured_state']:,}"
             + (" or more (saturated)" if l["saturated"] else "")
             for l in audit["layers"] if l["declared_state"] is None]
    return ("state not declared (no state_size); measured by the audit: " + ", ".join(parts)
            + f"; iso-state (target {state_target:,}) is not verified")


def verdict_lines(verdict: dict) -> list[str]:
    """The verdict as printed by ``arch describe`` and ``check``."""
    ratio = verdict["param_ratio"]
    iso = verdict["iso_state"]
    state = "n/a" if not iso["applies"] else "ok" if iso["ok"] else "MISMATCH"
    flag = "  FLAGGED (param-mismatch)" if ratio["flagged"] else ""
    return [f"param ratio vs {ratio['reference']}: {ratio['value']:.2f} "
            f"(tolerance +-{ratio['tolerance']:.0%}){flag}",
            f"iso-state: {state}: {iso['message']}"]
