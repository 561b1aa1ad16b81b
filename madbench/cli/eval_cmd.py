"""``madbench eval``, ``report``, ``compare`` and ``plot``."""
from __future__ import annotations

import datetime as dt
import re
import time
from pathlib import Path
from typing import Sequence

import click

from .. import figures, report
from ..errors import UsageError, printable_lines
from ..limits import MAX_RUNS_PER_GPU
from ..protocol import PRESETS
from ..records import group_records, of_kind
from ..report import FORMATS, json_text, render
from .preflight import distinct_paths, run_dir_of, writable_dir, writable_file
from .progress import RunProgress, all_stored, compact, duration, limit_line, plural
from . import CHANNEL_HELP, FiniteFloat, no_progress_option, resumes, time_limit_option

# madbench modules that load torch, numpy or pyarrow are imported inside the commands that
# use them, so that `madbench eval --help` starts fast.


def _parse_seeds(text: str) -> list[int]:
    try:
        return [int(s) for s in text.split(",") if s.strip()]
    except ValueError:
        raise UsageError(f"--seeds takes comma-separated integers, not {text!r}") from None


def _parse_overrides(items: tuple[str, ...]) -> dict[str, str]:
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise UsageError(f"--set takes FIELD=VALUE, not {item!r}")
        out[key.strip()] = value
    return out


def results_path(output: str, arch: str, now: dt.datetime | None = None) -> Path:
    """``--output``: a ``.json`` file as given; otherwise a directory, holding
    ``<arch>/results_<UTC time>.json`` (the architecture name made file-safe)."""
    path = Path(output)
    if path.suffix.lower() == ".json" and not path.is_dir():
        return path
    now = now or dt.datetime.now(dt.timezone.utc)
    folder = path / (re.sub(r"[^A-Za-z0-9._+-]+", "_", arch).strip("._") or "arch")
    folder.mkdir(parents=True, exist_ok=True)
    return folder / f"results_{now.strftime('%Y-%m-%dT%H-%M-%S')}.json"


class _Progress(RunProgress):
    """Runs done/total with ETA, and the run in flight (task, setting, lr, wd, epoch, loss);
    in a log, one line per finished run."""

    def __call__(self, event: str, info: dict) -> None:
        if event == "start":
            self.start(info["total"], info["done"])
        elif event == "run":
            lr, wd = (compact(v) if isinstance(v, (int, float)) else v    # or "sweep"
                      for v in (info["lr"], info["wd"]))
            self.current = f"{info['task']} {info['setting']} lr={lr} wd={wd} seed={info['seed']}"
            if "worker" in info:          # one of several local workers
                self.current = f"[{info['worker']}] {self.current}"
            self.describe(self.current)
        elif event == "epoch":
            self.describe(f"{self.current} epoch {info['epoch']}/{info['epochs']} "
                          f"loss={info['loss']:.3f}")
        elif event == "status":           # e.g. groups in flight on Ray
            self.describe(info["text"])
        elif event == "done":
            self.advance()
            self.stored += bool(info.get("stored"))     # by another process: not trained here
            self.log(run_line(info))


def run_line(info: dict) -> str:
    """A finished run in one line: ``memorization baseline lr=1e-3 wd=0 acc=0.998 41 s``."""
    if info.get("task") is None:   # stored by another process, a worker that died, or Ray
        who = "process" if info.get("stored") else "worker"
        return f"a run stored by another {who}" + (f" [{info['worker']}]" if "worker" in info
                                                   else "")
    seed = f" seed={info['seed']}" if info.get("seed") else ""
    acc = "DIVERGED" if info.get("diverged") else f"acc={info['accuracy']:.3f}"
    together = info.get("together", 1)
    together = f" ({together} configurations trained together)" if together > 1 else ""
    where = f" [{info['worker']}]" if "worker" in info else ""
    return (f"{info['task']} {info['setting']} lr={compact(info['lr'])} "
            f"wd={compact(info['wd'])}{seed} {acc} {duration(info['seconds'])}{together}{where}")


def describe_plan(estimate, protocol, run_dir: str, executor: str,
                  pending: Sequence = (), limit=None) -> list[str]:
    """What is about to run, before it runs: stored and pending runs, the estimated time (and
    what fits a ``TimeLimit``); a warning when a protocol sized for a GPU starts on CPU, and a
    note when a convergence stop is set where evaluating every epoch costs more than an epoch
    (``pending``: the jobs)."""
    from ..estimate import GPU_PROTOCOLS, costly_stops
    lines = []
    if estimate.stored:
        lines.append(f"{estimate.stored:,} of {plural(estimate.total, 'run')} already stored in "
                     f"{run_dir}")
    if not estimate.pending:
        lines.append(all_stored(estimate.total, run_dir))
        return lines
    where = estimate.device + (f" x {estimate.devices} devices" if estimate.devices > 1 else "")
    if estimate.workers > estimate.devices:
        where += (f" ({estimate.workers} workers; those sharing a device are not counted as "
                  "faster together)")
    probed, cluster = "probed on a Ray worker", "the Ray cluster"
    if estimate.local_stand_in:
        probed = ("probed here: no Ray cluster is running and a dry run starts none, so this "
                  "machine stands in for the local instance eval would start")
        cluster = "that instance"
    if executor == "ray" and estimate.device.startswith("cuda"):
        where = (f"{cluster}'s {plural(estimate.devices, 'GPU')} ({probed}"
                 + (f"; {estimate.workers} runs at once, those sharing a GPU not counted as "
                    "faster together)" if estimate.workers > estimate.devices else ")"))
    elif executor == "ray":
        where = (f"cpu ({probed}; {cluster} runs {estimate.workers} at once, not counted as "
                 "faster together)")
    (short, first), *rest = estimate.probes
    measured = f"{first:.3g} s per run-step of {estimate.batch} x {short} tokens"
    if rest:
        measured += "".join(f", {t:.3g} s at {length}" for length, t in rest)
        measured += " (linear in length between)"
    lines.append(f"training {plural(estimate.pending, 'run')} ({estimate.tokens:.3g} training "
                 f"tokens): about {duration(estimate.seconds)} on {where}, from a measured "
                 f"{measured}")
    if limit is not None:
        from ..sweep import group_jobs
        fit = sum(len(g) for g in limit.planned(group_jobs(pending), estimate.devices))
        lines.append(limit_line(limit, fit, estimate.pending))
    if estimate.device.startswith("cpu") and protocol.name in GPU_PROTOCOLS:
        lines.append(f"Warning: protocol {protocol.name!r} is sized for a GPU; on CPU its "
                     f"{plural(estimate.pending, 'run')} take about {duration(estimate.seconds)}."
                     " '--preset smoke' checks all six tasks in minutes. Ctrl-C stops; finished "
                     "runs are kept and the same command resumes.")
    costly = costly_stops(pending, protocol)
    if costly:
        lines.append(f"Note: early_stop_accuracy evaluates every epoch; on {len(costly)} of the "
                     f"pending settings ({costly[0]}{', ...' if len(costly) > 1 else ''}) the "
                     "test set has as many batches as an epoch has steps or more, so stopping "
                     "early may cost more time than it saves (memorization under paper: 1.4x "
                     "the time; docs/protocol.md).")
    return lines


def describe_tasks(estimate, protocol, pending: Sequence) -> list[str]:
    """A dry run's breakdown of the estimate: per task, its pending runs and their time (the
    same probes and rule as the total)."""
    from ..estimate import group_seconds
    from ..sweep import group_jobs
    if not estimate.pending:
        return []
    tasks: dict[str, list] = {}
    for group in group_jobs(pending):
        runs_seconds = tasks.setdefault(group[0].task.name, [0, 0.0])
        runs_seconds[0] += len(group)
        runs_seconds[1] += group_seconds(group, protocol, estimate.probes) / estimate.devices
    width = max(map(len, tasks))
    return ["by task:"] + [f"  {name:<{width}}  {plural(n, 'run'):>9}  about {duration(t)}"
                           for name, (n, t) in tasks.items()]


@click.command("eval")
@click.option("--arch", required=True, help="Registered architecture or mixer, pkg.module:Class, "
              "or a shorthand such as mH-Sg-mA-Sg.")
@click.option("--channel", default=None, help=CHANNEL_HELP)
@click.option("--striped", is_flag=True, help="Make the second block multi-head attention.")
@click.option("--mixer-kwargs", default=None, help="JSON object of constructor arguments.")
@click.option("--tasks", "tasks_text", default="all", show_default=True,
              help="'all' or comma-separated task names.")
@click.option("--settings", "settings_text", default="preset", show_default=True,
              metavar="preset|baseline|all|NAME,...", help="Which settings of each task: "
              "'preset' follows --preset; or setting names, e.g. baseline,vocab_size=512 (a "
              "name applies to every selected task that has it; TASK:NAME to one task; a selected "
              "task left with no setting is named in a warning).")
@click.option("--preset", type=click.Choice(list(PRESETS)), default="paper", show_default=True,
              help="The protocol (docs/protocol.md): paper (the paper's Table B.1, a GPU's "
              "work), mad-lab (what the reference code does), quick (all settings, shorter), "
              "smoke (a CPU sanity run that learns little).")
@click.option("--set", "overrides", multiple=True, metavar="FIELD=VALUE",
              help="Override a protocol field (repeatable), e.g. --set epochs=20.")
@click.option("--seeds", default="0", show_default=True, help="Comma-separated seeds.")
@click.option("--run-dir", default="runs", show_default=True, type=click.Path(file_okay=False),
              help="Where run records are stored; re-running resumes.")
@click.option("--output", default=None, type=click.Path(), metavar="FILE.json|DIR",
              help="Write the result JSON to this file; or, given a directory (existing, or "
              "a path without .json), to DIR/<arch>/results_<UTC time>.json, as lm-eval's "
              "--output_path does.")
@click.option("--format", "fmt", type=click.Choice(FORMATS), default="table", show_default=True)
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda or cuda:N.")
@click.option("--precision", type=click.Choice(["auto", "bf16", "fp32"]), default="auto",
              show_default=True, help="auto: bf16 on CUDA, fp32 on CPU.")
@click.option("--allow-state-mismatch", is_flag=True,
              help="Evaluate even if the total fixed state misses the target (flagged).")
@click.option("--state-target", default=4096, show_default=True, type=click.IntRange(min=1),
              help="Total fixed state that models without attention must carry.")
@click.option("--param-tolerance", default=0.2, show_default=True,
              type=FiniteFloat(min=0), help="Flag non-embedding parameters more than this "
              "fraction away from the mA-Sg-mA-Sg baseline.")
@click.option("--engine", type=click.Choice(["auto", "graphed", "compiled", "batched", "plain"]),
              default="auto", show_default=True, help="graphed: a setting's lr x wd "
              "configurations side by side, each step one CUDA graph (auto on CUDA); compiled: "
              "graphed with torch.compile'd models, each checked against eager first "
              "(experimental); batched: the configurations as one vmapped model; plain: one run "
              "at a time (auto on CPU).")
@click.option("--executor", type=click.Choice(["local", "ray"]), default="local",
              show_default=True, help="local: one worker process per visible GPU (in this "
              "process on CPU or one GPU); ray: each setting's runs as a Ray task.")
@click.option("--ray-address", default=None, metavar="ADDR", help="Ray cluster to join "
              "(default: RAY_ADDRESS, else a new local Ray instance).")
@click.option("--runs-per-gpu", default=1, show_default=True, type=click.IntRange(min=1),
              help=f"Groups of runs trained at once on each GPU (at most {MAX_RUNS_PER_GPU}).")
@click.option("--group-size", type=click.IntRange(min=1), default=None, metavar="N",
              help="Train at most N of a setting's lr x wd configurations side by side "
              "(default: all of them, the fastest on a GPU). Smaller groups each take less "
              "time, so that one fits a short --time-limit or job slot; the runs are the "
              "same runs (their keys unchanged).")
@time_limit_option("group of runs", "groups", "its estimated time")
@no_progress_option
@click.option("--dry-run", is_flag=True, help="Check, plan and estimate the time; train "
              "nothing (causality at a length longer than the MAD tasks' is left to the run, "
              "which checks it before it trains).")
def eval_command(arch, channel, striped, mixer_kwargs, tasks_text, settings_text, preset,
                 overrides, seeds, run_dir, output, fmt, device, precision, allow_state_mismatch,
                 state_target, param_tolerance, engine, executor, ray_address, runs_per_gpu,
                 group_size, time_limit_text, no_progress, dry_run):
    """Evaluate an architecture on the MAD suite with the standardized sweep.

    Checks causality, state and parameter count first (exit 3 when refused), trains every
    (setting, lr, weight decay, seed) run not yet stored in --run-dir, and prints per-task
    scores (exit 4 instead when --time-limit left runs untrained)."""
    started = time.monotonic()
    resumes()
    from ..evaluator import prepare
    from ..sweep import parse_settings
    from ..time_limit import TimeLimitReached, parse_duration
    limit_seconds = None if time_limit_text is None else parse_duration(time_limit_text)

    def check_paths():
        if output is not None:   # a .json file must have an existing folder; a directory is
            # created ('' is refused, never ignored)
            if Path(output).suffix.lower() == ".json" and not Path(output).is_dir():
                writable_file(output, "--output")
            else:
                writable_dir(output, "--output")
        if not dry_run:
            writable_dir(run_dir, "--run-dir")
        run_dir_of(run_dir, "eval", "--run-dir")

    # every argument is checked before the first run trains (one line, exit 2 or 3)
    evaluation = prepare(
        arch, tasks=tasks_text, protocol=preset, overrides=_parse_overrides(overrides),
        seeds=_parse_seeds(seeds), settings=parse_settings(settings_text), run_dir=run_dir,
        device=device, precision=precision, channel=channel, striped=striped,
        mixer_kwargs=mixer_kwargs, allow_state_mismatch=allow_state_mismatch,
        state_target=state_target, param_tolerance=param_tolerance, engine=engine,
        executor=executor, ray_address=ray_address, runs_per_gpu=runs_per_gpu,
        group_size=group_size, preflight=check_paths, dry_run=dry_run)
    pending = evaluation.pending(heal=not dry_run)   # read once: the estimate, the plan's note
    estimate = evaluation.estimate(pending)
    limit = None
    if limit_seconds is not None and estimate.pending:
        limit = evaluation.time_limit(limit_seconds, estimate, started)
    for line in describe_plan(estimate, evaluation.protocol, run_dir, executor, pending,
                              limit):
        click.echo(line, err=True)
    from ..verdict import flags_note
    note = flags_note(evaluation.checks)
    if note and estimate.pending:
        click.echo(note, err=True)
    if dry_run:           # a dry run changes nothing in the run directory
        for line in describe_tasks(estimate, evaluation.protocol, pending):
            click.echo(line, err=True)
        if evaluation.unchecked:
            from ..verdict import not_checked_line
            click.echo(not_checked_line(evaluation.unchecked), err=True)
        unreadable = evaluation.unreadable()
        if unreadable:
            click.echo(f"{plural(len(unreadable), 'file')} under {run_dir}/records cannot be "
                       f"read as records (e.g. {unreadable[0].name}): eval would move them to "
                       f"{run_dir}/quarantine; their runs count as not stored", err=True)
        return
    with _Progress(enabled=not no_progress) as progress:
        try:
            records = evaluation.train(progress, limit)
        except TimeLimitReached as stop:
            progress.stop(stop)
    results = evaluation.results(records)
    if estimate.pending:
        click.echo(progress.summary(), err=True)
    if output is not None:
        path = results_path(output, evaluation.spec.name)
        path.write_text(json_text(report.as_document(results)))
        click.echo(f"wrote {path}", err=True)
    # headed as 'madbench report RUN_DIR' heads it: named among the run directory's groups
    # (its records as training left them, already read: not read again)
    name = None if fmt == "json" else report.label_among(results,
                                                         of_kind(records, "eval", run_dir))
    click.echo(render(results, fmt, name))


def _groups(run_dirs) -> list[list[dict]]:
    """The stored records of ``run_dirs``, one group per architecture and protocol."""
    from ..store import load_records
    records = load_records(run_dirs)
    if not records:
        raise UsageError(f"no run records in {', '.join(run_dirs)}")
    return list(group_records(records).values())


@click.command("report")
@click.argument("run_dirs", nargs=-1, required=True,
                type=click.Path(exists=True, file_okay=False))
@click.option("--format", "fmt", type=click.Choice(FORMATS), default="table", show_default=True)
@click.option("--html", "html_path", default=None, type=click.Path(dir_okay=False),
              metavar="FILE.html", help="Write a self-contained page (tables, bars, difficulty "
              "curves, provenance) to open or attach to a pull request.")
def report_command(run_dirs, fmt, html_path):
    """Re-render the stored results of RUN_DIR (one block per architecture and protocol), or
    write them as an HTML page.

    Several run directories are reported together."""
    if html_path is not None:          # '' too: an empty path is refused, never ignored
        source = click.get_current_context().get_parameter_source("fmt")
        if source is not click.core.ParameterSource.DEFAULT:    # it would be ignored
            raise UsageError(f"--format {fmt} and --html: the page is HTML; give one of them")
        writable_file(html_path, "--html")
    run_dirs = distinct_paths(run_dirs)
    groups = _groups(run_dirs)
    if html_path is not None:
        report.write_html(html_path, groups, run_dirs)
        click.echo(f"wrote {html_path}")
        return
    click.echo(printable_lines(report.render_groups(groups, fmt)))   # the records' text


@click.command("compare")
@click.argument("run_dirs", nargs=-1, required=True,
                type=click.Path(exists=True, file_okay=False))
@click.option("--format", "fmt", type=click.Choice(FORMATS), default="table", show_default=True)
def compare_command(run_dirs, fmt):
    """Show several architectures side by side: one column per architecture and protocol."""
    click.echo(printable_lines(report.compare(_groups(distinct_paths(run_dirs)), fmt)))


@click.command("plot")
@click.argument("run_dirs", nargs=-1, required=True,
                type=click.Path(exists=True, file_okay=False))
@click.option("--out", required=True, type=click.Path(dir_okay=False), help="PNG file to write.")
@click.option("--kind", type=click.Choice(["bars", "curves"]), default="bars", show_default=True,
              help="bars: per-task scores per architecture (the paper's Fig. 3.7); curves: per "
              "task, the score against each varied difficulty variable, one line per "
              "architecture (its Figs. B.2-B.7).")
def plot_command(run_dirs, out, kind):
    """Per-task bars, or the paper's difficulty curves, from stored runs.

    Give one run directory per architecture (or one holding several)."""
    figures.image_path(out, "--out")     # usage errors (matplotlib, format) before any work
    writable_file(out, "--out")
    report.plot(out, _groups(distinct_paths(run_dirs)), kind)
    click.echo(f"wrote {out}")


COMMANDS = [eval_command, report_command, compare_command, plot_command]
