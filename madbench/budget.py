"""Budgets of validation: how large an architecture may be, and how long a check may run,
before ``madbench leaderboard validate`` refuses it with a reason instead of working on it;
and validation's two fixed settings, the re-runs' tolerance and the state audit's width (the
command line shows them as defaults without importing torch).

Sizes are checked before anything runs (parameters counted on the meta device, then forward
FLOPs per token and state from the accounting); time is bounded by ``deadline``, which
interrupts a check that runs past its wall-clock budget (a ``SIGALRM`` timer, so in the main
thread of a Unix process; elsewhere the size budgets still apply and ``remaining`` is checked
between steps).
"""
from __future__ import annotations

import contextlib
import math
import signal
import threading
import time
from dataclasses import dataclass
from typing import Iterator

from .errors import BudgetExceeded

__all__ = ["Budget", "BudgetExceeded", "DEFAULT_TOLERANCE", "Deadline", "PRECISION_MARGIN",
           "VALIDATE_AUDIT_DIM", "over"]

#: accuracy agreement a re-run must reach (absolute)
DEFAULT_TOLERANCE = 0.05
#: added to the tolerance when a re-run trains in another precision than its claim (a CPU
#: re-run, always fp32, of a bf16 GPU claim): on cells at a learning transition such re-runs
#: of honest claims differed by up to 0.056, same-precision ones by up to 0.041
#: (leaderboards/README.md)
PRECISION_MARGIN = 0.03
#: the width the state audit is run at by ``submit`` and re-run at by ``validate`` (the model
#: width would make it slow)
VALIDATE_AUDIT_DIM = 32

@dataclass(frozen=True)
class Budget:
    """The limits of one validation. Defaults are about 20x the largest bundled model at the
    MAD width (about 0.6M parameters, 1.2 MFLOP per token at 128 tokens, 4,096 state)."""

    max_params: int = 10_000_000
    max_flops_per_token: float = 25e6
    max_state: int = 1_000_000             #: fixed + cache elements per sequence, summed
    max_check_elements: int = 1 << 21      #: batch x seq_len x dim of a check's input
    check_seconds: float = 600.0           #: rebuilding, guard and audit of one submission
    rerun_seconds: float = 3600.0          #: all re-runs of one submission
    rerun_max_tokens: int | None = None    #: per re-run (steps x batch x seq_len); None: any


class Deadline:
    """Wall-clock time left, checked at will (``check``) and, in the main thread, enforced by
    an alarm while ``enforce`` is active."""

    def __init__(self, seconds: float, what: str):
        self.seconds, self.what = seconds, what
        self.end = time.monotonic() + seconds

    def remaining(self) -> float:
        return self.end - time.monotonic()

    def exceeded(self) -> BudgetExceeded:
        return BudgetExceeded(f"{self.what} ran past its time budget of {self.seconds:g} s")

    def check(self) -> None:
        if self.remaining() <= 0:
            raise self.exceeded()

    @contextlib.contextmanager
    def enforce(self) -> Iterator[None]:
        """Raise ``BudgetExceeded`` inside the block once the time is up (main thread only;
        elsewhere the block runs unbounded and ``check`` is the only guard)."""
        self.check()
        if threading.current_thread() is not threading.main_thread() or \
                not hasattr(signal, "setitimer"):
            yield
            return

        def on_alarm(signum, frame):
            raise self.exceeded()

        previous = signal.signal(signal.SIGALRM, on_alarm)
        signal.setitimer(signal.ITIMER_REAL, max(self.remaining(), 1e-3))
        try:
            yield
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, previous)


def over(value: float | None, limit: float | None) -> bool:
    """Whether ``value`` is over ``limit`` (a missing or non-finite value counts as over)."""
    if limit is None:
        return False
    return value is None or not math.isfinite(value) or value > limit
