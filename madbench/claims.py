"""Claims on the runs of a run directory, so that processes sharing one run directory share
its work instead of each doing all of it (a group of runs trained together holds the claims of
all its runs: ``claim_all``).

A claim is an exclusive ``flock`` on ``RUN_DIR/.claims/<name>.lock``. The kernel releases it
when its holder exits, however it exits (kill -9 included), so a claim never outlives its
process and nothing waits on a dead one. The lock files stay (empty, one per name ever
claimed; ``.claims`` may be deleted while no process uses the run directory): a lock is on the
file, not its name, so a holder that removed its file on release would let a process that had
opened the file already take the lock on the removed file while a third creates a new file of
that name and takes its lock, two holders of one claim. Checking, once locked, that the name
still leads to the locked file closes that race on a local filesystem but not on a network
one, where processes on several machines share a run directory: NFS renames a removed file
that another process holds open to ``.nfs*`` (clutter again), or answers another machine's
process with a stale handle, which ``claim`` would take for a filesystem without locks. On a
filesystem without ``flock`` (some network filesystems), or a run directory where the claim
cannot be made, the claim is granted: work may then be done twice, never lost (records are
atomic and keyed by run). ``contend`` does a list of claimed work: what another process
holds is left for the end, then waited for (or, under a time limit, polled while it would fit).
"""
from __future__ import annotations

import contextlib
import fcntl
import os
import time
from pathlib import Path
from typing import Callable, Iterator, Sequence

CLAIMS = ".claims"
HELD = object()           #: what ``contend``'s attempt returns for work another process holds
HELD_POLL_SECONDS = 2.0   #: under a time limit, how often held work is tried again


@contextlib.contextmanager
def claim(run_dir: str | os.PathLike, name: str, wait: bool = True) -> Iterator[bool]:
    """Hold the claim ``name`` of ``run_dir`` for the ``with`` block. Yields True when held;
    with ``wait=False``, yields False at once when another process holds it."""
    folder = Path(run_dir) / CLAIMS
    try:
        folder.mkdir(exist_ok=True)
        fd = os.open(folder / f"{name}.lock", os.O_RDWR | os.O_CREAT, 0o644)
    except OSError:
        yield True
        return
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            yield False
            return
        except OSError:                     # no flock here: granted (see the module doc)
            pass
        yield True
    finally:
        os.close(fd)                        # releases the lock; the file stays (module doc)


@contextlib.contextmanager
def claim_all(run_dir: str | os.PathLike, names: Sequence[str], wait: bool = True
              ) -> Iterator[bool]:
    """Hold every claim of ``names`` (taken in sorted order, so that two holders of
    overlapping sets never wait for each other in a cycle) for the ``with`` block. Yields True
    when all are held; with ``wait=False``, False at once (holding none) when another process
    holds any."""
    with contextlib.ExitStack() as stack:
        for name in sorted(set(names)):
            if not stack.enter_context(claim(run_dir, name, wait)):
                stack.close()
                yield False
                return
        yield True


def contend(items: Sequence, attempt: Callable, time_limit=None) -> list:
    """Do ``items`` through ``attempt(item, wait)``, which holds the item's claim and returns
    its outcome, or ``HELD`` when another process holds it and ``wait`` is False. Each is tried
    without waiting first; the held ones are then waited for, or, under ``time_limit`` (a
    ``madbench.time_limit.TimeLimit`` whose estimate takes an item: their holder may take any
    time), tried again every ``HELD_POLL_SECONDS`` while one of them would still fit, and
    those still held then are kept as ``time_limit.held``. Returns the outcomes other than
    ``HELD``."""
    outcomes = [attempt(item, False) for item in items]
    held = [item for item, outcome in zip(items, outcomes) if outcome is HELD]
    outcomes = [outcome for outcome in outcomes if outcome is not HELD]
    if time_limit is None:
        return outcomes + [attempt(item, True) for item in held]
    while waiting := [item for item in held if time_limit.fits(item)]:
        time.sleep(min(HELD_POLL_SECONDS, max(time_limit.left(), 0.0)))
        polled = dict(zip(map(id, waiting), (attempt(item, False) for item in waiting)))
        outcomes += [outcome for outcome in polled.values() if outcome is not HELD]
        held = [item for item in held if polled.get(id(item), HELD) is HELD]
    time_limit.held = held
    return outcomes
