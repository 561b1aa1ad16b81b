"""Validate leaderboard submissions: every number is recomputed from something the submitter
cannot edit without the change showing.

Checks, in order (each failure names its check and gives the reason):

1. ``input``/``schema``: the file parses safely (see ``schema``) and matches the schema.
2. ``protocol``: the protocol's hash matches its fields; the fields are madbench's preset with
   the declared overrides; the ``board`` is the one the protocol makes it eligible for (a
   non-standard protocol is invalid for a board), and a file in a board's folder (a folder
   named after a board, ``boards.board_of_folder``) is that board's entry.
3. ``suite``: the suite hash is madbench's own (the bundled six tasks and their settings).
4. ``runs``: each run's setting hash, grid membership, seed and ``run_key`` are recomputed from
   its fields; its ``scored_positions`` are counted on the test data generated here and its
   accuracy is a whole number of them; its epochs and steps are what the protocol trains; no
   run is duplicated, no seed is a copy of another, a board entry's seeds are 0 to n - 1 (not
   the luckiest of more seeds trained), and none of the sweep is missing: every
   task an entry has runs of is complete (a board entry may leave whole tasks out; the board
   then lists it as partial, without a MAD score or a rank).
5. ``best``/``scores``: best of sweep per (task, setting, seed), task means, the overall score
   and the bootstrap interval are recomputed from the runs (within ``AGGREGATE_TOLERANCE``).
6. ``architecture``/``accounting``/``causality``/``state_audit``: the architecture hash matches
   its spec and source ids (the display name is not hashed). Only code this installation
   already trusts is imported (``trust``: bundled layers, installed plugin distributions named
   with their versions; ``trust_code`` lifts this): then the installed source ids must match,
   the architecture must fit the size budgets (``Budget``: parameters, FLOPs per token,
   state, check input size), parameters and state are recounted by building the model, the
   causality guard is re-run, and the state audit is re-run at a reduced width (``audit_dim``,
   default 32) within a time budget; its verdict is compared, and its numbers when the
   submission's audit ran at the same width. An architecture that is not rebuilt is a
   warning for a trial submission and a failure for a board entry.
7. ``rerun`` (``rerun=K``): the best runs of K cells, stratified over the tasks and drawn
   uniformly among every cell within the per-run token budget, from a seed the submitter
   does not choose (random unless given), re-trained with madbench's own protocol (the
   board's preset; never the submission's fields) within a time budget; accuracy must agree
   within ``tolerance``.

Beyond single files, ``duplicate_entries`` fails a board entry whose architecture (by hash) or
name (as a reader tells names apart) is already on its board under another file.
"""
from __future__ import annotations

import functools
import itertools
import json
import math
import os
import random
import re
import secrets
import tempfile
import time
import unicodedata
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Collection, Iterable, Iterator

import torch

from ..accounting import PARAM_TOLERANCE, STATE_TARGET, describe_architecture
from ..architecture import ArchitectureSpec, architecture_hash, model_hash
from ..budget import Budget, BudgetExceeded, Deadline, over
from ..code_identity import run_version
from ..errors import MadbenchError, UsageError
from ..estimate import setting_tokens
from ..evaluator import prepare, resolve_placement
from ..executors import LocalExecutor
from ..hashing import canonical_json
from ..loop import epoch_plan
from ..model import LanguageModel
from ..protocol import PRESETS, Protocol
from ..scoring import best_of_sweep, bootstrap_interval, mad_score, task_scores
from ..store import ResultsStore, run_key
from ..sweep import choose_engine, effective_setting, select_settings
from ..tasks import IGNORE, generate_splits
from .boards import (BOARDS, board_for, board_of_folder, current_suite_hash,
                     describe_protocol, preset_with_overrides, suite_tasks)
from .schema import InvalidSubmission, read_submission, schema_errors
from .submit import (ACCOUNTING_FIELDS, ACCOUNTING_SEQ_LEN, ACCOUNTING_VOCAB_SIZE,
                     architecture_claims, source_ids)
from .trust import untrusted_mixers, working_directory_excluded

AGGREGATE_TOLERANCE = 1e-9
#: accuracy agreement a re-run must reach (absolute); GPU bf16 against CPU fp32 differs
DEFAULT_TOLERANCE = 0.05
#: the width the state audit is re-run at (submissions record it at the model width)
VALIDATE_AUDIT_DIM = 32
#: the Jacobian cap when a layer cannot be built at ``VALIDATE_AUDIT_DIM``
FALLBACK_AUDIT_MAX_SIZE = 1024
MAX_LISTED = 3
#: failures of one check listed in a report; the rest are counted
MAX_FAILURES_PER_CHECK = 20


@dataclass
class Report:
    """The outcome of validating one submission."""

    path: str | None
    board: str | None = None
    failures: list[tuple[str, str]] = field(default_factory=list)   #: (check, reason)
    warnings: list[str] = field(default_factory=list)
    checks: list[str] = field(default_factory=list)                 #: what was checked
    reruns: list[dict] = field(default_factory=list)
    name: str | None = None
    architecture_hash: str | None = None
    #: the hash of the model as built (``architecture.model_hash``), when it was rebuilt
    model_hash: str | None = None
    _counts: dict = field(default_factory=dict, repr=False)   #: failures per check
    _more: dict = field(default_factory=dict, repr=False)     #: check -> its count line

    @property
    def valid(self) -> bool:
        return not self.failures

    def fail(self, check: str, reason: str) -> None:
        """Record a failure; past ``MAX_FAILURES_PER_CHECK`` of one check, only their count
        (a forged file can fail one check for every one of its thousands of runs)."""
        count = self._counts.get(check, 0) + 1
        self._counts[check] = count
        if count <= MAX_FAILURES_PER_CHECK:
            self.failures.append((check, reason))
            return
        if count == MAX_FAILURES_PER_CHECK + 1:      # the line that counts the rest, once
            self._more[check] = len(self.failures)
            self.failures.append((check, ""))
        more = count - MAX_FAILURES_PER_CHECK
        self.failures[self._more[check]] = (check, f"... and {more} more failures of this check")

    def to_dict(self) -> dict:
        return {"path": self.path, "name": self.name, "valid": self.valid, "board": self.board,
                "failures": [{"check": c, "reason": r} for c, r in self.failures],
                "warnings": self.warnings, "checks": self.checks, "reruns": self.reruns,
                "architecture_hash": self.architecture_hash}


def _listed(items: list[str], total: int | None = None) -> str:
    """The first ``MAX_LISTED`` of ``items``, and how many more of ``total`` (default: all
    of ``items``) there are."""
    total = len(items) if total is None else total
    shown = ", ".join(items[:MAX_LISTED])
    return shown + (f" and {total - MAX_LISTED} more" if total > MAX_LISTED else "")


# -- 2. protocol ---------------------------------------------------------------------------
def check_protocol(doc: dict, report: Report, path: Path | None,
                   allow_nonstandard: bool) -> Protocol | None:
    data = doc["protocol"]
    try:
        protocol = Protocol.from_dict(data)
    except (ValueError, TypeError) as exc:
        report.fail("protocol", str(exc))
        return None
    if protocol.hash != data["hash"]:
        report.fail("protocol", f"protocol.hash {data['hash']} does not match its fields "
                    f"(they hash to {protocol.hash})")
    try:
        expected = preset_with_overrides(protocol)
    except (ValueError, TypeError) as exc:
        report.fail("protocol", str(exc))
        return None
    mine, theirs = expected.to_dict(), protocol.to_dict()
    edited = [k for k in mine if canonical_json(mine[k]) != canonical_json(theirs[k])]
    if edited:
        report.fail("protocol", f"protocol fields {', '.join(edited)} differ from madbench's "
                    f"preset {protocol.name!r} with the declared overrides")
    eligible = board_for(protocol)
    report.board = doc["board"]
    if doc["board"] != eligible:
        report.fail("protocol", f"board is {doc['board'] or 'null'}, but protocol "
                    f"{describe_protocol(protocol)} makes it "
                    + (f"a {eligible} entry" if eligible else "eligible for no board"))
    elif eligible is None and not allow_nonstandard:
        boards = ", ".join(f"{b} = {p}" for b, p in BOARDS.items())
        report.fail("protocol", f"protocol {describe_protocol(protocol)} is not a board's "
                    f"protocol ({boards}, without overrides): a non-standard protocol is "
                    "invalid for a board (--allow-nonstandard checks the rest anyway)")
    folder, direct = board_of_folder(path)
    if folder is not None and not direct:
        report.fail("protocol", f"the file is in a folder below a {folder} board folder; "
                    "board entries go directly in the board's folder")
    elif folder is not None and folder != doc["board"]:
        report.fail("protocol", f"the file is in a {folder} board folder ({path.parent}/) but "
                    f"the submission is for {doc['board'] or 'no board'}")
    report.checks.append(f"protocol {describe_protocol(protocol)} [{protocol.hash}]")
    return protocol


# -- 3. suite ------------------------------------------------------------------------------
def check_suite(doc: dict, report: Report) -> None:
    expected = current_suite_hash()
    if doc["suite_hash"] != expected:
        report.fail("suite", f"suite_hash {doc['suite_hash']} is not madbench's MAD suite "
                    f"({expected}): its tasks or settings differ from this madbench's")
    report.checks.append(f"suite [{expected}]")


# -- 4. runs -------------------------------------------------------------------------------
def _run_problems(run: dict, task, protocol: Protocol, doc: dict) -> list[tuple[str, str]]:
    """(kind, reason) for every way one run disagrees with its own fields or the protocol."""
    label = f"{run['task']}/{run['setting']} seed {run['seed']} lr {run['lr']:g} wd " \
        f"{run['weight_decay']:g}"
    if task is None:
        return [("task", f"{label}: {run['task']!r} is not a task of the MAD suite")]
    if run["setting"] not in [s.name for s in select_settings(task, protocol.settings)]:
        return [("setting", f"{label}: setting {run['setting']!r} is not one of the protocol's "
                 f"settings of {task.name}")]
    out = []
    eff = effective_setting(task.setting(run["setting"]), protocol)
    if run["setting_hash"] != eff.hash:
        out.append(("setting_hash", f"{label}: setting_hash {run['setting_hash']} is not that "
                    f"setting's under this protocol ({eff.hash})"))
    if run["lr"] not in protocol.lrs or run["weight_decay"] not in protocol.weight_decays:
        out.append(("grid", f"{label}: (lr, weight decay) is not in the protocol's grid"))
    if run["seed"] not in doc["seeds"]:
        out.append(("seed", f"{label}: seed {run['seed']} is not among the declared seeds"))
    key = run_key(doc["architecture"]["hash"], eff.hash, doc["protocol"]["hash"], run["lr"],
                  run["weight_decay"], run["seed"], doc["madbench_version"])
    if run["run_key"] != key:
        out.append(("run_key", f"{label}: run_key {run['run_key']} does not match the run's "
                    f"fields (they give {key}): task, setting, lr, weight decay, seed, "
                    "architecture, protocol or madbench version was changed"))
    n = max(run["scored_positions"], 1)
    if round(run["accuracy"] * n) / n != run["accuracy"]:
        out.append(("accuracy", f"{label}: accuracy {run['accuracy']!r} is not a whole number "
                    f"of correct positions out of {run['scored_positions']}"))
    if run["diverged"] and (run["accuracy"] or run["macro_accuracy"] or
                            run["loss"] is not None):
        out.append(("diverged", f"{label}: a diverged run scores 0 and has no loss"))
    if not run["diverged"] and run["loss"] is None:
        out.append(("diverged", f"{label}: a run without a test loss must be marked diverged"))
    per_epoch, epochs = epoch_plan(eff.num_train, protocol)
    may_stop = run["diverged"] or protocol.early_stop_accuracy is not None
    trained = (run["epochs"], run["steps"])
    if (trained[0] > epochs or trained[1] > epochs * per_epoch
            or (not may_stop and trained != (epochs, epochs * per_epoch))):
        out.append(("steps", f"{label}: {trained[0]} epochs / {trained[1]} steps, but the "
                    f"protocol trains {epochs} epochs of {per_epoch} steps"))
    return out


def coverage_problems(doc: dict, tasks: dict, protocol: Protocol) -> list[tuple[str, str]]:
    """Duplicated runs, and runs of the protocol's sweep that are missing (every setting the
    protocol selects x seed x (lr, wd), of every task the entry has runs of). The missing runs
    are counted, and the first few named, in time that grows with the runs, never with the
    sweep a protocol declares (100 seeds of a 100 x 100 grid are 66 million runs)."""
    out = []
    cells = Counter((r["task"], r["setting"], r["seed"], r["lr"], r["weight_decay"])
                    for r in doc["runs"])
    keys = Counter(r["run_key"] for r in doc["runs"])
    dupes = [f"{t}/{s} seed {seed} lr {lr:g} wd {wd:g}"
             for (t, s, seed, lr, wd), count in cells.items() if count > 1]
    if dupes:
        out.append(("duplicate", "duplicate runs: " + _listed(dupes)))
    elif max(keys.values()) > 1:
        out.append(("duplicate", "two runs share a run_key"))
    declared = sorted({r["task"] for r in doc["runs"]} & set(tasks))
    settings = [(name, s.name) for name in declared
                for s in select_settings(tasks[name], protocol.settings)]
    seeds, configs = list(dict.fromkeys(doc["seeds"])), list(dict.fromkeys(protocol.configs()))
    in_sweep = set(settings), set(seeds), set(configs)
    present = sum((t, s) in in_sweep[0] and seed in in_sweep[1] and (lr, wd) in in_sweep[2]
                  for t, s, seed, lr, wd in cells)
    missing = len(settings) * len(seeds) * len(configs) - present
    if missing:    # the scan stops at the last one named: at most present + 3 cells
        sweep = ((t, s, seed, lr, wd) for t, s in settings for seed in seeds
                 for lr, wd in configs)
        first = itertools.islice((c for c in sweep if c not in cells), min(missing, MAX_LISTED))
        out.append(("missing", f"{missing} runs of the protocol's sweep are missing: "
                    + _listed([f"{t}/{s} seed {seed} lr {lr:g} wd {wd:g}"
                               for t, s, seed, lr, wd in first], missing)))
    if doc["board"] and doc["seeds"] != list(range(len(doc["seeds"]))):
        out.append(("seed", f"a board entry's seeds are 0 to n - 1, not "
                    f"{_listed([str(s) for s in doc['seeds']])}: the seeds of an entry are "
                    "not picked among more that were trained"))
    run_seeds = sorted({r["seed"] for r in doc["runs"]})
    if doc["seeds"] != run_seeds:
        out.append(("seed", f"seeds {doc['seeds']} are not the sorted seeds of the runs "
                    f"{run_seeds}"))
    return out


def scored_positions(task, setting_name: str, protocol: Protocol, seed: int) -> int:
    """The scored positions of a setting's test split under ``protocol`` (its caps applied),
    counted on the data generated here: what every non-diverged run of the setting and seed
    was evaluated on."""
    eff = effective_setting(task.setting(setting_name), protocol)
    return int((generate_splits(task, eff, seed)[1].targets != IGNORE).sum())


def _scored_problems(doc: dict, tasks: dict, protocol: Protocol,
                     deadline: Deadline) -> list[tuple[str, str]]:
    """Runs whose ``scored_positions`` is not the count of the test data generated here (0 for
    a diverged run): an accuracy is a fraction of these, so they cannot be chosen. The data
    are generated once per (task, setting, seed), within ``deadline``."""
    out = []
    cells = sorted({(r["task"], r["setting"], r["seed"]) for r in doc["runs"]
                    if r["task"] in tasks and r["setting"] in
                    {s.name for s in select_settings(tasks[r["task"]], protocol.settings)}})
    counts = {}
    for cell in cells:
        deadline.check()
        counts[cell] = scored_positions(tasks[cell[0]], cell[1], protocol, cell[2])
    for run in doc["runs"]:
        cell = (run["task"], run["setting"], run["seed"])
        if cell not in counts:
            continue
        expected = 0 if run["diverged"] else counts[cell]
        if run["scored_positions"] != expected:
            out.append(("scored_positions", f"{cell[0]}/{cell[1]} seed {cell[2]} lr "
                        f"{run['lr']:g} wd {run['weight_decay']:g}: scored_positions "
                        f"{run['scored_positions']}, but its test data here have {expected}"))
    return out


#: the fields of a run that are measured, not set: equal across seeds only by copying
MEASURED_FIELDS = ("accuracy", "macro_accuracy", "loss", "train_loss")


def _significant(value):
    """``value`` to 6 significant digits (numbers only; anything else as it is)."""
    if isinstance(value, float) and math.isfinite(value):
        return float(f"{value:.6g}")
    return value


def _copied_seed_problems(doc: dict) -> list[tuple[str, str]]:
    """Runs that differ only in their seed but carry the same measurements (every measured
    field to 6 significant digits, so that nudging a copy by a few ulps does not hide it): a
    seed relabelled or copied, not trained. Two trained seeds never agree that closely on
    test and training loss at once."""
    seen: dict[tuple, dict] = {}
    out = []
    for run in doc["runs"]:
        if run["diverged"]:
            continue
        key = (run["task"], run["setting"], run["lr"], run["weight_decay"],
               *(_significant(run[f]) for f in MEASURED_FIELDS))
        other = seen.setdefault(key, run)
        if other is not run and other["seed"] != run["seed"]:
            out.append(("copied_seed", f"{run['task']}/{run['setting']} lr {run['lr']:g} wd "
                        f"{run['weight_decay']:g}: seeds {other['seed']} and {run['seed']} "
                        "have the same accuracy, loss and train loss (a copied seed)"))
    return out


def check_runs(doc: dict, report: Report, protocol: Protocol,
               budget: Budget = Budget()) -> None:
    tasks = {t.name: t for t in suite_tasks()}
    problems: dict[str, list[str]] = {}
    for run in doc["runs"]:
        for kind, text in _run_problems(run, tasks.get(run["task"]), protocol, doc):
            problems.setdefault(kind, []).append(text)
    deadline = Deadline(budget.check_seconds, "counting the scored positions")
    try:
        scored = _scored_problems(doc, tasks, protocol, deadline)
    except BudgetExceeded as exc:
        report.fail("budget", str(exc))
        scored = []
    for kind, text in (coverage_problems(doc, tasks, protocol) + _copied_seed_problems(doc)
                       + scored):
        problems.setdefault(kind, []).append(text)
    for kind, texts in problems.items():        # one line per kind of per-run problem
        if len(texts) == 1 or kind in ("missing", "duplicate"):
            for text in texts:
                report.fail("runs", text)
        else:
            report.fail("runs", f"{len(texts)} runs fail the {kind} check: {texts[0]} (and "
                        f"{len(texts) - 1} more)")
    report.checks.append(f"runs ({len(doc['runs'])}: keys, settings, grid, steps, coverage, "
                         "scored positions recounted from the test data, no copied seeds)")


# -- 5. aggregates -------------------------------------------------------------------------
def _differs(claimed: float, recomputed: float) -> bool:
    return not (abs(claimed - recomputed) <= AGGREGATE_TOLERANCE)


def check_aggregates(doc: dict, report: Report, protocol: Protocol | None) -> None:
    metric = doc["metric"]
    if protocol is not None and metric != protocol.selection:
        report.fail("scores", f"metric is {metric}, but the protocol selects on "
                    f"{protocol.selection}")
    runs = doc["runs"]
    best = best_of_sweep(runs, metric)
    claimed_best = {}
    for entry in doc["best"]:
        cell = (entry["task"], entry["setting"], entry["seed"])
        if cell in claimed_best:
            report.fail("best", f"two best entries for {'/'.join(map(str, cell))}")
        claimed_best[cell] = entry["run_key"]
    by_key = {r["run_key"]: r for r in runs}
    for cell in sorted(set(best) | set(claimed_best)):
        where = f"{cell[0]}/{cell[1]} seed {cell[2]}"
        if cell not in claimed_best:
            report.fail("best", f"no best entry for {where}")
            continue
        if cell not in best:
            report.fail("best", f"best entry for {where}, which has no runs")
            continue
        chosen, top = by_key.get(claimed_best[cell]), best[cell]
        if chosen is None or (chosen["task"], chosen["setting"], chosen["seed"]) != cell:
            report.fail("best", f"best entry for {where} names run {claimed_best[cell]}, "
                        "which is not one of its runs")
        elif (chosen[metric], chosen["loss"]) != (top[metric], top["loss"]):
            report.fail("best", f"best entry for {where} is run {chosen['run_key']} "
                        f"({metric} {chosen[metric]:.6g}), but the best of its sweep is "
                        f"{top['run_key']} ({metric} {top[metric]:.6g})")
    scores = task_scores(best, metric)
    claimed = {k: v for k, v in doc["scores"].items() if k != "overall"}
    for task in sorted(set(scores) | set(claimed)):
        if task not in claimed:
            report.fail("scores", f"no score for task {task}, which has runs")
        elif task not in scores:
            report.fail("scores", f"scores.{task} is claimed, but no run of {task} exists")
        elif _differs(claimed[task], scores[task]):
            report.fail("scores", f"scores.{task} is {claimed[task]!r}, but its runs give "
                        f"{scores[task]!r}")
    overall = mad_score(scores)
    if not math.isfinite(overall) or _differs(doc["scores"]["overall"], overall):
        report.fail("scores", f"scores.overall is {doc['scores']['overall']!r}, but the runs "
                    f"give {overall!r} (mean of the task scores)")
    given = doc["confidence_interval"]
    suite = {(t.name, s.name) for t in suite_tasks() for s in t.settings()}
    foreign = {cell[:2] for cell in best} - suite
    if foreign:    # the bootstrap's cost grows with the settings: only the suite's are taken
        report.fail("scores", f"confidence_interval not recomputed: {len(foreign)} (task, "
                    "setting) pairs of the runs are no settings of the MAD suite")
    else:
        interval = bootstrap_interval(best, metric)
        if (interval is None) != (given is None) or (
                interval is not None and any(_differs(a, b) for a, b in zip(given, interval))):
            report.fail("scores", f"confidence_interval is {given}, but the runs give "
                        f"{list(interval) if interval else None}")
    report.checks.append("aggregates (best of sweep, task scores, overall, interval)")


# -- 6. architecture -----------------------------------------------------------------------
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
                f"{spec.dim} to stay fast; its verdict is compared, not its numbers)"}
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


def _compare_audit(claimed: dict, measured: dict, report: Report) -> None:
    """The submission's state-audit numbers against the audit re-run here, when both ran with
    the same width and Jacobian cap; otherwise only the verdict is compared (said so)."""
    same = (claimed["audit_dim"], claimed["max_size"]) == (measured["audit_dim"],
                                                           measured["max_size"])
    if not same:
        report.warnings.append(
            f"state audit numbers recorded at width {claimed['audit_dim'] or 'of the model'} "
            f"(cap {claimed['max_size']}) are not compared with the re-run at width "
            f"{measured['audit_dim'] or 'of the model'} (cap {measured['max_size']}); its "
            "verdict is")
        return
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
        not_checked(f"architecture not importable here ({_first_line(exc)}): accounting, "
                    "causality and state audit not re-checked")
        return None
    if installed != sorted(set(arch["sources"])):
        diff = sorted(set(installed) ^ set(arch["sources"]))
        report.fail("architecture", "the installed mixer code differs from the submission's "
                    f"({_listed(diff)}); install the version the runs were made with")
        return None
    if spec.hash != arch["hash"]:
        report.fail("architecture", f"the installed architecture hashes to {spec.hash}")
        return None
    try:
        report.model_hash = model_hash(spec)
    except Exception as exc:  # noqa: BLE001 - only the duplicate rule needs it
        report.warnings.append(f"the model hash could not be computed ({_first_line(exc)}): "
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
        if _differs(acc["param_ratio"], mine["param_ratio"]):
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
    _compare_audit(audit, rerun_audit, report)
    if not rerun_audit["state_ok"]:
        bad = [l for l in rerun_audit["layers"] if l["ok"] is False]
        report.fail("state_audit", "state audit re-run here: " +
                    (f"layer {bad[0]['index']} ({bad[0]['mixer']}): {bad[0]['message']}"
                     if bad else "failed"))
    report.checks += ["architecture hash and sources", "accounting recounted",
                      "causality guard re-run", claims["audit_note"]]
    return spec


# -- 7. spot re-runs -----------------------------------------------------------------------
def rerun_cost(task, setting_name: str, protocol: Protocol) -> int:
    """Tokens a run of this setting trains on (steps x batch x length), for ranking cost."""
    return setting_tokens(effective_setting(task.setting(setting_name), protocol), protocol)


def rerun_protocol(doc: dict, protocol: Protocol) -> Protocol:
    """The protocol a re-run trains: the board's own preset for a board entry, else madbench's
    preset with the declared overrides; never the submission's fields. Raises ValueError when
    the submission's protocol is not that one (nothing is re-run then)."""
    mine = PRESETS[BOARDS[doc["board"]]] if doc["board"] in BOARDS else \
        preset_with_overrides(protocol)
    if mine.hash != protocol.hash:
        raise ValueError(f"the submission's protocol [{protocol.hash}] is not "
                         f"{describe_protocol(mine)} [{mine.hash}]")
    return mine


def default_rerun_tokens() -> int:
    """The largest run of any board's protocol (tokens): a re-run of a trial submission never
    trains more than that."""
    return max(rerun_cost(task, setting.name, PRESETS[preset])
               for preset in BOARDS.values() for task in suite_tasks()
               for setting in task.settings())


def cheapest_rerun(doc: dict, protocol: Protocol) -> int | None:
    """Tokens of the cheapest run among ``doc``'s settings of the suite's tasks under
    ``protocol`` (None: it has none)."""
    tasks = {t.name: t for t in suite_tasks()}
    cells = {(r["task"], r["setting"]) for r in doc["runs"] if r["task"] in tasks}
    return min((rerun_cost(tasks[t], s, protocol) for t, s in cells), default=None)


def rerun_budget_problem(doc: Any, budget: Budget) -> str | None:
    """Why ``budget.rerun_max_tokens`` admits no run of ``doc`` when the default budget (the
    largest run of a board's protocol) admits one: then the budget the validator was given is
    too small for this entry, a usage error of the validator's invocation (exit 2, before any
    work), never a failure of the entry. None when a run fits; when no budget was given; when
    not even the default admits one (the entry's own protocol is too large: it fails
    ``rerun``); or when the file is too malformed to tell (its validation says why)."""
    if budget.rerun_max_tokens is None:
        return None
    try:
        cheapest = cheapest_rerun(doc, rerun_protocol(doc, Protocol.from_dict(doc["protocol"])))
    except Exception:  # noqa: BLE001 - untrusted input: the checks report what is wrong
        return None
    largest = default_rerun_tokens()
    if cheapest is None or not over(cheapest, budget.rerun_max_tokens) or over(cheapest, largest):
        return None
    return (f"a re-run budget of {budget.rerun_max_tokens:,} tokens per run admits none of its "
            f"runs (the cheapest trains {cheapest:,}; the default budget, the largest run of a "
            f"board's protocol, is {largest:,}): raise --rerun-max-tokens, or validate it "
            "without --rerun")


def pick_reruns(doc: dict, protocol: Protocol, k: int, rng: random.Random,
                max_tokens: int | None = None) -> tuple[list[dict], dict]:
    """K best-of-sweep runs to re-train, stratified over the tasks: the tasks in a random
    order, one cell each in turn, each drawn uniformly among that task's cells (every setting
    and seed, not only the cheap ones) whose run costs at most ``max_tokens``. Returns the
    runs and what the sample was drawn from."""
    tasks = {t.name: t for t in suite_tasks()}
    best = best_of_sweep(doc["runs"], doc["metric"])
    pools: dict[str, list] = {}
    too_costly = 0
    for cell in sorted(best):
        if cell[0] not in tasks:
            continue
        if over(rerun_cost(tasks[cell[0]], cell[1], protocol), max_tokens):
            too_costly += 1
            continue
        pools.setdefault(cell[0], []).append(cell)
    eligible = sum(map(len, pools.values()))
    order = sorted(pools)
    rng.shuffle(order)
    chosen: list = []
    while len(chosen) < min(k, eligible):
        for name in order:
            if pools[name] and len(chosen) < k:
                chosen.append(pools[name].pop(rng.randrange(len(pools[name]))))
    return [best[c] for c in chosen], {"cells": len(best), "eligible": eligible,
                                       "over_budget": too_costly, "tasks": len(order)}


def check_reruns(doc: dict, report: Report, spec, protocol: Protocol, k: int,
                 seed: int | None, tolerance: float, device: str,
                 budget: Budget = Budget(),
                 progress: Callable[[str], None] | None = None,
                 engine: str = "auto") -> None:
    """Re-train K sampled cells with ``engine`` (``auto``: graphed on CUDA, as ``madbench
    eval`` trains, plain on CPU; ``plain``: the reference step) and compare accuracies."""
    if spec is None:
        report.fail("rerun", "cannot re-run: the architecture was not rebuilt here (untrusted "
                    "or not installed code, or code that differs from the submission's)")
        return
    try:
        trained = rerun_protocol(doc, protocol)
    except ValueError as exc:
        report.fail("rerun", f"not re-run: {exc}; only that protocol is ever trained here")
        return
    max_tokens = budget.rerun_max_tokens if budget.rerun_max_tokens is not None else \
        default_rerun_tokens()
    seed = secrets.randbits(32) if seed is None else seed
    runs, sample = pick_reruns(doc, trained, k, random.Random(seed), max_tokens)
    if not runs:
        report.fail("rerun", f"no setting can be re-run within the budget of {max_tokens:,} "
                    f"tokens per run ({sample['over_budget']} of {sample['cells']} over it)")
        return
    dev = resolve_placement(device).device
    chosen = choose_engine(engine, trained, torch.device(dev))
    deadline = Deadline(budget.rerun_seconds, f"re-running {len(runs)} settings")

    def on_progress(event: str, info: dict) -> None:
        if event == "epoch":
            deadline.check()

    gate = None                               # the architecture checks, made once
    for i, run in enumerate(runs, 1):
        precision = run["precision"] if dev.startswith("cuda") else "fp32"
        start = time.perf_counter()
        if progress:
            progress(f"  re-training {i} of {len(runs)}: {run['task']}/{run['setting']} seed "
                     f"{run['seed']}, lr {run['lr']:g}, wd {run['weight_decay']:g} "
                     f"({dev}, {precision}, {chosen} engine)")
        with tempfile.TemporaryDirectory(prefix="madbench-rerun-") as tmp:
            # the run's one cell of the sweep, as madbench eval trains it (the gate passes
            # state mismatches: the claim re-checked here is the accuracy)
            evaluation = prepare(spec, tasks=[run["task"]], protocol=trained,
                                 seeds=[run["seed"]],
                                 settings=[f"{run['task']}:{run['setting']}"],
                                 configs=[(run["lr"], run["weight_decay"])], run_dir=tmp,
                                 device=dev, precision=precision, engine=chosen,
                                 executor=LocalExecutor(devices=[dev]),
                                 allow_state_mismatch=True, checks=gate)
            gate = evaluation.checks
            try:
                with deadline.enforce():
                    results = evaluation.run(on_progress)
            except BudgetExceeded as exc:
                report.fail("rerun", f"{run['task']}/{run['setting']} seed {run['seed']}: "
                            f"{exc}")
                return
            fresh = results.settings[0]["best"]
            trained_by = ResultsStore(tmp).records()[0]["engine"]   # e.g. graphed-eager
        delta = abs(fresh["accuracy"] - run["accuracy"])
        ok = delta <= tolerance and bool(fresh["diverged"]) == run["diverged"]
        if progress:
            progress(f"    accuracy {fresh['accuracy']:.4f}, claimed {run['accuracy']:.4f}: "
                     f"{'ok' if ok else 'MISMATCH'} ({time.perf_counter() - start:.0f} s)")
        report.reruns.append({"task": run["task"], "setting": run["setting"],
                              "seed": run["seed"], "lr": run["lr"],
                              "weight_decay": run["weight_decay"],
                              "claimed": run["accuracy"], "measured": fresh["accuracy"],
                              "difference": delta, "ok": ok, "device": str(dev),
                              "precision": precision, "engine": trained_by,
                              "seconds": round(time.perf_counter() - start, 2)})
        if not ok:
            report.fail("rerun", f"{run['task']}/{run['setting']} seed {run['seed']} lr "
                        f"{run['lr']:g} wd {run['weight_decay']:g} re-trained here: accuracy "
                        f"{fresh['accuracy']:.4f}, claimed {run['accuracy']:.4f} (difference "
                        f"{delta:.4f} > tolerance {tolerance:g})")
    report.checks.append(
        f"re-ran {len(runs)} settings of {sample['tasks']} tasks under "
        f"{describe_protocol(trained)} ({chosen} engine), sampled uniformly per task from "
        f"{sample['eligible']} of {sample['cells']} cells ({sample['over_budget']} over the "
        f"{max_tokens:,}-token budget; sample seed {seed}, tolerance {tolerance:g})")


# -- entry points --------------------------------------------------------------------------
def _guarded(report: Report, check: str, fn: Callable[[], Any]) -> Any:
    """Run one check; an unexpected exception becomes a failure of that check, never a
    traceback (the input is untrusted)."""
    try:
        return fn()
    except MadbenchError as exc:
        report.fail(check, str(exc))
    except (Exception, SystemExit) as exc:  # noqa: BLE001 - SystemExit: code that exits
        report.fail(check, f"check could not run on this input: {type(exc).__name__}: "
                    f"{_first_line(exc)}")
    return None


def _first_line(exc: BaseException) -> str:
    text = str(exc)
    return text.splitlines()[0] if text else type(exc).__name__


def validate_submission(doc: Any, path: str | Path | None = None, *,
                        allow_nonstandard: bool = False, rerun: int = 0,
                        rerun_seed: int | None = None, tolerance: float = DEFAULT_TOLERANCE,
                        audit_dim: int = VALIDATE_AUDIT_DIM, device: str = "auto",
                        rebuild: bool = True, trust_code: bool = False,
                        budget: Budget = Budget(),
                        progress: Callable[[str], None] | None = None,
                        rerun_engine: str = "auto") -> Report:
    """Every check of this module on one parsed submission. ``rebuild=False`` skips the
    checks that build the architecture (6, beyond the hash) and the re-runs (trained with
    ``rerun_engine``, see ``check_reruns``); ``trust_code``
    imports mixers that ``trust`` does not vouch for (code the submission names);
    ``progress`` gets a line as each slow step (the rebuild, each re-run) starts and ends."""
    path = Path(path) if path is not None else None
    if rerun:         # the caller's arguments: usage errors before any check, never a failure
        resolve_placement(device)                 # of the entry (as madbench eval's --device)
        problem = rerun_budget_problem(doc, budget)
        if problem:
            raise UsageError(f"{path or 'the submission'}: {problem}")
    report = Report(str(path) if path else None)
    errors = schema_errors(doc)
    if errors:
        for error in errors:
            report.fail("schema", error)
        return report
    report.name = doc["name"]
    report.architecture_hash = doc["architecture"]["hash"]
    report.checks.append("schema v1")
    if doc["madbench_version"] != run_version():
        report.warnings.append(f"the runs were made by madbench {doc['madbench_version']}, "
                               f"this is {run_version()} (other training code): a re-run "
                               "trains with this one")
    protocol = _guarded(report, "protocol",
                        lambda: check_protocol(doc, report, path, allow_nonstandard))
    _guarded(report, "suite", lambda: check_suite(doc, report))
    if protocol is not None:
        _guarded(report, "runs", lambda: check_runs(doc, report, protocol, budget))
    _guarded(report, "scores", lambda: check_aggregates(doc, report, protocol))
    spec = None
    with working_directory_excluded():
        if rebuild:
            if progress:
                progress(f"  rebuilding the architecture and auditing its state at width "
                         f"{audit_dim}")
            spec = _guarded(report, "architecture",
                            lambda: check_architecture(doc, report, audit_dim, trust_code,
                                                       budget))
        if rerun and protocol is not None:
            _guarded(report, "rerun", lambda: check_reruns(doc, report, spec, protocol, rerun,
                                                           rerun_seed, tolerance, device,
                                                           budget, progress, rerun_engine))
    return report


def read_file(path: str | Path) -> dict | Report:
    """One submission file read (safely) and parsed, or the failed report of a file that is
    none (``read_submission``'s reason)."""
    try:
        return read_submission(path)
    except InvalidSubmission as exc:
        report = Report(str(path))
        report.fail("input", str(exc))
        return report


def validate_file(path: str | Path, doc: dict | Report | None = None, **options) -> Report:
    """Validate one submission file: ``doc``, what ``read_file`` read of it (read here when
    None). A caller that looks at a file before validating it passes what it read, so that
    the file is read once and the content it looked at is the content validated."""
    doc = read_file(path) if doc is None else doc
    return doc if isinstance(doc, Report) else validate_submission(doc, path, **options)


#: default-ignorable code points (Unicode's DerivedCoreProperties.txt): never drawn, so a name
#: that holds one reads as the name without it
_IGNORABLE = re.compile("[\u00ad\u034f\u061c\u115f\u1160\u17b4\u17b5\u180b-\u180f"
                        "\u200b-\u200f\u202a-\u202e\u2060-\u206f\u3164\ufe00-\ufe0f"
                        "\ufeff\uffa0\ufff0-\ufff8\U0001bca0-\U0001bca3"
                        "\U0001d173-\U0001d17a\U000e0000-\U000e0fff]")


#: Cyrillic and Greek letters drawn like a Latin letter (Unicode's confusables.txt, those
#: two scripts), each to that letter in its own case: Greek capital nu reads N, small nu v
_LOOKALIKES = str.maketrans(
    "АВСЕНІЈКМОРЅТУХҮԚԜ" "авсеніјкморѕтухүһԁԛԝ"         # Cyrillic
    "ΑΒΕΖΗΙΚΜΝΟΡΤΥΧϹ" "αικνορτυχγϲϳ",                   # Greek
    "ABCEHIJKMOPSTYXYQW" "abcehijkmopstyxyhdqw"
    "ABEZHIKMNOPTYXC" "aikvoptuxycj")


def name_key(name: str) -> str:
    """An entry's name as a reader of the board tells names apart: compatibility forms folded
    (NFKC: full-width letters, ligatures), Cyrillic and Greek letters drawn like Latin ones
    folded to those (``_LOOKALIKES``: 'mаmba' with a Cyrillic а is 'mamba'; accents kept, on
    the Latin letter), case folded, invisible characters dropped, every dash a hyphen, runs of
    spaces one space, none at the ends. Lookalikes fold before and after case folding, so
    that a capital folds as the Latin capital it is drawn like."""
    text = unicodedata.normalize("NFKD", name).translate(_LOOKALIKES)
    text = _IGNORABLE.sub("", text.casefold().translate(_LOOKALIKES))
    text = "".join("-" if unicodedata.category(c) == "Pd" else c
                   for c in unicodedata.normalize("NFKC", text))
    return " ".join(text.split())


def duplicate_entries(reports: Iterable[Report],
                      changed: Collection[Path] | None = None) -> None:
    """Fail each board entry whose architecture hash or model hash an earlier file on the same
    board already carries (earlier: a file not in ``changed``, the files added or changed by
    the pull request, before one in it, so that the newcomer is blamed; then by path): the
    hash covers the layers, not the display name, so a renamed copy of an entry is the same
    architecture and cannot rank twice; the model hash (when the architecture was rebuilt)
    also equates spellings of the same model, e.g. a layer's default written out or a
    registered class named by its import path. Fail, too, each whose name reads as an earlier
    one's on that board (``name_key``): one name, one entry."""
    seen: dict[tuple[str, str], str | None] = {}
    names: dict[tuple[str, str], Report] = {}
    changed = None if changed is None else {Path(p).resolve() for p in changed}

    def order(report: Report) -> tuple[bool, str]:
        """Files already on the board first, then the added or changed ones; each by path."""
        path = report.path or ""
        return changed is not None and bool(path) and Path(path).resolve() in changed, path
    for report in sorted(reports, key=order):
        if not report.board or not report.architecture_hash:
            continue
        if report.name is not None:
            first = names.setdefault((report.board, name_key(report.name)), report)
            if first is not report:
                report.fail("duplicate", f"name {report.name!r} reads as {first.name!r}, the "
                            f"name of {first.path} on {report.board} (names are told apart "
                            "regardless of case, width, dashes, spacing, invisible characters "
                            "and Cyrillic or Greek lookalikes of Latin letters): one entry "
                            "per name")
        keys = [(report.board, h) for h in (report.architecture_hash, report.model_hash) if h]
        match = next((k for k in keys if k in seen), None)
        if match is not None:
            what = "architecture" if match[1] == report.architecture_hash else "model"
            report.fail("duplicate", f"{what} [{match[1]}] is already on {report.board} as "
                        f"{seen[match]}: one entry per architecture (a renamed architecture, "
                        "or one that writes out its layers' defaults, is the same "
                        "architecture)")
        else:
            seen.update({k: report.path for k in keys})


def submission_files(paths: Iterable[str | Path]) -> list[Path]:
    """Files named, plus every ``*.json`` under directories named (sorted); in a
    leaderboards folder (one holding board folders) only the board folders are searched, so
    that other data there (``frontiers/``) is not taken for submissions. A symbolic link to a
    folder below a directory named is listed, not followed (it fails as no submission)."""
    out = []
    for p in map(Path, paths):
        if p.is_dir():
            out.extend(sorted(_json_below(p)))
        elif p.exists() or p.is_symlink():
            out.append(p)
        else:
            raise UsageError(f"{p}: no such file or directory")
    return out


def _json_below(folder: Path) -> Iterator[Path]:
    """``*.json`` files and links to folders below ``folder`` (its board folders only, if it
    has any); a link is listed, never followed."""
    boards = [b for b in BOARDS if (folder / b).is_dir()]
    for where, folders, files in os.walk(folder):
        here = Path(where)
        if here == folder and boards:
            folders[:], files = boards, []
        yield from (here / f for f in folders if (here / f).is_symlink())
        yield from (here / f for f in files if f.endswith(".json"))
