"""Bounds that more than one command applies to its numeric inputs, each with its reason;
checked before any work (no torch here, so that a command line reads them without a slow
import). ``madbench scaling``'s own bounds are in ``madbench.scaling.limits``.

- **Seeds** (``eval --seeds``, ``scaling run --seed``): 0 to ``MAX_SEED``, 2**63 - 1. Records
  store a seed as a 64-bit integer: ``scaling run --seed 2**63`` trained its run and then
  failed to store it.
- **Runs per GPU** (``eval --runs-per-gpu``): 1 to ``MAX_RUNS_PER_GPU``. Each local worker is a
  process of its own with its own CUDA context; on one H200 eight at once finished no group in
  140 s (docs/distributed.md), and 10**12 built a list of 10**12 device names before any worker
  started. 64 leaves room for Ray's fractions of a GPU (1/64 each).
- **Numbers** (``finite_number``, ``positive_number``): an int or a float, never a bool (True
  is no count, loss or duration), and finite; what ``--time-limit`` and the scaling inputs
  accept.
"""
from __future__ import annotations

import math
from typing import Any

from .errors import UsageError

MAX_SEED = 2**63 - 1
MAX_RUNS_PER_GPU = 64


def check_runs_per_gpu(runs_per_gpu: int) -> int:
    """UsageError unless ``1 <= runs_per_gpu <= MAX_RUNS_PER_GPU``."""
    if not 1 <= runs_per_gpu <= MAX_RUNS_PER_GPU:
        raise UsageError(f"--runs-per-gpu {runs_per_gpu} is out of bounds: 1 to "
                         f"{MAX_RUNS_PER_GPU} (each is a worker process on the GPU; "
                         "docs/distributed.md)")
    return runs_per_gpu


def check_group_size(group_size: Any) -> int | None:
    """None, or UsageError unless ``group_size`` is a whole number of at least 1."""
    if group_size is None:
        return None
    if isinstance(group_size, bool) or not isinstance(group_size, int) or group_size < 1:
        raise UsageError(f"--group-size takes a whole number of at least 1 (configurations "
                         f"trained side by side), not {group_size!r}")
    return group_size


def is_number(value: Any) -> bool:
    """An int or a float, not a bool."""
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def finite_number(value: Any) -> bool:
    """An ``is_number`` that is finite."""
    return is_number(value) and math.isfinite(value)


def positive_number(value: Any) -> bool:
    """A ``finite_number`` above zero."""
    return finite_number(value) and value > 0
