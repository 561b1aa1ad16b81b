"""What validating a submission finds, and how the checks word it: the ``Report`` of one
submission (its failures by check, capped so that a forged file cannot flood it), and what
every check shares to list a few items, quote an exception in one line and tell a claimed
number from the one recomputed here (``AGGREGATE_TOLERANCE``)."""
from __future__ import annotations

from dataclasses import dataclass, field

from ..errors import printable

AGGREGATE_TOLERANCE = 1e-9
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

    def lines(self) -> list[str]:
        """The report as ``validate`` prints it: the verdict, each failure, warning and
        re-run, then what was checked (when valid). Every line is escaped (``printable``): a
        submission's text cannot print a forged verdict or drive the terminal."""
        status = "valid" if self.valid else "INVALID"
        board = f" [{self.board}]" if self.board else ""
        lines = [f"{self.path}: {status}{board}" + (f" — {self.name}" if self.name else "")]
        lines += [f"  FAIL {check}: {reason}" for check, reason in self.failures]
        lines += [f"  warning: {warning}" for warning in self.warnings]
        lines += [f"  re-ran {run['task']}/{run['setting']} seed {run['seed']}: accuracy "
                  f"{run['measured']:.4f} vs claimed {run['claimed']:.4f}: "
                  f"{'ok' if run['ok'] else 'MISMATCH'} (tolerance {run['tolerance']:g}; "
                  f"{run['seconds']} s, {run['engine']} engine)" for run in self.reruns]
        if self.valid:
            lines.append("  checked: " + "; ".join(self.checks))
        return [printable(line) for line in lines]

    def to_dict(self) -> dict:
        return {"path": self.path, "name": self.name, "valid": self.valid, "board": self.board,
                "failures": [{"check": c, "reason": r} for c, r in self.failures],
                "warnings": self.warnings, "checks": self.checks, "reruns": self.reruns,
                "architecture_hash": self.architecture_hash}


def listed(items: list[str], total: int | None = None) -> str:
    """The first ``MAX_LISTED`` of ``items``, and how many more of ``total`` (default: all
    of ``items``) there are."""
    total = len(items) if total is None else total
    shown = ", ".join(items[:MAX_LISTED])
    return shown + (f" and {total - MAX_LISTED} more" if total > MAX_LISTED else "")


def first_line(exc: BaseException) -> str:
    text = str(exc)
    return text.splitlines()[0] if text else type(exc).__name__


def differs(claimed: float, recomputed: float) -> bool:
    return not (abs(claimed - recomputed) <= AGGREGATE_TOLERANCE)
