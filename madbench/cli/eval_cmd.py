"""``madbench eval``, ``report``, ``compare`` and ``plot``."""
from __future__ import annotations

import datetime as dt
import json
import math
import re
from pathlib import Path

import click
from tabulate import tabulate

from ..errors import UsageError
from ..protocol import PRESETS, get_protocol
from .progress import RunProgress, compact, duration, plural

FORMATS = ("table", "json", "markdown")
MAX_SEED = 2**63 - 1        #: seeds are stored as 64-bit integers


def _parse_seeds(text: str) -> list[int]:
    try:
        seeds = [int(s) for s in text.split(",") if s.strip()]
    except ValueError:
        raise UsageError(f"--seeds takes comma-separated integers, not {text!r}") from None
    if not seeds or any(s < 0 for s in seeds):
        raise UsageError("--seeds needs at least one non-negative integer")
    if any(s > MAX_SEED for s in seeds):
        raise UsageError(f"--seeds: a seed is at most {MAX_SEED} (2**63 - 1)")
    return sorted(set(seeds))


def _parse_overrides(items: tuple[str, ...]) -> dict[str, str]:
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise UsageError(f"--set takes FIELD=VALUE, not {item!r}")
        out[key.strip()] = value
    return out


def _select_tasks(text: str):
    from ..tasks import all_tasks, get_task
    if text == "all":
        return all_tasks()
    tasks = [get_task(name.strip()) for name in text.split(",") if name.strip()]
    if not tasks:
        raise UsageError(f"--tasks {text!r} names no task ('all' or comma-separated names)")
    return tasks


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


def _fmt(x) -> str:
    return "-" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.3f}"


def _label(summary: dict) -> str:
    """``MAD score`` over the six MAD tasks, else ``mean of N tasks`` (see score_label)."""
    from ..scoring import score_label
    return summary.get("score_label") or score_label(summary["tasks"])


def render(summary: dict, fmt: str) -> str:
    """A summary as a per-task table (plain or markdown) or JSON."""
    if fmt == "json":
        return json.dumps(summary, indent=2)
    results = summary.get("results") or {t: {"score": v} for t, v in summary["tasks"].items()}
    with_stderr = any(r.get("stderr") is not None for r in results.values())
    rows = [[task, _fmt(r["score"]), len(r.get("settings") or {}) or "-"] +
            ([_fmt(r.get("stderr"))] if with_stderr else []) for task, r in results.items()]
    rows.append([_label(summary), _fmt(summary["mad_score"]), ""] + ([""] if with_stderr else []))
    title = (f"{summary['architecture']['name']} — protocol {summary['protocol']['name']}"
             f"{'' if summary['protocol'].get('standard', True) else ' (non-standard)'}"
             f", metric {summary['metric']}, {plural(summary['runs'], 'run')}")
    table = tabulate(rows, headers=["task", "score", "settings"] +
                     (["stderr"] if with_stderr else []), disable_numparse=True,
                     colalign=("left", "right", "right", "right"),
                     tablefmt="github" if fmt == "markdown" else "simple")
    extra = []
    if summary.get("confidence_interval"):
        lo, hi = summary["confidence_interval"]
        extra.append(f"95% bootstrap interval over seeds: [{lo:.3f}, {hi:.3f}]")
    if summary.get("flags"):
        extra.append("flags: " + ", ".join(summary["flags"]))
    return "\n".join([title, "", table, *extra])


class _Progress(RunProgress):
    """Runs done/total with ETA, and the run in flight (task, setting, lr, wd, epoch, loss);
    in a log, one line per finished run."""

    def __call__(self, event: str, info: dict) -> None:
        if event == "start":
            self.start(info["total"], info["done"])
        elif event == "run":
            self.current = (f"{info['task']} {info['setting']} lr={info['lr']} "
                            f"wd={info['wd']} seed={info['seed']}")
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
            self.log(run_line(info))


def run_line(info: dict) -> str:
    """A finished run in one line: ``memorization baseline lr=1e-3 wd=0 acc=0.998 41 s``."""
    if info.get("task") is None:          # stored by a worker that died, or by Ray
        return "a run stored by another worker" + (f" [{info['worker']}]" if "worker" in info
                                                   else "")
    seed = f" seed={info['seed']}" if info.get("seed") else ""
    acc = "DIVERGED" if info.get("diverged") else f"acc={info['accuracy']:.3f}"
    together = info.get("together", 1)
    together = f" ({together} configurations trained together)" if together > 1 else ""
    where = f" [{info['worker']}]" if "worker" in info else ""
    return (f"{info['task']} {info['setting']} lr={compact(info['lr'])} "
            f"wd={compact(info['wd'])}{seed} {acc} {duration(info['seconds'])}{together}{where}")


def describe_plan(estimate, protocol, run_dir: str, executor: str) -> list[str]:
    """What is about to run, before it runs: stored and pending runs, the estimated time; and a
    warning when a protocol sized for a GPU starts on CPU."""
    from ..estimate import GPU_PROTOCOLS
    lines = []
    if estimate.stored:
        lines.append(f"{estimate.stored:,} of {plural(estimate.total, 'run')} already stored in "
                     f"{run_dir}")
    if not estimate.pending:
        lines.append(f"nothing to train: all {plural(estimate.total, 'run')} are stored in "
                     f"{run_dir}")
        return lines
    where = estimate.device + (f" x {estimate.workers} workers" if estimate.workers > 1 else "")
    if executor == "ray":
        where = f"{estimate.device} (one worker; Ray divides it by the workers it gets)"
    batch, seq_len = estimate.probe_shape
    lines.append(f"training {plural(estimate.pending, 'run')} ({estimate.tokens:.3g} training "
                 f"tokens): about {duration(estimate.seconds)} on {where}, from a measured "
                 f"{estimate.step_seconds:.3g} s per step of {batch} x {seq_len} tokens")
    if estimate.device.startswith("cpu") and protocol.name in GPU_PROTOCOLS:
        lines.append(f"Warning: protocol {protocol.name!r} is sized for a GPU; on CPU its "
                     f"{plural(estimate.pending, 'run')} take about {duration(estimate.seconds)}."
                     " '--preset smoke' checks all six tasks in minutes. Ctrl-C stops; finished "
                     "runs are kept and the same command resumes.")
    return lines


@click.command("eval")
@click.option("--arch", required=True, help="Registered architecture or mixer, pkg.module:Class, "
              "or a shorthand such as mH-Sg-mA-Sg.")
@click.option("--channel", default=None, help="Channel mixer for a single-mixer --arch: "
              "swiglu (default) or moe.")
@click.option("--striped", is_flag=True, help="Make the second block multi-head attention.")
@click.option("--mixer-kwargs", default=None, help="JSON object of constructor arguments.")
@click.option("--tasks", "tasks_text", default="all", show_default=True,
              help="'all' or comma-separated task names.")
@click.option("--settings", "settings_text", default="preset", show_default=True,
              metavar="preset|baseline|all|NAME,...", help="Which settings of each task: "
              "'preset' follows --preset; or setting names, e.g. baseline,vocab_size=512 (a "
              "name applies to every selected task that has it; TASK:NAME to one task).")
@click.option("--preset", type=click.Choice(list(PRESETS)), default="paper", show_default=True)
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
              type=click.FloatRange(min=0), help="Flag non-embedding parameters more than this "
              "fraction away from the mA-Sg-mA-Sg baseline.")
@click.option("--engine", type=click.Choice(["auto", "graphed", "batched", "plain"]),
              default="auto", show_default=True, help="graphed: a setting's lr x wd "
              "configurations side by side, each step one CUDA graph (auto on CUDA); batched: "
              "the configurations as one vmapped model (auto on CPU); plain: one run at a time.")
@click.option("--executor", type=click.Choice(["local", "ray"]), default="local",
              show_default=True, help="local: one worker process per visible GPU (in this "
              "process on CPU or one GPU); ray: each setting's runs as a Ray task.")
@click.option("--ray-address", default=None, metavar="ADDR", help="Ray cluster to join "
              "(default: RAY_ADDRESS, else a new local Ray instance).")
@click.option("--runs-per-gpu", default=1, show_default=True, type=click.IntRange(min=1),
              help="Groups of runs trained at once on each GPU.")
@click.option("--no-progress", is_flag=True, help="No progress bar, and no line per finished "
              "run when stderr is not a terminal.")
@click.option("--dry-run", is_flag=True, help="Check, plan and estimate the time; train nothing.")
def eval_command(arch, channel, striped, mixer_kwargs, tasks_text, settings_text, preset,
                 overrides, seeds, run_dir, output, fmt, device, precision, allow_state_mismatch,
                 state_target, param_tolerance, engine, executor, ray_address, runs_per_gpu,
                 no_progress, dry_run):
    """Evaluate an architecture on the MAD suite with the standardized sweep.

    Checks causality, state and parameter count first (exit 3 when refused), trains every
    (setting, lr, weight decay, seed) run not yet stored in --run-dir, and prints per-task
    scores."""
    from ..architecture import resolve_architecture
    from ..estimate import estimate_sweep
    from ..evaluate import (architecture_checks, parse_settings, pending_groups, plan,
                            summarize)
    from ..executors import local_devices, make_executor
    from ..store import ResultsStore
    from ..trainer import resolve_device, resolve_precision
    from .preflight import writable_dir, writable_file
    # every argument is checked before the first run trains (one line, exit 2 or 3)
    runner = make_executor(executor, ray_address, runs_per_gpu)
    protocol = get_protocol(preset, _parse_overrides(overrides))
    seed_list = _parse_seeds(seeds)
    if executor == "local":
        resolve_precision(resolve_device(device), precision)
    tasks = _select_tasks(tasks_text)
    if output:      # a .json file must have an existing folder; a directory is created
        if Path(output).suffix.lower() == ".json" and not Path(output).is_dir():
            writable_file(output, "--output")
        else:
            writable_dir(output, "--output")
    if not dry_run:
        writable_dir(run_dir, "--run-dir")
    spec = resolve_architecture(arch, channel, striped, mixer_kwargs)
    jobs = plan(spec, tasks, protocol, seed_list, parse_settings(settings_text))
    if not jobs:
        raise UsageError("the sweep is empty: no (task, setting, seed, lr, weight decay) run "
                         "to train")
    checks = architecture_checks(spec, allow_state_mismatch, state_target, param_tolerance)
    # a dry run reads what is stored, and creates no run directory
    store = ResultsStore(run_dir) if not dry_run or Path(run_dir, "records").is_dir() else None
    pending = [job for group in pending_groups(jobs, protocol, store) for job in group] \
        if store else list(jobs)
    workers = len(local_devices(device, runs_per_gpu)) if executor == "local" else 1
    estimate = estimate_sweep(spec, jobs, pending, protocol, device, precision, workers)
    for line in describe_plan(estimate, protocol, run_dir, executor):
        click.echo(line, err=True)
    if dry_run:
        return
    with _Progress(enabled=not no_progress) as progress:
        runner.run(spec, jobs, protocol, store, device, precision, checks, progress, engine)
    if estimate.pending:
        click.echo(progress.summary(), err=True)
    keys = {j.key for j in jobs}
    records = [r for r in store.records() if r["run_key"] in keys]
    summary = summarize(records)
    summary["checks"] = checks
    if output:
        path = results_path(output, spec.name)
        path.write_text(json.dumps(summary, indent=2))
        click.echo(f"wrote {path}", err=True)
    click.echo(render(summary, fmt))


def _groups(run_dirs) -> list[list[dict]]:
    """The stored records of ``run_dirs``, one group per architecture and protocol."""
    from ..evaluate import group_records
    from ..store import load_records
    records = load_records(run_dirs)
    if not records:
        raise UsageError(f"no run records in {', '.join(run_dirs)}")
    return list(group_records(records).values())


def _summaries(run_dirs):
    from ..evaluate import summarize
    return [summarize(group) for group in _groups(run_dirs)]


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
    groups = _groups(run_dirs)
    from ..evaluate import summarize
    summaries = [summarize(group) for group in groups]
    if html_path:
        _write_html(html_path, summaries, groups, run_dirs)
        return
    if fmt == "json":
        click.echo(json.dumps(summaries if len(summaries) > 1 else summaries[0], indent=2))
        return
    click.echo("\n\n".join(render(s, fmt) for s in summaries))


def _write_html(path, summaries, groups, run_dirs) -> None:
    from ..curves import difficulty_curves, series_labels
    from ..html_report import html_page
    figures, note = {}, None
    try:
        from .. import figures as fg
        figures["Scores per task"] = fg.svg(fg.bars_figure(summaries, series_labels(groups)))
        curves = difficulty_curves(groups)
        if curves:
            figures["Difficulty curves"] = fg.svg(fg.curves_figure(
                curves, summaries[0]["metric"], series_labels(groups)))
        else:
            note = ("No difficulty curves: only baseline settings are stored (evaluate with "
                    "--settings all, or setting names such as vocab_size=512).")
    except UsageError as exc:
        note = f"No figures: {exc}"
    Path(path).write_text(html_page(summaries, [str(d) for d in run_dirs], figures, note),
                          encoding="utf-8")
    click.echo(f"wrote {path}")


@click.command("compare")
@click.argument("run_dirs", nargs=-1, required=True,
                type=click.Path(exists=True, file_okay=False))
@click.option("--format", "fmt", type=click.Choice(FORMATS), default="table", show_default=True)
def compare_command(run_dirs, fmt):
    """Show several architectures side by side: one column per architecture and protocol."""
    summaries = _summaries(run_dirs)
    if fmt == "json":
        click.echo(json.dumps({f"{s['architecture']['name']} [{s['protocol']['name']}]":
                               {"mad_score": s["mad_score"], "score_label": _label(s),
                                "tasks": s["tasks"]} for s in summaries}, indent=2))
        return
    tasks = sorted({t for s in summaries for t in s["tasks"]})
    headers = ["task"] + [f"{s['architecture']['name']}\n[{s['protocol']['name']}]"
                          for s in summaries]
    rows = [[t] + [_fmt(s["tasks"].get(t)) for s in summaries] for t in tasks]
    labels = {_label(s) for s in summaries}
    rows.append([labels.pop() if len(labels) == 1 else "mean of its tasks"] +
                [_fmt(s["mad_score"]) for s in summaries])
    click.echo(tabulate(rows, headers=headers, disable_numparse=True,
                        colalign=("left",) + ("right",) * len(summaries),
                        tablefmt="github" if fmt == "markdown" else "simple"))


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
    from .. import figures
    from ..curves import difficulty_curves, series_labels
    plt = figures.pyplot()      # a usage error naming the install command, before any work
    from .preflight import writable_file
    formats = plt.figure().canvas.get_supported_filetypes()
    plt.close("all")
    suffix = Path(out).suffix.lstrip(".").lower()
    if suffix not in formats:
        raise UsageError(f"--out {out}: matplotlib cannot write {suffix or 'a file without a '}"
                         f"{' files' if suffix else 'suffix'} (use one of: "
                         f"{', '.join(sorted(formats))})")
    writable_file(out, "--out")
    groups = _groups(run_dirs)
    if kind == "bars":
        from ..evaluate import summarize
        fig = figures.bars_figure([summarize(group) for group in groups],
                                  series_labels(groups))
    else:
        fig = figures.curves_figure(difficulty_curves(groups),
                                    groups[0][0].get("selection") or "accuracy",
                                    series_labels(groups))
    figures.save(fig, out)
    click.echo(f"wrote {out}")


COMMANDS = [eval_command, report_command, compare_command, plot_command]
