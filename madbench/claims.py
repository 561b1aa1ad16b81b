"""Claims on the groups of a run directory, so that processes sharing one run directory
share its work instead of each doing all of it.

A claim is an exclusive ``flock`` on ``RUN_DIR/.claims/<name>.lock``. The kernel releases it
when its holder exits, however it exits (kill -9 included), so a claim never outlives its
process and nothing waits on a dead one. The lock files themselves stay (empty). On a
filesystem without ``flock`` (some network filesystems), or a run directory where the claim
cannot be made, the claim is granted: work may then be done twice, never lost (records are
atomic and keyed by run).
"""
from __future__ import annotations

import contextlib
import fcntl
import os
from pathlib import Path
from typing import Iterator

CLAIMS = ".claims"


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
        os.close(fd)                        # releases the lock
