"""How long scaling runs will take, before they start (``madbench scaling run --time-limit``):
for each model and sequence length among the runs left, seconds per training step measured on
the device as ``train_run`` trains it (its CUDA graph where it captures one), on random tokens,
by ``madbench.estimate.differenced``, at the batch of the first such run (on CPU at most
``PROBE_TOKENS`` a step); a step is taken proportional to the batch for other batches, and a
run's estimate is its steps times that. The validation loss and the state audit after
training are left out (the time limit learns them from the runs it sees)."""
from __future__ import annotations

from dataclasses import replace
from typing import Sequence

import torch

from ..estimate import PROBE_STEPS, differenced, probe_batch
from ..loop import train_epochs
from .plan import RunPlan
from .runs import random_windows, run_engine


def step_seconds(plan: RunPlan, device: torch.device, precision: str,
                 steps: int = PROBE_STEPS) -> float:
    """Seconds per training step of ``plan``'s run on ``device``: one engine, its calls of 1,
    1 and ``1 + steps`` steps timed (``differenced``); on CPU at most ``PROBE_TOKENS`` a step,
    scaled to the run's batch."""
    r = plan.recipe
    batch = probe_batch(r.batch_size, r.seq_len, device)
    plan = replace(plan, recipe=replace(r, batch_size=batch))
    probe = replace(plan, steps=2 + steps)           # the learning-rate schedule's length
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(0)
        tokens = torch.randint(0, plan.vocab_size, (4 * (r.seq_len + 1),), device=device)
        engine = run_engine(probe, tokens, tokens, device, precision)

        def timed(n: int) -> float:
            return train_epochs(engine, random_windows(tokens, replace(plan, steps=n), n,
                                                       device), 1)[1]
        return differenced(timed, steps) * r.batch_size / batch


def plan_seconds(todo: Sequence[RunPlan], device: torch.device,
                 precision: str) -> dict[str, float]:
    """Estimated training seconds of each run of ``todo`` by its key: one probe per model and
    sequence length."""
    probed: dict[tuple[str, int], tuple[int, float]] = {}
    seconds = {}
    for plan in todo:
        shape = (plan.spec.hash, plan.recipe.seq_len)
        if shape not in probed:
            probed[shape] = (plan.recipe.batch_size, step_seconds(plan, device, precision))
        batch, per_step = probed[shape]
        seconds[plan.key] = plan.steps * per_step * plan.recipe.batch_size / batch
    return seconds
