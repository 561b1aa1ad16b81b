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

Causality (``madbench.checks.guard_architecture``) is a separate check that refuses on its own;
``architecture_checks`` is the gate ``madbench eval`` passes before training: buildable, causal
(``causality_gate``, which ``madbench scaling run`` and ``scaling validate`` apply too), then
this verdict.
"""
from __future__ import annotations

from typing import Any

from .accounting import (PARAM_TOLERANCE, REFERENCE_ARCHITECTURE, STATE_TARGET,
                         check_iso_state, describe_architecture, has_dynamic_state,
                         param_ratio, param_ratio_flagged)
from .architecture import build_mixer
from .checks import audit_architecture, guard_lengths
from .errors import CheckFailed, MadbenchError, UsageError

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
    measured = "state-measured" in verdict["flags"]
    state = ("n/a" if not iso["applies"] else "UNVERIFIED" if measured
             else "ok" if iso["ok"] else "MISMATCH")
    flag = "  FLAGGED (param-mismatch)" if ratio["flagged"] else ""
    return [f"param ratio vs {ratio['reference']}: {ratio['value']:.2f} "
            f"(tolerance +-{ratio['tolerance']:.0%}){flag}",
            f"iso-state: {state}: {iso['message']}"]


def flags_note(checks: dict) -> str | None:
    """What ``madbench eval`` says before training an architecture its gate flags (the
    ``checks`` of ``architecture_checks``), or None: the flags a result will carry, known
    before the runs rather than after them."""
    if not checks["flags"]:
        return None
    named = [f"param-mismatch (non-embedding parameters {checks['param_ratio']:.2f}x those of "
             f"{REFERENCE_ARCHITECTURE}, beyond +-{checks['param_tolerance']:.0%})"
             if flag == "param-mismatch" else flag for flag in checks["flags"]]
    return (f"Note: the results will be flagged {', '.join(named)}; flags inform, they do not "
            "stop the run ('madbench check' with the same options explains them)")


#: the sequence length every causality check runs at; eval adds the longest it trains
GUARD_LENGTH = 32


def guard_lengths_for(jobs) -> set[int]:
    """The lengths eval checks causality at before training ``jobs``: GUARD_LENGTH and the
    longest sequence the jobs train on."""
    return {GUARD_LENGTH, max((job.effective.seq_len for job in jobs), default=GUARD_LENGTH)}


#: the longest sequence a dry run checks causality at (the longest of the MAD tasks: eval's dry
#: run checks every length its run does). The check grows with the square of the length (36 s
#: at 8,192 tokens for the smallest Transformer++ on a 2-core CPU), so a longer one is left to
#: the run, which checks it before it trains.
DRY_RUN_MAX_LENGTH = 1024


def dry_run_lengths(lengths, dry_run: bool) -> tuple[set[int], set[int]]:
    """``lengths`` split into those causality is checked at now and those left to the run
    (``not_checked_line``): a dry run checks up to ``DRY_RUN_MAX_LENGTH``, a run all."""
    lengths = set(lengths)
    checked = {n for n in lengths if not dry_run or n <= DRY_RUN_MAX_LENGTH}
    return checked, lengths - checked


def not_checked_line(lengths) -> str:
    """What a dry run says of the ``lengths`` it did not check causality at."""
    at = ", ".join(f"{n:,}" for n in sorted(lengths))
    return (f"dry run: causality and the mixer contract not checked at {at} tokens (a dry run "
            f"checks up to {DRY_RUN_MAX_LENGTH:,}): the run checks there before it trains")


def eval_outcome(guard: dict, verdict: dict) -> str:
    """What ``madbench eval`` does with an architecture, given the causality guard's report:
    ``refused``, ``flagged <flags>`` or ``runs``."""
    if not guard["causal"] or not guard["contract_ok"] or verdict["refusal"]:
        return "refused"
    return "flagged " + ", ".join(verdict["flags"]) if verdict["flags"] else "runs"


def check_buildable(spec: Any) -> None:
    """Every layer constructs with its kwargs; else a usage error naming the layer (one line,
    before any check or training runs)."""
    import torch

    for index, layer in enumerate(spec.layers):
        try:
            with torch.random.fork_rng(devices=[]):
                build_mixer(layer, spec.dim)
        except MadbenchError:
            raise
        except Exception as exc:  # noqa: BLE001 - a constructor of any kind may refuse
            raise UsageError(f"layer {index} ({layer.mixer}) cannot be built with kwargs "
                             f"{dict(layer.kwargs)}: {type(exc).__name__}: {exc}"
                             .splitlines()[0]) from None


def causality_gate(spec: Any, lengths=(GUARD_LENGTH,)) -> dict:
    """Every layer builds (else UsageError), then the causality guard and the mixer contract
    pass at every length of ``lengths`` (else CheckFailed naming the first failure); returns
    the guard's report. Eval's gate before its verdict; ``madbench scaling run`` and ``scaling
    validate`` apply it alone."""
    check_buildable(spec)
    return guard_lengths(spec, lengths)


def architecture_checks(spec: Any, allow_state_mismatch: bool = False,
                        state_target: int = STATE_TARGET,
                        param_tolerance: float = PARAM_TOLERANCE,
                        lengths=(GUARD_LENGTH,)) -> dict:
    """The gate of ``madbench eval``, before any training: every layer builds, the causality
    guard passes at every length of ``lengths`` (eval: ``guard_lengths_for`` its sweep), then
    ``architecture_verdict``. Returns the checks every record stores.

    Raises CheckFailed when the architecture leaks future tokens, or misses the state target
    without ``allow_state_mismatch`` (then the result is flagged ``state-mismatch``)."""
    guard = causality_gate(spec, lengths)
    verdict = architecture_verdict(spec, state_target=state_target,
                                   param_tolerance=param_tolerance,
                                   allow_state_mismatch=allow_state_mismatch)
    if verdict["refusal"]:
        raise CheckFailed(verdict["refusal"])
    desc = verdict["description"]
    return {"causal": guard["causal"], "iso_state": verdict["iso_state"],
            "param_ratio": verdict["param_ratio"]["value"], "param_tolerance": param_tolerance,
            "flags": verdict["flags"],
            "accounting": {k: desc.get(k) for k in ("params", "non_embedding_params",
                                                    "active_params", "fixed_state",
                                                    "dynamic_state", "cache")}}
