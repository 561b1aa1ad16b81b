"""Validating a scaling submission: recompute what can be recomputed, check the IsoFLOP curves,
and compare the frontier with the stored ones.

A submission is a JSON file ``{"arch": NAME, "corpus": NAME, "corpus_sha256": HEX,
"family": FAMILY?, "seq_len": L?, "runs": [...] | "runs.parquet"}`` or directly a runs table
(Parquet or CSV, such as the ``isoflop.parquet`` that ``madbench scaling run`` writes). Each
run needs ``params``, ``tokens``, ``flops``, ``loss`` and its architecture: an
``architecture`` spec (``{"name", "dim", "layers": [{"mixer", "kwargs"}]}``, the records'
column) or ``width`` and ``depth`` of the submission's ``family``; ``seq_len`` per run or for
the whole submission; ``budget`` optional (else runs are grouped by FLOPs). A table named by
the JSON file is one of the submission's folder (``_table_beside``); a spec, or its JSON text,
is read and checked as a board entry's (``run_spec``).

Checks, each failure a reason for an invalid verdict:

1. **FLOPs**: declared FLOPs against 3 x the analytic forward FLOPs per token of the declared
   architecture x tokens; a declared count more than ``flops_tolerance`` below is *understated*
   (above: *overstated*). Total parameters are recounted the same way. Every architecture
   rebuilt here passes ``madbench scaling run``'s causality check (``plan.check_causal``).
2. **IsoFLOP curves**: every budget group needs 3 or more sizes, a convex parabola in ln N and
   its vertex inside the sampled sizes.
3. **Stored frontiers** (same corpus hash and architecture name): at every budget inside the
   stored range, the submission's compute-optimal loss must lie inside the stored bootstrap band
   widened by ``band_tolerance``, and no single run may lie below the band's lower edge (no
   model beats the compute-optimal loss of its own architecture). Frontiers of other
   architectures on the same corpus are compared for information (ratio), without a verdict.

Validation runs no code the submission chooses: a mixer is rebuilt (for FLOPs and parameters)
only when ``madbench.leaderboard.trust`` trusts it (bundled layers; installed plugin
distributions named, with their versions, in the submission's ``distributions`` list, as board
entries name them). An untrusted mixer makes the submission invalid unless ``trust_code`` (the
CLI's ``--trust-code``); even then nothing is imported from the working directory implicitly.

A warning, not a failure: with 4 or more points in a group, an interior point (not the smallest
or largest size) more than ``CURVE_TOLERANCE`` away from the parabola through the others is
*off its IsoFLOP curve*. Real curves are only roughly parabolic at small scale (a one-layer model
next to a two-layer one), so this flags a point for a look rather than refusing it.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..accounting import count_params
from ..architecture import ArchitectureSpec
from ..errors import MadbenchError, UsageError, printable
from ..leaderboard.schema import (InvalidSubmission, load_schema, parse_submission_text,
                                  read_submission, schema_errors)
from ..leaderboard.trust import untrusted_mixers, working_directory_excluded
from ..limits import positive_number
from .fits import GROUP_FACTOR, budget_groups, fit_isoflop_group
from .flops import architecture_flops
from .frontiers import band_at, load_frontiers
from .limits import check_seq_len, check_size
from .plan import VOCAB_SIZE, check_causal, model_skeleton
from .shapes import family_spec
from .table import MalformedTable, budgets_of, by_arch, read_runs

FLOPS_TOLERANCE = 0.02
PARAMS_TOLERANCE = 0.01
CURVE_TOLERANCE = 0.05
BAND_TOLERANCE = 0.02


@dataclass
class Verdict:
    valid: bool = True
    reasons: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    groups: list[dict] = field(default_factory=list)
    comparisons: list[dict] = field(default_factory=list)

    def fail(self, reason: str) -> None:
        self.valid = False
        self.reasons.append(reason)

    def to_dict(self) -> dict:
        return {"valid": self.valid, "reasons": self.reasons, "warnings": self.warnings,
                "notes": self.notes,
                "groups": self.groups, "comparisons": self.comparisons}


@dataclass
class Submission:
    arch: str
    corpus_sha256: str | None
    runs: list[dict[str, Any]]
    family: str | None = None
    seq_len: int | None = None
    vocab_size: int = VOCAB_SIZE
    distributions: list = field(default_factory=list)   #: as a board entry names its plugins


def load_submission(path: str | Path) -> Submission:
    """A submission JSON file, or a runs table (Parquet / CSV, or a run directory) standing for
    one. A file that cannot be opened is a UsageError (exit 2); one that is not a well-formed
    submission (not JSON, NaN, deep nesting, a table that does not parse, a column missing) is
    an ``InvalidSubmission`` (exit 3), read as ``leaderboard validate`` reads its files."""
    path = Path(path)
    if path.suffix.lower() != ".json":
        runs = _submitted_runs(path)
        archs = {str(r["arch"]) for r in runs}
        if len(archs) != 1:
            raise InvalidSubmission(f"{path}: a submission covers one architecture, found "
                                    f"{', '.join(sorted(archs))}")
        shas = {r.get("corpus_sha256") for r in runs}
        return Submission(archs.pop(), shas.pop() if len(shas) == 1 else None, runs)
    doc = read_submission(path)            # size, nesting, NaN refused in one line (exit 3)
    if "runs" not in doc or "arch" not in doc:
        raise InvalidSubmission(f"{path}: a submission is a JSON object with at least 'arch' "
                                "and 'runs'")
    runs = doc["runs"]
    if isinstance(runs, str):
        runs = _submitted_runs(_table_beside(path, runs), table_only=True)
    elif not isinstance(runs, list) or not runs:
        raise InvalidSubmission(f"{path}: 'runs' must be a non-empty list or a path to a table")
    try:
        vocab = int(doc.get("vocab_size", VOCAB_SIZE))
        distributions = list(doc.get("distributions") or [])
    except (ValueError, TypeError) as exc:
        raise InvalidSubmission(f"{path}: 'vocab_size' or 'distributions' is malformed: "
                                f"{exc}") from None
    return Submission(str(doc["arch"]), doc.get("corpus_sha256"), runs, doc.get("family"),
                      doc.get("seq_len"), vocab, distributions)


def _table_beside(path: Path, name: str) -> Path:
    """The runs table that the submission ``path`` names: a file in the submission's folder or
    below it, and no symbolic link, so that a submission reads no other file of the machine
    that validates it (an absolute path, '..' or a link out would show a cell of any CSV)."""
    folder, table = path.parent.resolve(), path.parent / name
    if table.is_symlink() or folder not in table.resolve().parents:
        raise InvalidSubmission(f"{path}: 'runs' names {printable(name)!r}, which is not a "
                                "file in the submission's folder (an absolute path, '..' out "
                                "of it or a symbolic link is refused)")
    return table


def _submitted_runs(path: Path, table_only: bool = False) -> list[dict[str, Any]]:
    """``read_runs`` (one corpus and sequence length per architecture), its complaints about
    the table's content as an invalid submission; ``table_only``: the table a submission names,
    whose absence is the submission's fault too."""
    try:
        if table_only and not path.is_file():
            raise MalformedTable(f"{path}: the runs table the submission names is not a file")
        runs = read_runs(path)
        by_arch(runs)
    except MalformedTable as exc:
        raise InvalidSubmission(str(exc)) from None
    return runs


def _spec_schema() -> dict:
    """The submission schema's architecture spec, as a schema of its own."""
    schema = load_schema()
    return {"$ref": "#/$defs/spec", "$defs": {
        **schema["$defs"], "spec": schema["properties"]["architecture"]["properties"]["spec"]}}


def run_spec(run: dict[str, Any], sub: Submission, where: str = "run") -> ArchitectureSpec:
    """The architecture of one run: its ``architecture`` spec (a table's JSON text is read as
    a submission file is, and the spec checked as a board entry's is), else its family's at
    its width and depth."""
    arch = run.get("architecture")
    if isinstance(arch, str):
        arch = parse_submission_text(arch, f"{where}: architecture")
    if isinstance(arch, dict):
        data = {"name": sub.arch, **arch}
        errors = schema_errors(data, _spec_schema())
        if errors:
            raise InvalidSubmission(f"{where}: architecture {errors[0]}")
        return ArchitectureSpec.from_dict(data)
    family = run.get("family") or sub.family
    if family and run.get("width") and run.get("depth"):
        return family_spec(family, int(run["width"]), int(run["depth"]))
    raise UsageError("every run needs an 'architecture' spec, or 'width' and 'depth' with a "
                     "'family'")


def _params_of(spec: ArchitectureSpec, vocab_size: int) -> int:
    return count_params(model_skeleton(spec, vocab_size))


def _untrusted(spec: ArchitectureSpec, sub: Submission) -> list[str]:
    """Why the code of ``spec``'s mixers may not be imported here (empty: it may)."""
    arch = {"spec": spec.to_dict(), "distributions": sub.distributions}
    try:
        return [v.reason for v in untrusted_mixers(arch)]
    except (KeyError, TypeError) as exc:
        return [f"its 'distributions' list is malformed ({exc!r})"]


def _check_flops(sub: Submission, verdict: Verdict, trust_code: bool = False,
                 rebuilt: list | None = None) -> np.ndarray:
    """Recomputed FLOPs of every run (and reasons for the runs that disagree). Runs whose
    mixers' code is not trusted keep their declared FLOPs, and make the verdict invalid;
    the (spec, seq_len) of the others go to ``rebuilt``."""
    cache: dict[tuple, tuple[float, int]] = {}
    judged: dict[tuple, list[str]] = {}       # mixer names -> why untrusted (once per set)
    refused: set[str] = set()
    recomputed = []
    for i, run in enumerate(sub.runs):
        try:
            seq_len = int(run.get("seq_len") or sub.seq_len or 0)
            vocab = int(run.get("vocab_size") or sub.vocab_size)
            spec = run_spec(run, sub, f"run {i + 1}")
        except (ValueError, TypeError, KeyError, AttributeError) as exc:
            raise UsageError(f"run {i + 1} is malformed: {type(exc).__name__}: "
                             f"{str(exc).splitlines()[0] if str(exc) else ''}") from None
        if seq_len < 1 or vocab < 2:
            raise UsageError(f"run {i + 1}: seq_len {seq_len} and vocab_size {vocab} must be "
                             "positive (every run needs a 'seq_len', or one for the whole "
                             "submission)")
        check_seq_len(seq_len, f"run {i + 1}: seq_len")
        check_size(spec.dim, -(-len(spec.layers) // 2), f"run {i + 1}: model size")
        mixers = tuple(sorted({layer.mixer for layer in spec.layers}))
        if mixers not in judged:
            judged[mixers] = [] if trust_code else _untrusted(spec, sub)
        why = judged[mixers]
        if why:
            if why[0] not in refused:
                refused.add(why[0])
                verdict.fail(f"not rebuilt (untrusted code): {why[0]}; FLOPs and parameters "
                             "of its runs are not recomputed (--trust-code imports it)")
            recomputed.append(float(run["flops"]))
            continue
        key = (spec.hash, seq_len, vocab)
        if rebuilt is not None:
            rebuilt.append((spec, seq_len))
        if key not in cache:
            fl = architecture_flops(spec, seq_len, vocab)
            cache[key] = (fl.training_per_token, _params_of(spec, vocab))
        per_token, params = cache[key]
        expected = per_token * float(run["tokens"])
        recomputed.append(expected)
        where = f"run {i + 1} ({spec.name}, {float(run['tokens']):.3g} tokens)"
        ratio = float(run["flops"]) / expected - 1
        if ratio < -FLOPS_TOLERANCE:
            verdict.fail(f"understates FLOPs: {where} declares {float(run['flops']):.4g}, its "
                         f"architecture needs {expected:.4g} ({ratio:+.1%})")
        elif ratio > FLOPS_TOLERANCE:
            verdict.fail(f"overstates FLOPs: {where} declares {float(run['flops']):.4g}, its "
                         f"architecture needs {expected:.4g} ({ratio:+.1%})")
        if abs(float(run["params"]) / params - 1) > PARAMS_TOLERANCE:
            verdict.fail(f"parameter count: {where} declares {int(run['params']):,}, its "
                         f"architecture has {params:,}")
    return np.array(recomputed)


def _check_budgets(sub, flops, verdict) -> None:
    """Every run labelled with a budget needs FLOPs within the grouping factor of it: the label
    decides which IsoFLOP curve a run is fitted on."""
    labels = budgets_of(sub.runs)
    if labels is None:
        return
    ratio = np.asarray(flops, dtype=float) / labels
    off = np.flatnonzero((ratio < 1 / GROUP_FACTOR) | (ratio > GROUP_FACTOR))
    if off.size:
        i = int(off[0])
        verdict.fail(f"budget label: {off.size} run(s) lie outside {GROUP_FACTOR}x of the budget "
                     f"they are labelled with (run {i + 1}: C={labels[i]:.3g}, its FLOPs "
                     f"{flops[i]:.4g})")


def _check_curves(sub, flops, verdict) -> list:
    params = np.array([float(r["params"]) for r in sub.runs])
    tokens = np.array([float(r["tokens"]) for r in sub.runs])
    losses = np.array([float(r["loss"]) for r in sub.runs])
    labels = budget_groups(flops, budgets_of(sub.runs))
    groups = []
    for c in np.unique(labels):
        m = labels == c
        g = fit_isoflop_group(c, params[m], tokens[m], losses[m])
        groups.append((g, np.flatnonzero(m)))
        verdict.groups.append(g.to_dict())
        if not g.valid:
            verdict.fail(f"IsoFLOP group C={c:.3g}: {g.problem}")
            continue
        if m.sum() < 4:
            continue
        lo, hi = params[m].min(), params[m].max()
        for j in np.flatnonzero(m & (params > lo) & (params < hi)):
            rest = m.copy()
            rest[j] = False
            other = fit_isoflop_group(c, params[rest], tokens[rest], losses[rest])
            if other.coeffs is None:
                continue
            predicted = float(other.predict([params[j]])[0])
            if abs(losses[j] - predicted) > CURVE_TOLERANCE * predicted:
                verdict.warnings.append(
                    f"point off its IsoFLOP curve: C={c:.3g}, N={params[j]:.3g} has loss "
                    f"{losses[j]:.4g}, the other points of the group predict {predicted:.4g}")
    return groups


def _check_frontiers(sub, groups, verdict, frontiers_root) -> None:
    if frontiers_root is None:
        verdict.notes.append("no stored frontiers folder: not compared with stored frontiers")
        return
    stored = [f for f in load_frontiers(frontiers_root)
              if sub.corpus_sha256 and f.get("corpus_sha256") == sub.corpus_sha256]
    if not sub.corpus_sha256:
        verdict.notes.append("no corpus_sha256: not compared with stored frontiers")
        return
    if not stored:
        verdict.notes.append(f"no stored frontier for corpus {sub.corpus_sha256[:12]}... under "
                             f"{frontiers_root}: not compared")
        return
    own = [f for f in stored if f["arch"] == sub.arch]
    for f in stored:
        for g, members in groups:
            band = band_at(f, g.budget)
            if band is None:
                continue
            loss, lo, hi = band
            entry = {"arch": f["arch"], "budget": g.budget, "stored_loss": loss,
                     "stored_band": [lo, hi], "submission_loss": g.loss_opt,
                     "ratio": None if g.loss_opt is None else g.loss_opt / loss}
            verdict.comparisons.append(entry)
            if f not in own:
                continue
            low, high = lo * (1 - BAND_TOLERANCE), hi * (1 + BAND_TOLERANCE)
            if g.loss_opt is not None and not low <= g.loss_opt <= high:
                side = "below" if g.loss_opt < low else "above"
                verdict.fail(f"frontier off the stored one: at C={g.budget:.3g} the "
                             f"compute-optimal loss {g.loss_opt:.4g} is {side} the stored band "
                             f"[{lo:.4g}, {hi:.4g}] of {f['arch']} (ratio {entry['ratio']:.3f})")
            for j in members:
                run_loss = float(sub.runs[j]["loss"])
                if run_loss < low:
                    verdict.fail(f"point below the stored frontier: C={g.budget:.3g}, "
                                 f"N={float(sub.runs[j]['params']):.3g} reports loss "
                                 f"{run_loss:.4g}, under the stored compute-optimal band "
                                 f"[{lo:.4g}, {hi:.4g}] of {f['arch']}")
    if not own:
        verdict.notes.append(f"no stored frontier of {sub.arch!r} on this corpus: compared "
                             "with the other architectures for information only")
    elif not any(c["arch"] == sub.arch for c in verdict.comparisons):
        # the range band_at compares within: budgets with a vertex and a band
        budgets = [b["budget"] for f in own for b in f.get("budgets", [])
                   if b.get("valid") and b.get("loss_band")]
        verdict.notes.append(f"no budget of the submission lies inside the stored frontier of "
                             f"{sub.arch!r} ({min(budgets):.3g} to {max(budgets):.3g}): not "
                             "compared with it" if budgets else
                             f"the stored frontier of {sub.arch!r} has no valid budget (none "
                             "with an interior vertex and a band): not compared")


def validate(sub: Submission, frontiers_root: str | Path | None,
             trust_code: bool = False) -> Verdict:
    """Run every check on a submission; see the module docstring."""
    with working_directory_excluded():
        return _validate(sub, frontiers_root, trust_code)


def _validate(sub: Submission, frontiers_root, trust_code: bool) -> Verdict:
    verdict = Verdict()
    for i, run in enumerate(sub.runs):
        if not isinstance(run, dict):
            raise InvalidSubmission(f"run {i + 1}: a run is an object of columns, not "
                                    f"{type(run).__name__}")
        for c in ("params", "tokens", "flops", "loss", "budget"):
            v = run.get(c)
            if c == "budget" and v in (None, ""):
                continue                                    # optional: grouped by FLOPs
            if not positive_number(v):
                raise InvalidSubmission(f"run {i + 1}: {c}={v!r} must be a positive number")
    rebuilt: list = []
    try:
        flops = _check_flops(sub, verdict, trust_code, rebuilt)
    except MadbenchError as exc:
        verdict.fail(f"FLOPs cannot be recomputed: {exc}")
        flops = np.array([float(r["flops"]) for r in sub.runs])
    try:                                 # the mixers rebuilt here: eval's causality gate
        check_causal([spec for spec, _ in rebuilt], {n for _, n in rebuilt})
    except MadbenchError as exc:
        verdict.fail(f"causality: {exc}")
    _check_budgets(sub, flops, verdict)
    groups = _check_curves(sub, flops, verdict)
    _check_frontiers(sub, groups, verdict, frontiers_root)
    return verdict
