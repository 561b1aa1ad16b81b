"""What an executor's driver hands out next (the local worker pool and Ray share it): groups by
index, the first queued one that fits the time limit (any, without one). Under a limit, a
group that another process held comes back (``hand_back``) and falls due again every
``claims.HELD_POLL_SECONDS`` while it would still fit; a group whose worker died goes back to
the front (``retry``)."""
from __future__ import annotations

import time
from collections import deque
from typing import Sequence

from .. import claims
from ..store import ResultsStore
from ..sweep import Job, training_seconds
from ..time_limit import TimeLimit


class Dispatch:
    def __init__(self, groups: Sequence[Sequence[Job]], time_limit: TimeLimit | None = None,
                 store: ResultsStore | None = None):
        self.groups, self.limit, self.store = list(groups), time_limit, store
        self.queue = deque(range(len(self.groups)))
        self.held: dict[int, float] = {}     #: groups another process held: when each is due

    def next(self) -> tuple[int | None, bool]:
        """(the group to hand out now, or None; whether to wait for one: a held group that
        would still fit but is not yet due)."""
        limit, now = self.limit, time.monotonic()
        fits = [g for g in self.queue if limit is None or limit.fits(self.groups[g])]
        if fits:
            self.queue.remove(fits[0])
            return fits[0], False
        waiting = [g for g in self.held if limit.fits(self.groups[g])] if limit else []
        due = [g for g in waiting if self.held[g] <= now]
        if due:
            del self.held[due[0]]
            return due[0], False
        return None, bool(waiting)

    def hand_back(self, group: int) -> None:
        """Another process held ``group``: due again in ``HELD_POLL_SECONDS``."""
        self.held[group] = time.monotonic() + claims.HELD_POLL_SECONDS

    def retry(self, group: int) -> None:
        """``group``'s worker died: hand it out next."""
        self.queue.appendleft(group)

    def finished(self, group: int, seconds: float, trained: int) -> None:
        """``group``'s worker returned after ``seconds`` (wall), having trained ``trained``
        runs: the time limit's later predictions follow (not a group another process had
        stored: its quick return says nothing of training time)."""
        if self.limit is not None and trained:
            runs = self.groups[group]
            self.limit.trained(runs, seconds, self.store and training_seconds(self.store, runs))

    def close(self) -> None:
        """Record on the time limit what stayed held (``TimeLimit.held``)."""
        if self.limit is not None:
            self.limit.held = [self.groups[g] for g in self.held]
