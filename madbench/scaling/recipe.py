"""The paper's per-run hyperparameters: learning rate by model size (its Table C.2) and batch
size by FLOP budget (its Table C.1), interpolated, as rules that ``plan_runs`` applies per run.

**Batch by budget** (Table C.1): 524,288 tokens per batch at the IsoFLOP groups 4e18 to 8e19,
1,048,576 at 2e20 and 5e20, 2,097,152 at 2e21; models below 54M parameters use 262,144.
Between the table's budgets the batch is interpolated linearly in ln C; outside it, held at the
nearest row (madbench's budgets lie far below 4e18, so they all get the 4e18 row: 262,144 or
524,288 tokens, i.e. 1,024 or 2,048 sequences of 256). The batch in sequences is the token
batch divided by the sequence length, rounded, at least 1.

**Learning rate by model size** (Table C.2): the paper interpolates linearly between reference
settings at 150M, 350M, 1.3B, 3B and 7B parameters; its smallest model (8M: width 128, 4
layers) trains at 9.77e-4, its largest (7B: width 3,712, 41 layers) at 2.0e-4. Those two rows
are the anchors madbench has on file; the reference settings in between are not, so between
8M and 7B madbench interpolates linearly on a straight line through the two (a stand-in: the
paper's own curve bends at its references). Below 8M (every model madbench trains on one GPU
in minutes; the paper trains nothing smaller) madbench holds the smallest row, 9.77e-4; above
7B, 2.0e-4. The
size is the model's total parameter count (the paper names its sizes by it). Any table of
``(params, lr)`` anchors can be given instead (``--lr-table``).

Gradient clipping at norm 1 is madbench's choice, not the paper's (its scaling recipe names no
clipping); ``--grad-clip 0`` turns it off.
"""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np

from ..errors import UsageError

#: Table C.1: (budget, tokens per batch)
PAPER_BATCH_TOKENS: tuple[tuple[float, int], ...] = (
    (4e18, 524_288), (8e18, 524_288), (2e19, 524_288), (4e19, 524_288), (8e19, 524_288),
    (2e20, 1_048_576), (5e20, 1_048_576), (2e21, 2_097_152))
#: Table C.1: models below this many parameters use SMALL_MODEL_BATCH_TOKENS
SMALL_MODEL_PARAMS = 54e6
SMALL_MODEL_BATCH_TOKENS = 262_144
#: Table C.2, the rows on file: (parameters, peak learning rate)
PAPER_LR_TABLE: tuple[tuple[float, float], ...] = ((8e6, 9.77e-4), (7e9, 2.0e-4))


def interpolate(x: float, table: Sequence[tuple[float, float]], log_x: bool) -> float:
    """Piecewise-linear interpolation of ``table`` (sorted by x) at ``x`` (in ln x when
    ``log_x``), held at the end rows outside it."""
    xs = np.array([t[0] for t in table], dtype=float)
    ys = np.array([t[1] for t in table], dtype=float)
    if log_x:
        xs, x = np.log(xs), math.log(x)
    return float(np.interp(x, xs, ys))


def paper_batch_tokens(budget: float, params: float) -> int:
    """Tokens per batch for a run of ``params`` parameters in the IsoFLOP group ``budget``."""
    if params < SMALL_MODEL_PARAMS:
        return SMALL_MODEL_BATCH_TOKENS
    return int(round(interpolate(budget, PAPER_BATCH_TOKENS, log_x=True)))


def paper_batch_size(budget: float, params: float, seq_len: int) -> int:
    """Sequences per batch: the paper's token batch over ``seq_len``."""
    return max(1, round(paper_batch_tokens(budget, params) / seq_len))


def lr_for_size(params: float, table: Sequence[tuple[float, float]] = PAPER_LR_TABLE) -> float:
    """Peak learning rate for a model of ``params`` parameters (linear in N between rows)."""
    return interpolate(params, sorted(table), log_x=False)


def parse_lr_table(text: str) -> tuple[tuple[float, float], ...]:
    """``"8e6:9.77e-4,7e9:2e-4"`` -> ((8e6, 9.77e-4), (7e9, 2e-4))."""
    try:
        rows = tuple(sorted((float(n), float(lr)) for n, lr in
                            (item.split(":") for item in text.replace(" ", "").split(",")
                             if item)))
    except ValueError:
        raise UsageError(f"--lr-table takes PARAMS:LR pairs such as 8e6:9.77e-4,7e9:2e-4, "
                         f"not {text!r}") from None
    if not rows or not all(0 < n < math.inf and 0 < lr < math.inf for n, lr in rows):
        raise UsageError("--lr-table needs positive, finite parameter counts and learning "
                         "rates")
    return rows
