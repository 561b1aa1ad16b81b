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
   and the bootstrap interval are recomputed from the runs (within
   ``report.AGGREGATE_TOLERANCE``).
6. ``architecture``/``accounting``/``causality``/``state_audit`` (``rebuild``): the
   architecture hash matches its spec and source ids (the display name is not hashed). Only
   code this installation already trusts is imported (``trust``: bundled layers, installed
   plugin distributions named with their versions; ``trust_code`` lifts this): then the
   installed source ids must match, the architecture must fit the size budgets (``Budget``:
   parameters, FLOPs per token, state, check input size), parameters and state are recounted
   by building the model, the causality guard is re-run, and the state audit is re-run at a
   reduced width (``audit_dim``, default 32) within a time budget; its verdict is compared,
   and its numbers when the submission's audit ran at the same width. An architecture that
   is not rebuilt is a warning for a trial submission and a failure for a board entry.
7. ``rerun`` (``rerun=K``; ``reruns``): the best runs of K cells, stratified over the tasks
   and drawn uniformly among every cell within the per-run token budget, from a seed the
   submitter does not choose (random unless given), re-trained with madbench's own protocol
   (the board's preset; never the submission's fields) within a time budget; accuracy must
   agree within ``tolerance`` (plus ``budget.PRECISION_MARGIN`` for a re-run in another
   precision than its claim).

Each check records what it finds in a ``report.Report``. Beyond single files,
``duplicates.duplicate_entries`` fails a board entry whose architecture (by hash) or name (as
a reader tells names apart) is already on its board under another file.
"""
from __future__ import annotations

import itertools
import math
import os
from collections import Counter
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

from ..budget import DEFAULT_TOLERANCE, VALIDATE_AUDIT_DIM, Budget, BudgetExceeded, Deadline
from ..code_identity import run_version
from ..errors import MadbenchError, UsageError
from ..evaluator import resolve_placement
from ..hashing import canonical_json
from ..loop import epoch_plan
from ..protocol import Protocol
from ..scoring import best_of_sweep, bootstrap_interval, mad_score, task_scores
from ..store import run_key
from ..sweep import effective_setting, select_settings
from ..tasks import IGNORE, generate_splits
from .boards import (BOARDS, board_for, board_of_folder, current_suite_hash,
                     describe_protocol, preset_with_overrides, suite_tasks)
from .rebuild import check_architecture
from .report import MAX_LISTED, Report, differs, first_line, listed
from .reruns import check_reruns, rerun_budget_problem
from .schema import InvalidSubmission, read_submission, schema_errors
from .trust import working_directory_excluded


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
        out.append(("duplicate", "duplicate runs: " + listed(dupes)))
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
                    + listed([f"{t}/{s} seed {seed} lr {lr:g} wd {wd:g}"
                               for t, s, seed, lr, wd in first], missing)))
    if doc["board"] and doc["seeds"] != list(range(len(doc["seeds"]))):
        out.append(("seeds", f"a board entry's seeds are 0 to n - 1, not "
                    f"{listed([str(s) for s in doc['seeds']])}: the seeds of an entry are "
                    "not picked among more that were trained"))
    run_seeds = sorted({r["seed"] for r in doc["runs"]})
    if doc["seeds"] != run_seeds:
        out.append(("seeds", f"seeds {doc['seeds']} are not the sorted seeds of the runs "
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
        if len(texts) == 1 or kind in ("missing", "duplicate", "seeds"):   # not per run
            for text in texts:
                report.fail("runs", text)
        else:
            report.fail("runs", f"{len(texts)} runs fail the {kind} check: {texts[0]} (and "
                        f"{len(texts) - 1} more)")
    report.checks.append(f"runs ({len(doc['runs'])}: keys, settings, grid, steps, coverage, "
                         "scored positions recounted from the test data, no copied seeds)")


# -- 5. aggregates -------------------------------------------------------------------------
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
            tie = (f", the lower test loss ({top['loss']!r} against {chosen['loss']!r}) breaking "
                   "the tie" if chosen[metric] == top[metric] else "")
            report.fail("best", f"best entry for {where} is run {chosen['run_key']} "
                        f"({metric} {chosen[metric]:.6g}), but the best of its sweep is "
                        f"{top['run_key']} ({metric} {top[metric]:.6g}{tie})")
    scores = task_scores(best, metric)
    claimed = {k: v for k, v in doc["scores"].items() if k != "overall"}
    for task in sorted(set(scores) | set(claimed)):
        if task not in claimed:
            report.fail("scores", f"no score for task {task}, which has runs")
        elif task not in scores:
            report.fail("scores", f"scores.{task} is claimed, but no run of {task} exists")
        elif differs(claimed[task], scores[task]):
            report.fail("scores", f"scores.{task} is {claimed[task]!r}, but its runs give "
                        f"{scores[task]!r}")
    overall = mad_score(scores)
    if not math.isfinite(overall) or differs(doc["scores"]["overall"], overall):
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
                interval is not None and any(differs(a, b) for a, b in zip(given, interval))):
            report.fail("scores", f"confidence_interval is {given}, but the runs give "
                        f"{list(interval) if interval else None}")
    report.checks.append("aggregates (best of sweep, task scores, overall, interval)")


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
                    f"{first_line(exc)}")
    return None


def validate_submission(doc: Any, path: str | Path | None = None, *,
                        allow_nonstandard: bool = False, rerun: int = 0,
                        rerun_seed: int | None = None, tolerance: float = DEFAULT_TOLERANCE,
                        audit_dim: int = VALIDATE_AUDIT_DIM, device: str = "auto",
                        rebuild: bool = True, trust_code: bool = False,
                        budget: Budget = Budget(),
                        progress: Callable[[str], None] | None = None,
                        rerun_engine: str = "auto") -> Report:
    """Checks 1 to 7 (this module's docstring) on one parsed submission. ``rebuild=False``
    skips the checks that build the architecture (6, beyond the hash) and the re-runs (trained
    with ``rerun_engine``, see ``reruns.check_reruns``); ``trust_code`` imports mixers that
    ``trust`` does not vouch for (code the submission names); ``progress`` gets a line as
    each slow step (the rebuild, each re-run) starts and ends."""
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
    """``*.json`` files, links to folders and folders named ``*.json`` below ``folder`` (its
    board folders only, if it has any); a link is listed, never followed, and what is not a
    file fails as no submission (as ``render`` stops at it)."""
    boards = [b for b in BOARDS if (folder / b).is_dir()]
    for where, folders, files in os.walk(folder):
        here = Path(where)
        if here == folder and boards:
            folders[:], files = boards, []
        yield from (here / f for f in folders if (here / f).is_symlink() or f.endswith(".json"))
        yield from (here / f for f in files if f.endswith(".json"))
