"""Check 6 of ``validate``: the architecture, rebuilt here. Its hash is recomputed from its
spec and sources; when ``trust`` vouches for its code (or ``trust_code``), the model is built
within the size budgets (``over_budget``), and its accounting, causality guard and state audit
(at a reduced width, ``VALIDATE_AUDIT_DIM``) are re-run and compared with the submission's:
those numbers are claims a submitter could otherwise write in."""
from __future__ import annotations

import functools
import json

import torch

from ..accounting import PARAM_TOLERANCE, STATE_TARGET, describe_architecture
from ..architecture import ArchitectureSpec, architecture_hash, model_hash
from ..budget import VALIDATE_AUDIT_DIM, Budget, BudgetExceeded, Deadline, over
from ..errors import MadbenchError
from ..hashing import canonical_json
from ..model import LanguageModel
from .report import Report, differs, first_line, listed
from .submit import (ACCOUNTING_FIELDS, ACCOUNTING_SEQ_LEN, ACCOUNTING_VOCAB_SIZE,
                     architecture_claims, source_ids)
from .trust import untrusted_mixers

#: the Jacobian cap when a layer cannot be built at ``VALIDATE_AUDIT_DIM``
FALLBACK_AUDIT_MAX_SIZE = 1024


def meta_param_count(spec, vocab_size: int) -> int | None:
    """Parameters of the language model, counted without allocating them (meta device);
    None when a mixer cannot be built there."""
    try:
        with torch.device("meta"):
            model = LanguageModel(spec, vocab_size)
    except Exception:  # noqa: BLE001 - e.g. a mixer that reads tensor values in __init__
        return None
    return sum(p.numel() for p in model.parameters())


@functools.lru_cache(maxsize=16)
def _rebuild_claims(spec_json: str, audit_dim: int) -> dict:
    """Accounting, guard and audit of a spec, computed here (cached per process)."""
    spec = ArchitectureSpec.from_dict(json.loads(spec_json))
    try:
        return {**architecture_claims(spec, audit_dim=audit_dim), "audit_note":
                f"state audit re-run at width {audit_dim} (reduced from the model width "
                f"{spec.dim} to stay fast)"}
    except MadbenchError as exc:
        if "cannot be audited at width" not in str(exc):
            raise
    claims = architecture_claims(spec, audit_max_size=FALLBACK_AUDIT_MAX_SIZE)
    return {**claims, "audit_note": f"state audit re-run with the Jacobian capped at "
            f"{FALLBACK_AUDIT_MAX_SIZE} (a layer does not build at width {audit_dim})"}


#: the input shape of the contract check (``checks.check_contract``): batch x length
CHECK_INPUT = (3, 32)


def over_budget(spec, budget: Budget, deadline: Deadline) -> str | None:
    """Why ``spec`` is too large to check here, or None: the contract check's input size and
    the parameter count (meta device, nothing allocated) first, then forward FLOPs per token
    and state from the accounting."""
    elements = CHECK_INPUT[0] * CHECK_INPUT[1] * spec.dim
    if over(elements, budget.max_check_elements):
        return (f"width {spec.dim}: check inputs of {elements:,} elements, over the budget of "
                f"{budget.max_check_elements:,}")
    with deadline.enforce():
        size = meta_param_count(spec, ACCOUNTING_VOCAB_SIZE)
        if size is not None and over(size, budget.max_params):
            return f"{size:,} parameters, over the budget of {budget.max_params:,}"
        desc = describe_architecture(spec, ACCOUNTING_SEQ_LEN, ACCOUNTING_VOCAB_SIZE)
    if over(desc["params"], budget.max_params):
        return f"{desc['params']:,} parameters, over the budget of {budget.max_params:,}"
    if over(desc["flops_per_token"], budget.max_flops_per_token):
        flops = desc["flops_per_token"]
        return ((f"{flops:.3g} forward FLOPs per token" if flops is not None else
                 "forward FLOPs per token unknown (they could not be counted)")
                + f", over the budget of {budget.max_flops_per_token:.3g}")
    state = (desc["fixed_state"] or 0) + (desc["cache"] or 0)
    if over(state, budget.max_state):
        return f"{state:,} state and cache elements, over the budget of {budget.max_state:,}"
    return None


def _compare_audit(claimed: dict, measured: dict, report: Report) -> bool:
    """The submission's state-audit numbers against the audit re-run here, when both ran with
    the same width and Jacobian cap; otherwise only the verdict is compared (said so).
    Returns whether the numbers were compared."""
    same = (claimed["audit_dim"], claimed["max_size"]) == (measured["audit_dim"],
                                                           measured["max_size"])
    if not same:
        report.warnings.append(
            f"state audit numbers recorded at width {claimed['audit_dim'] or 'of the model'} "
            f"(cap {claimed['max_size']}) are not compared with the re-run at width "
            f"{measured['audit_dim'] or 'of the model'} (cap {measured['max_size']}); its "
            "verdict is")
        return False
    for key in ("declared_state", "measured_state"):
        if claimed[key] != measured[key]:
            report.fail("state_audit", f"checks.state_audit.{key} claims {claimed[key]}, the "
                        f"audit re-run here gives {measured[key]}")
    mine = [[l[k] for k in ("index", "declared_total", "measured_state", "ok")]
            for l in measured["layers"]]
    theirs = [[l[k] for k in ("index", "declared_total", "measured_state", "ok")]
              for l in claimed["layers"]]
    if mine != theirs:
        report.fail("state_audit", "checks.state_audit.layers differ from the audit re-run "
                    f"here (index, declared, measured, ok): claimed {theirs[:2]}, re-run "
                    f"{mine[:2]}")
    return True


def check_architecture(doc: dict, report: Report, audit_dim: int = VALIDATE_AUDIT_DIM,
                       trust_code: bool = False, budget: Budget = Budget()):
    """Returns the rebuilt ArchitectureSpec when the installed code matches, else None.
    Nothing the submission names is imported unless ``trust`` judges it trusted (or
    ``trust_code``)."""
    def not_checked(text: str) -> None:
        """The architecture cannot be checked here: a failure on a board, else a warning."""
        if doc["board"]:
            report.fail("architecture", text)
        else:
            report.warnings.append(text)

    arch = doc["architecture"]
    if arch["spec"]["name"] != arch["name"]:
        report.fail("architecture", "architecture.name differs from architecture.spec.name")
    recomputed = architecture_hash(arch["spec"], arch["sources"])
    if recomputed != arch["hash"]:
        report.fail("architecture", f"architecture.hash {arch['hash']} does not match its spec "
                    f"and sources (they hash to {recomputed})")
    acc = doc["accounting"]
    if acc["state_target"] != STATE_TARGET or acc["param_tolerance"] != PARAM_TOLERANCE:
        report.fail("accounting", f"state target / parameter tolerance must be madbench's "
                    f"{STATE_TARGET} / {PARAM_TOLERANCE}")
    causality, audit = doc["checks"]["causality"], doc["checks"]["state_audit"]
    if not (causality["causal"] and causality["contract_ok"]):
        report.fail("causality", "the submission records a failed causality or contract "
                    "check: " + (causality["failures"][0] if causality["failures"] else "?"))
    if not audit["state_ok"]:
        report.fail("state_audit", "the submission records a failed state audit")
    untrusted = [] if trust_code else untrusted_mixers(arch)
    if untrusted:
        text = ("not rebuilt (untrusted code): " + "; ".join(v.reason for v in untrusted[:2])
                + (f" (and {len(untrusted) - 2} more)" if len(untrusted) > 2 else "")
                + ". Only bundled layers and installed plugin distributions named in the "
                "submission with their versions are imported; accounting, causality, state "
                "audit and re-runs are not checked (--trust-code imports it)")
        not_checked(text)
        return None
    try:
        spec = ArchitectureSpec.from_dict(arch["spec"])
        installed = source_ids(spec)
    except Exception as exc:  # noqa: BLE001 - any import failure (a sys.exit() included)
        not_checked(f"architecture not importable here ({first_line(exc)}): accounting, "
                    "causality and state audit not re-checked")
        return None
    if installed != sorted(set(arch["sources"])):
        diff = sorted(set(installed) ^ set(arch["sources"]))
        report.fail("architecture", "the installed mixer code differs from the submission's "
                    f"({listed(diff)}); install the version the runs were made with")
        return None
    if spec.hash != arch["hash"]:
        report.fail("architecture", f"the installed architecture hashes to {spec.hash}")
        return None
    try:
        report.model_hash = model_hash(spec)
    except Exception as exc:  # noqa: BLE001 - only the duplicate rule needs it
        report.warnings.append(f"the model hash could not be computed ({first_line(exc)}): "
                               "duplicates are found by the architecture hash alone")
    deadline = Deadline(budget.check_seconds, "rebuilding and checking the architecture")
    try:
        problem = over_budget(spec, budget, deadline)
        if problem:
            report.fail("budget", f"{problem}: refused before building it; claims cannot be "
                        "checked")
            return None
        with deadline.enforce():
            claims = _rebuild_claims(canonical_json(arch["spec"]), audit_dim)
    except BudgetExceeded as exc:
        report.fail("budget", f"{exc}; claims cannot be checked")
        return None
    except MadbenchError as exc:
        report.fail("causality", f"the architecture fails to build or run here: {exc}")
        return None
    mine = claims["accounting"]
    if (acc["seq_len"], acc["vocab_size"]) != (mine["seq_len"], mine["vocab_size"]):
        report.fail("accounting", f"accounting is at (seq_len, vocab_size) = "
                    f"({acc['seq_len']}, {acc['vocab_size']}); madbench counts at "
                    f"({mine['seq_len']}, {mine['vocab_size']})")
    else:
        for key in ACCOUNTING_FIELDS:
            if acc[key] != mine[key]:
                report.fail("accounting", f"accounting.{key} claims {acc[key]}, the "
                            f"architecture built here has {mine[key]}")
        if differs(acc["param_ratio"], mine["param_ratio"]):
            report.fail("accounting", f"accounting.param_ratio claims {acc['param_ratio']!r}, "
                        f"recomputed {mine['param_ratio']!r}")
        if acc["iso_state_ok"] != mine["iso_state_ok"]:
            report.fail("accounting", f"accounting.iso_state_ok claims {acc['iso_state_ok']}, "
                        f"but: {mine['iso_state_message']}")
    if sorted(doc["flags"]) != sorted(claims["flags"]):
        report.fail("accounting", f"flags are {doc['flags']}, the checks give "
                    f"{claims['flags']}")
    guard = claims["checks"]["causality"]
    if not guard["causal"] or not guard["contract_ok"]:
        report.fail("causality", "causality guard re-run here: " +
                    (guard["failures"][0] if guard["failures"] else "failed"))
    rerun_audit = claims["checks"]["state_audit"]
    compared = _compare_audit(audit, rerun_audit, report)
    if not rerun_audit["state_ok"]:
        bad = [l for l in rerun_audit["layers"] if l["ok"] is False]
        report.fail("state_audit", "state audit re-run here: " +
                    (f"layer {bad[0]['index']} ({bad[0]['mixer']}): {bad[0]['message']}"
                     if bad else "failed"))
    report.checks += ["architecture hash and sources", "accounting recounted",
                      "causality guard re-run", claims["audit_note"] + (
                          ": its numbers compared" if compared else
                          ": its verdict compared, not its numbers")]
    return spec
