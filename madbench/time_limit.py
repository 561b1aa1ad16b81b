"""``--time-limit`` (``madbench eval``, ``madbench scaling run``): start no group of runs (a
scaling run: one run) that would not finish within the limit, so that a sweep given a fixed
allocation (a batch job, a device lease) stops cleanly between groups instead of being killed
in one, and the same command resumes.

A group's predicted time is its estimate (``madbench.estimate.group_seconds``;
``madbench.scaling.estimate`` for scaling runs: from steps probed before training) times how
the training of the groups so far compared with their estimates, plus their mean time outside
training (data generation, graph capture, evaluation: what the estimate leaves out, and what
dominates a short group), with a 10% margin. Groups that do not fit are skipped, and later,
shorter ones may still fit.
"""
from __future__ import annotations

import math
import re
import time
from typing import Callable, Sequence

from .errors import MadbenchError, UsageError
from .limits import positive_number

MARGIN = 1.1          #: a group starts only if 1.1x its predicted time fits in what is left
_UNITS = {"": 1, "s": 1, "m": 60, "min": 60, "h": 3600}


def parse_duration(text: str) -> float:
    """``--time-limit``'s value: seconds, or a number with ``s``, ``m``/``min`` or ``h``
    (``500``, ``90s``, ``8m``, ``2.5h``); positive and finite."""
    match = re.fullmatch(r"\s*([0-9]*\.?[0-9]+(?:[eE][+-]?[0-9]+)?)\s*(s|m|min|h)?\s*",
                         str(text))
    seconds = float(match[1]) * _UNITS[match[2] or ""] if match else math.nan
    if not positive_number(seconds):
        raise UsageError(f"--time-limit takes a positive duration (500, 90s, 8m, 2.5h), not "
                         f"{text!r}")
    return seconds


def _figure(seconds: float) -> str:
    """Seconds in a hint: ``46``, ``1,250``, ``0.0012``."""
    return f"{seconds:,.0f}" if seconds >= 1 or seconds == 0 else f"{seconds:.2g}"


class TimeLimitReached(MadbenchError):
    """The time limit left runs untrained (the command exits 4); those stored are kept and
    the same command resumes."""

    exit_code = 4


class TimeLimit:
    """A wall-clock limit from ``started`` (default: now), and the groups' estimated
    seconds (``estimate(group)``)."""

    def __init__(self, seconds: float, estimate: Callable[[Sequence], float],
                 started: float | None = None, clock: Callable[[], float] = time.monotonic):
        self.seconds, self.estimate, self.clock = seconds, estimate, clock
        self.started = clock() if started is None else started
        self.measured = self.estimated = 0.0     #: training seconds of the groups so far
        self.overhead, self.groups = 0.0, 0      #: their seconds outside training
        self.held: list = []     #: what another process held when the time ran out (claims.contend)

    def ratio(self) -> float:
        """Measured over estimated training seconds of the groups so far (1 before any)."""
        return self.measured / self.estimated if self.estimated > 0 else 1.0

    def predict(self, group: Sequence) -> float:
        """Seconds ``group`` should take: its estimate times ``ratio``, plus the mean time
        outside training."""
        overhead = self.overhead / self.groups if self.groups else 0.0
        return self.estimate(group) * self.ratio() + overhead

    def left(self) -> float:
        """Seconds left (negative once past the limit)."""
        return self.seconds - (self.clock() - self.started)

    def fits(self, group: Sequence) -> bool:
        """Whether ``group``, started now, should finish within the limit."""
        return MARGIN * self.predict(group) <= self.left()

    def trained(self, group: Sequence, seconds: float, training: float | None = None) -> None:
        """``group`` took ``seconds``, ``training`` of them training (None: all of them, as
        far as is known): the later predictions follow."""
        training = seconds if training is None else min(training, seconds)
        self.measured += training
        self.estimated += self.estimate(group)
        self.overhead += seconds - training
        self.groups += 1

    def stopped(self, left: Sequence[Sequence], runs_left: int, runs: int, unit: str,
                where, held: int = 0) -> TimeLimitReached:
        """The stop to raise when the ``left`` groups (``unit``: what one is called), holding
        ``runs_left`` of ``runs`` runs, stayed untrained in run directory ``where``, ``held``
        of those runs in groups another process held when the time ran out."""
        hint = ""
        if held:
            hint = (f"; {held:,} of them held by another process sharing the run directory, "
                    "which may yet store them")
        elif not self.groups and not any(map(self.fits, left)):     # none trained, none fits
            group = min(left, key=self.predict)
            shortest = self.predict(group)
            # the margin and the time left are named: a dry plan a moment earlier may have
            # said a group fits, with a second more to go on
            hint = (f"; no {unit} fitted: the shortest left needs about {_figure(shortest)} s "
                    f"by the estimate ({_figure(MARGIN * shortest)} s with the "
                    f"{MARGIN - 1:.0%} margin), and {_figure(max(self.left(), 0))} s were left")
            if unit == "group" and len(group) > 1:   # a sweep's group of configurations
                hint += (f"; --group-size below {len(group)} trains fewer of its "
                         "configurations at a time")
        return TimeLimitReached(f"stopped at the time limit ({self.seconds:g} s): "
                                f"{runs_left:,} of {runs:,} runs left untrained in {where}; "
                                f"the same command resumes{hint}")

    def planned(self, groups: Sequence[Sequence], devices: int = 1) -> list[Sequence]:
        """The groups that fit by the estimate alone, taken in order, each started on the
        device that frees first (what a dry run can say before anything trains). The rule is
        ``fits``'s: a group starts if its estimate with the margin fits what is left when it
        would start; the groups before it take their estimate, not the margin."""
        free = [0.0] * max(devices, 1)
        fitting = []
        for group in groups:
            k = min(range(len(free)), key=free.__getitem__)
            if free[k] + MARGIN * self.estimate(group) <= self.left():
                free[k] += self.estimate(group)
                fitting.append(group)
        return fitting
