"""Progress of a sweep on stderr. On a terminal: a rich bar (runs done/total, elapsed time, ETA,
the run in flight). Otherwise (stderr redirected: nohup, Slurm, CI): one line per finished run,
``[3/36] memorization vocab_size=512 lr=1e-3 wd=0 acc=0.998 41 s``, that a log keeps. Commands
subclass it and map their events to ``describe``/``advance``/``log``."""
from __future__ import annotations

import math
import time

import click


def duration(seconds: float) -> str:
    """``41 s``, ``8 min 12 s``, ``3 h 05 min``, ``2 d 4 h``."""
    if seconds is None or not math.isfinite(seconds):
        return "?"
    s = int(round(seconds))
    if s < 60:
        return f"{s} s" if seconds >= 1 or s else f"{seconds:.1f} s"
    if s < 3600:
        return f"{s // 60} min {s % 60} s"
    if s < 86400:
        return f"{s // 3600} h {s % 3600 // 60:02d} min"
    return f"{s // 86400} d {s % 86400 // 3600} h"


def compact(x: float) -> str:
    """A hyper-parameter as people write it: ``1e-3``, ``5e-4``, ``0.1``, ``0``."""
    x = float(x)
    if x == 0 or 1e-2 <= abs(x) < 1e4:
        return f"{x:g}"
    mantissa, exponent = f"{x:.6e}".split("e")
    return f"{float(mantissa):g}e{int(exponent)}"


def plural(n: int, word: str) -> str:
    """``1 run``, ``2 runs``."""
    return f"{n:,} {word}{'' if n == 1 else 's'}"


def all_stored(n: int, where) -> str:
    """``nothing to train: all 3 runs are stored in DIR`` (``the 1 run is``)."""
    held = "the 1 run is" if n == 1 else f"all {plural(n, 'run')} are"
    return f"nothing to train: {held} stored in {where}"


def limit_line(limit, fit: int, pending: int) -> str:
    """What ``--time-limit`` (a ``madbench.time_limit.TimeLimit``) leaves of the command's
    time, and how many of the ``pending`` runs (``fit`` of them) fit by the estimate."""
    fits = ("all of them fit" if fit == pending else
            f"about {fit:,} of them {'fits' if fit == 1 else 'fit'}; the rest are left for "
            "the same command")
    return (f"--time-limit {duration(limit.seconds)}, {duration(max(limit.left(), 0))} left: "
            f"by the estimate, {fits}")


class RunProgress:
    """``enabled=False`` (``--no-progress``) draws no bar and logs no per-run lines."""

    def __init__(self, enabled: bool = True, console=None):
        from rich.console import Console
        from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn,
                                   TimeElapsedColumn, TimeRemainingColumn)
        from rich.table import Column
        self.console = Console(stderr=True) if console is None else console
        self.enabled = enabled
        self.live = enabled and self.console.is_terminal
        # the counts and times keep their width; the run's description takes what is left
        # and ends in an ellipsis when the terminal is narrow
        self.progress = Progress(TextColumn("[bold]runs"), BarColumn(bar_width=16),
                                 MofNCompleteColumn(), TimeElapsedColumn(), TextColumn("ETA"),
                                 TimeRemainingColumn(),
                                 TextColumn("{task.fields[current]}", table_column=Column(
                                     ratio=1, no_wrap=True, overflow="ellipsis")),
                                 console=self.console, disable=not self.live, expand=True)
        self.task = None
        self.current = ""
        self.total = 0
        self.done = 0
        self.stored = 0
        self.started = time.monotonic()

    def __enter__(self):
        self.progress.__enter__()
        return self

    def __exit__(self, *exc):
        return self.progress.__exit__(*exc)

    def start(self, total: int, done: int) -> None:
        self.total, self.done, self.stored = total, done, done
        self.started = time.monotonic()
        self.task = self.progress.add_task("runs", total=total, completed=done, current="")

    def describe(self, text: str) -> None:
        self.progress.update(self.task, current=text)

    def advance(self) -> None:
        self.done += 1
        self.progress.advance(self.task)

    def log(self, text: str) -> None:
        """One line for a log (stderr not a terminal), prefixed ``[done/total]``."""
        if self.enabled and not self.live:
            click.echo(f"[{self.done}/{self.total}] {text}", err=True)

    def stop(self, reached) -> None:
        """End the command at ``--time-limit`` (``TimeLimitReached``): the summary and the
        runs left on stderr, its exit code; a planned stop, not an error (no "Error:")."""
        click.echo(self.summary(), err=True)
        click.echo(str(reached), err=True)
        click.get_current_context().exit(reached.exit_code)

    def summary(self) -> str:
        trained = self.done - self.stored
        text = f"trained {plural(trained, 'run')} in {duration(time.monotonic() - self.started)}"
        return text + (f"; {self.stored:,} already stored" if self.stored else "")
