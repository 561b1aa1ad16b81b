"""``madbench leaderboard submit | validate | render | agree``.

Exit codes: 0 valid / up to date; 2 bad usage (missing file, bad option); 3 a submission is
invalid — malformed input included (not JSON, NaN, huge numbers, deep nesting, a file over the
size cap), each with a one-line reason — or the README tables are stale.
"""
from __future__ import annotations

import json
import shlex
import sys
from pathlib import Path

import click

from ..budget import DEFAULT_TOLERANCE, PRECISION_MARGIN, VALIDATE_AUDIT_DIM, Budget
from ..errors import CheckFailed, UsageError, printable
from ..leaderboard.changes import changed_files
from ..protocol import Protocol
from .preflight import distinct_paths, run_dir_of, writable_file
from .progress import plural
from . import FiniteFloat

# madbench modules that load torch, numpy or pyarrow are imported inside the commands that
# use them, so that `madbench leaderboard --help` starts fast.


@click.group("leaderboard")
def leaderboard_group() -> None:
    """Leaderboard submissions: build, validate, render the tables.

    Exit codes: 0 valid or up to date; 2 bad usage (missing file, bad option); 3 an invalid
    submission (malformed input included: not JSON, NaN, huge numbers, deep nesting, a file
    over the size cap), or stale tables."""


@leaderboard_group.command("submit")
@click.argument("run_dir", type=click.Path(exists=True, file_okay=False))
@click.option("--name", required=True, help="The entry's name on the board.")
@click.option("--out", required=True, type=click.Path(dir_okay=False), help="JSON file to write "
              "(for a board: leaderboards/<board>/<name>.json).")
@click.option("--arch-filter", default=None, help="Architecture name or hash prefix, when the "
              "run directory holds several.")
@click.option("--protocol-filter", default=None, help="Protocol name or hash, when the run "
              "directory holds several.")
@click.option("--command", "command_line", default=None, help="The madbench eval command that "
              "produced the runs (default: rebuilt from the records).")
@click.option("--audit-dim", type=click.IntRange(min=1), default=VALIDATE_AUDIT_DIM,
              show_default=True,
              help=f"Width of the state audit (validate re-runs it at {VALIDATE_AUDIT_DIM} and "
              "compares the numbers when the widths agree).")
@click.option("--tasks", "task_names", default=None, help="Only these tasks' runs "
              "(comma-separated): a partial entry from a run directory that holds more.")
def submit_command(run_dir, name, out, arch_filter, protocol_filter, command_line, audit_dim,
                   task_names):
    """Build a submission from the run records in RUN_DIR."""
    from ..leaderboard.boards import BOARDS, board_of_folder, describe_protocol
    from ..leaderboard.schema import load_schema, schema_errors
    from ..leaderboard.submit import build_submission

    if printable(name) != name:
        raise UsageError(f"--name {printable(name)}: control characters, bidirectional "
                         "overrides and undecodable bytes are not allowed in a name")
    schema = load_schema()
    for problem in schema_errors(name, {"$ref": "#/$defs/entry_name", "$defs": schema["$defs"]}):
        raise UsageError(f"--name {name!r}: {problem.split(': ', 1)[-1]}")
    for problem in ([] if command_line is None else schema_errors(
            command_line, {**schema["properties"]["command"], "$defs": schema["$defs"]})):
        raise UsageError(f"--command: {problem.split(': ', 1)[-1]}")
    writable_file(out, "--out")
    if printable(Path(out).name) != Path(out).name:     # validate and render refuse the file
        raise UsageError(f"--out {printable(out)}: the file name holds control characters or "
                         "bidirectional overrides; name it in plain text")
    folder, direct = board_of_folder(out)     # in a folder named after a board: its entry
    if folder is not None and not direct:     # validate fails any file below one
        raise UsageError(f"--out {printable(out)}: in a folder below the {folder} board "
                         "folder; board entries go directly in the board's folder")
    tasks = [t.strip() for t in task_names.split(",") if t.strip()] if task_names else None
    if task_names is not None and not tasks:
        raise UsageError("--tasks: give at least one task name")
    from ..tasks import get_task
    tasks = [get_task(t).name for t in tasks] if tasks else None     # unknown: a usage error
    run_dir_of(run_dir, "eval", "RUN_DIR")     # a scaling run directory makes no entry

    click.echo(f"building the submission from {run_dir}: the architecture is rebuilt and its "
               f"state audited at width {audit_dim} (a minute or more on a CPU)", err=True)
    doc = build_submission(run_dir, name, arch_filter, protocol_filter, command_line,
                           shlex.join(["madbench", "leaderboard", "submit", *sys.argv[3:]])
                           if sys.argv[1:3] == ["leaderboard", "submit"] else None, audit_dim,
                           tasks=tasks)
    if folder is not None and doc["board"] != folder:
        raise UsageError(f"--out {out}: {folder} ranks runs of protocol {BOARDS[folder]} "
                         "without overrides, and these runs are of "
                         f"{describe_protocol(Protocol.from_dict(doc['protocol']))}; nothing "
                         "written (write it outside the board's folder)")
    for problem in schema_errors(doc, schema):
        raise CheckFailed(f"the submission built from {run_dir} breaks the schema "
                          f"({problem}); nothing written")
    Path(out).write_text(json.dumps(doc, indent=2, allow_nan=False) + "\n", encoding="utf-8")
    where = (f"board {doc['board']}" if doc["board"] else "no board (protocol "
             f"{describe_protocol(Protocol.from_dict(doc['protocol']))} is not a board's)")
    from ..scoring import score_label
    from ..leaderboard.boards import suite_tasks
    from ..leaderboard.validate import coverage_problems
    for _check, why in coverage_problems(doc, {t.name: t for t in suite_tasks()},
                                         Protocol.from_dict(doc["protocol"])):
        click.echo(f"warning: {why}; validate will refuse this file (train the rest, or leave "
                   "those tasks out with --tasks)", err=True)
    tasks = [t for t in doc["scores"] if t != "overall"]
    click.echo(f"wrote {out}: {printable(doc['name'])} — {doc['architecture']['name']}, {where}, "
               f"{plural(len(doc['runs']), 'run')}, {score_label(tasks)} "
               f"{doc['scores']['overall']:.3f}")


def _progress_line(line: str) -> None:
    click.echo(printable(line), err=True)     # names in it come from the submission


@leaderboard_group.command("validate")
@click.argument("paths", nargs=-1, required=True, type=click.Path())
@click.option("--rerun", type=click.IntRange(min=0), default=0, show_default=True,
              help="Re-train the best runs of K settings, stratified over the tasks and drawn "
              "uniformly within the token budget, with madbench's own protocol.")
@click.option("--rerun-seed", type=click.IntRange(min=0), default=None,
              help="Seed of the re-run sample (default: random, printed).")
@click.option("--tolerance", type=FiniteFloat(min=0), default=DEFAULT_TOLERANCE,
              show_default=True,
              help="Largest accepted |accuracy difference| of a re-run (plus "
              f"{PRECISION_MARGIN:g} for one trained in another precision than its claim, "
              "as a CPU re-run of a bf16 GPU claim is).")
@click.option("--audit-dim", type=click.IntRange(min=1), default=VALIDATE_AUDIT_DIM,
              show_default=True,
              help="Width the state audit is re-run at (reduced to stay fast).")
@click.option("--allow-nonstandard", is_flag=True, help="Check a submission whose protocol is "
              "no board's (a trial run) instead of refusing it.")
@click.option("--device", default="auto", show_default=True, help="Device for --rerun: auto, "
              "cpu, cuda or cuda:N (checked as madbench eval checks it, before any work).")
@click.option("--rerun-engine", type=click.Choice(["auto", "graphed", "plain"]), default="auto",
              show_default=True, help="Engine of the re-runs: auto trains as `madbench eval` "
              "does (graphed on CUDA, plain on CPU); plain: the reference step, one run at a "
              "time (several times slower on a GPU).")
@click.option("--trust-code", is_flag=True, help="Import mixers that are neither bundled nor "
              "from an installed plugin distribution named in the submission with its "
              "version (code the submission names runs here; never from the working "
              "directory unless it is on PYTHONPATH). Off by default: such an architecture "
              "is reported as not rebuilt (untrusted code).")
@click.option("--changed-since", default=None, metavar="REF", help="Re-run (--rerun) only the "
              "files added or changed since the merge base of REF and HEAD (git; CI: the "
              "target branch); the others get every other check. A duplicate of an entry "
              "already there is blamed on the added or changed file.")
@click.option("--check-seconds", type=FiniteFloat(min=1), default=Budget.check_seconds,
              show_default=True, help="Time budget for rebuilding and checking one "
              "architecture.")
@click.option("--rerun-seconds", type=FiniteFloat(min=1), default=Budget.rerun_seconds,
              show_default=True, help="Time budget for the re-runs of one submission.")
@click.option("--rerun-max-tokens", type=click.IntRange(min=1), default=None,
              help="Largest run (steps x batch x length) a re-run may train [default: the "
              "largest run of a board's protocol]. A budget that admits none of an entry's "
              "runs, where the default admits one, is a usage error (exit 2, before any work).")
@click.option("--json", "as_json", is_flag=True, help="Print the reports as JSON.")
def validate_command(paths, rerun, rerun_seed, tolerance, audit_dim, allow_nonstandard, device,
                     rerun_engine, trust_code, changed_since, check_seconds, rerun_seconds,
                     rerun_max_tokens, as_json):
    """Validate submission files (directories: every *.json below; a file named twice is
    validated once). Exit 3 when one is invalid, with a reason for every failure. Nothing the
    submission names is imported unless it is a bundled layer or comes from an installed
    plugin distribution named with its version (see --trust-code)."""
    from ..evaluator import resolve_placement
    from ..leaderboard.duplicates import duplicate_entries
    from ..leaderboard.report import Report
    from ..leaderboard.reruns import rerun_budget_problem
    from ..leaderboard.validate import read_file, submission_files, validate_file

    files = distinct_paths(submission_files(paths), follow_links=False)   # each file once
    if not files:
        raise UsageError(f"no submissions (*.json) under {', '.join(paths)}: nothing was "
                         "validated")
    resolve_placement(device)          # checked as madbench eval checks it, before any work
    budget = Budget(check_seconds=check_seconds, rerun_seconds=rerun_seconds,
                    rerun_max_tokens=rerun_max_tokens)
    # the files a pull request adds or changes: the only ones re-run, and the ones blamed for
    # a duplicate of an entry already there
    since = changed_files(paths, changed_since) if changed_since else None
    changed = since if rerun and since is not None else {f.resolve() for f in files}
    # a token budget too small for an entry is this command's usage error, found before any
    # file is validated, not a failure of the entry (see rerun_budget_problem); each file so
    # looked at is read once: what was looked at is what is validated
    read = {}
    for f in (f for f in files if rerun and f.resolve() in changed):
        try:
            read[f] = read_file(f)
        except UsageError:           # gone since it was listed: its validation says so
            continue
        if isinstance(read[f], Report):  # unreadable: its validation says why
            continue
        problem = rerun_budget_problem(read[f], budget)
        if problem:
            raise UsageError(f"{printable(str(f))}: {problem}; nothing was validated")
    reports = []
    for i, f in enumerate(files, 1):     # each file can take minutes (rebuild, audit, re-runs)
        if not as_json:
            click.echo(f"[{i}/{len(files)}] validating {printable(str(f))}", err=True)
        reports.append(validate_file(f, read.pop(f, None),
                                     allow_nonstandard=allow_nonstandard,
                                     rerun=rerun if f.resolve() in changed else 0,
                                     rerun_seed=rerun_seed, tolerance=tolerance,
                                     audit_dim=audit_dim, device=device, trust_code=trust_code,
                                     budget=budget, rerun_engine=rerun_engine,
                                     progress=None if as_json else _progress_line))
    duplicate_entries(reports, since)
    valid = all(r.valid for r in reports)
    if as_json:
        click.echo(json.dumps({"valid": valid, "files": [r.to_dict() for r in reports]},
                              indent=2))
    else:
        for report in reports:
            for line in report.lines():
                click.echo(line)
        bad = sum(not r.valid for r in reports)
        click.echo(f"{len(reports) - bad} valid, {bad} invalid")
    if not valid:
        click.get_current_context().exit(3)


@leaderboard_group.command("render")
@click.option("--root", default="leaderboards", show_default=True,
              type=click.Path(file_okay=False), help="The leaderboards folder.")
@click.option("--check", is_flag=True, help="Do not write; exit 3 when README.md is stale.")
def render_command(root, check):
    """Regenerate the board tables in leaderboards/README.md from the submission files."""
    from ..leaderboard.render import README, render

    changed = render(root, check=check)
    readme = Path(root) / README
    click.echo(f"{readme} is up to date" if not changed else f"updated {readme}")


@leaderboard_group.command("agree")
@click.argument("first", default="mad-quick")
@click.argument("second", default="mad-paper")
@click.option("--root", default="leaderboards", show_default=True,
              type=click.Path(file_okay=False), help="The leaderboards folder.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def agree_command(first, second, root, as_json):
    """How well one board predicts another (default: mad-quick against mad-paper): per task
    and on the MAD score, over the architectures on both, the Spearman rank correlation, the
    mean absolute score difference and the mean difference (SECOND minus FIRST); then each
    task's scores per architecture, with their rank on each board."""
    from ..leaderboard.agree import agreement, agreement_table
    from ..leaderboard.boards import BOARDS

    for board in (first, second):
        if board not in BOARDS:
            raise UsageError(f"unknown board {board!r}; boards: {', '.join(BOARDS)}")
    if first == second:
        raise UsageError("name two different boards")
    missing = [b for b in (first, second) if not (Path(root) / b).is_dir()]
    if missing:
        raise UsageError(f"{Path(root) / missing[0]}: no such folder (run from the repository "
                         "root or pass --root)")
    result = agreement(root, first, second)
    click.echo(json.dumps(result, indent=2) if as_json else agreement_table(result))


COMMANDS = [leaderboard_group]
