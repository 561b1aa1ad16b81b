"""The training loop: one for every engine.

An engine executes steps (and evaluations) of one or more runs; :func:`train_epochs` decides
everything else, the same way for all of them: which batches each epoch steps through (drawn
by the batch source, e.g. :func:`shuffled_batches`), the step index that selects every step's
learning rate, the per-epoch read-back of the training loss (one host sync per epoch),
divergence, progress, evaluation at epoch boundaries (best-loss epoch, early stop), timing, and
(for MAD runs, :func:`run_results`) the reported metrics.

The engines: ``trainer.Eager`` (the plain step, the reference; also the graphed engine without
graphs), ``graphed.Graphed`` (each run's step a CUDA graph), ``batched.Batched`` (the runs as
one vmapped model) and the scaling runner's (``scaling.runs``).
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Callable, Iterable

import torch


class Engine:
    """How the steps of ``runs`` runs are executed. Runs are numbered ``0 .. runs-1``; ``live``
    lists the runs an epoch trains, in order."""

    runs: int = 1
    #: True when the engine cannot leave a finished run out of a step (the batched engine
    #: trains every configuration in the same kernels and freezes the finished ones): the loop
    #: then keeps every run in ``live`` until all have finished, and records each run as it
    #: was when it finished (as the other engines do).
    carries_finished: bool = False

    def start_epoch(self, live: list[int]) -> None:
        """Reset the live runs' training-loss sums."""
        raise NotImplementedError

    def step(self, batch, step: int, live: list[int]) -> None:
        """One optimisation step of the live runs on ``batch``; ``step`` (counted from 0 over
        the whole run) selects the learning rate."""
        raise NotImplementedError

    def end_epoch(self, live: list[int], steps: int) -> list[tuple[float, bool]]:
        """Per live run: its mean training loss over the epoch's ``steps`` steps, and whether
        it diverged."""
        raise NotImplementedError

    def evaluate(self, runs: list[int]) -> list[dict]:
        """Per run: its test metrics (at least ``loss``; MAD runs also ``accuracy``,
        ``macro_accuracy`` and ``scored_positions``)."""
        raise NotImplementedError


@dataclass
class RunState:
    """What the loop records about one run."""

    epoch_loss: float = math.nan    #: mean training loss of its last epoch
    epochs: int = 0
    steps: int = 0
    alive: bool = True              #: neither diverged nor stopped
    diverged: bool = False
    best: dict | None = None        #: its lowest-loss evaluation (``keep_best``)
    last: dict | None = None        #: its latest evaluation, of its current weights


def train_epochs(engine: Engine, batches: Callable[[int], Iterable], epochs: int, *,
                 evaluate_every_epoch: bool = False, keep_best: bool = False,
                 stop_accuracy: float | None = None,
                 on_epoch: Callable[[int, int, float], None] | None = None,
                 ) -> tuple[list[RunState], float]:
    """Train every run of ``engine`` for up to ``epochs`` epochs; each epoch steps through
    ``batches(epoch)``. Returns each run's state and the seconds spent.

    After each epoch a run whose engine reports divergence stops (accuracy 0 later); with
    ``evaluate_every_epoch`` the others are evaluated, the lowest-loss evaluation kept
    (``keep_best``), and a run whose test accuracy reaches ``stop_accuracy`` stops.
    ``on_epoch(epoch, epochs, loss)`` gets the lowest training loss of the epoch's runs that
    have not diverged (and is not called when all have)."""
    if evaluate_every_epoch and engine.carries_finished:
        raise ValueError("an engine that carries finished runs cannot evaluate every epoch")
    runs = [RunState() for _ in range(engine.runs)]
    step = 0
    start = time.perf_counter()
    for epoch in range(epochs):
        live = [i for i, run in enumerate(runs) if run.alive]
        if not live:
            break
        if engine.carries_finished:
            live = list(range(len(runs)))
        epoch_batches = batches(epoch)          # drawn before the epoch starts on the device
        engine.start_epoch(live)
        count = 0
        for batch in epoch_batches:
            engine.step(batch, step, live)
            step += 1
            count += 1
        for i, (loss, diverged) in zip(live, engine.end_epoch(live, count)):
            run = runs[i]
            if not run.alive:       # carried after it finished: its record stays as it was
                continue
            run.epoch_loss, run.epochs, run.steps = loss, epoch + 1, step
            if diverged:
                run.alive, run.diverged = False, True
        checked = [i for i in live if runs[i].alive]
        if evaluate_every_epoch and checked:
            for i, metrics in zip(checked, engine.evaluate(checked)):
                run = runs[i]
                run.last = metrics
                if keep_best and (run.best is None or metrics["loss"] < run.best["loss"]):
                    run.best = metrics
                if stop_accuracy is not None and metrics["accuracy"] >= stop_accuracy:
                    run.alive = False
        losses = [runs[i].epoch_loss for i in live if not runs[i].diverged]
        if on_epoch is not None and losses:
            on_epoch(epoch + 1, epochs, min(losses))
    return runs, time.perf_counter() - start


def shuffled_batches(n: int, batch_size: int, seed: int,
                     device: torch.device) -> Callable[[int], list[torch.Tensor]]:
    """Each epoch, a fresh permutation of the ``n`` examples' indices (one generator on
    ``device``, seeded once with ``seed``) cut into batches; the last may be smaller."""
    gen = torch.Generator(device=device)
    gen.manual_seed(seed)
    steps = -(-n // batch_size)

    def epoch(_index: int) -> list[torch.Tensor]:
        order = torch.randperm(n, generator=gen, device=device)
        return [order[b * batch_size:(b + 1) * batch_size] for b in range(steps)]
    return epoch


# -- MAD runs --------------------------------------------------------------------------------
@dataclass
class RunResult:
    accuracy: float
    macro_accuracy: float
    loss: float
    train_loss: float
    diverged: bool
    epochs: int
    steps: int
    seconds: float
    scored_positions: int

    def as_dict(self) -> dict:
        return dict(self.__dict__)


def epoch_plan(n: int, protocol) -> tuple[int, int]:
    """(steps per epoch, epochs) of a MAD run on ``n`` training sequences."""
    steps_per_epoch = -(-n // protocol.batch_size)
    return steps_per_epoch, protocol.epochs_for(steps_per_epoch)


def evaluates_every_epoch(protocol) -> bool:
    """Whether runs under ``protocol`` are evaluated at every epoch boundary: to report the
    best epoch (``eval_every_epoch``) or to stop once converged (``early_stop_accuracy``)."""
    return protocol.eval_every_epoch or protocol.early_stop_accuracy is not None


def final_metrics(diverged: bool, metrics: dict | None) -> tuple[dict, bool]:
    """A finished run's reported metrics and whether it counts as diverged: zeros for a
    diverged run, else ``metrics`` (its best epoch's, or of its final weights); a non-finite
    test loss also counts as divergence (accuracy 0)."""
    if diverged:
        return {"accuracy": 0.0, "macro_accuracy": 0.0, "loss": float("nan"),
                "scored_positions": 0}, True
    if not math.isfinite(metrics["loss"]):
        return {**metrics, "accuracy": 0.0, "macro_accuracy": 0.0}, True
    return metrics, False


def train_protocol(engine: Engine, num_train: int, protocol, seed: int, device: torch.device,
                   on_epoch: Callable[[int, int, float], None] | None = None
                   ) -> list[RunResult]:
    """Train the MAD runs of ``engine`` under ``protocol`` (batches shuffled each epoch with
    ``seed``) and report each: the final weights' test metrics, or with ``eval_every_epoch``
    the best-loss epoch's (mad-lab's checkpoint rule). With ``early_stop_accuracy`` runs are
    evaluated every epoch and a run stops at the first epoch whose test accuracy reaches it."""
    _, epochs = epoch_plan(num_train, protocol)
    runs, seconds = train_epochs(
        engine, shuffled_batches(num_train, protocol.batch_size, seed, device), epochs,
        evaluate_every_epoch=evaluates_every_epoch(protocol),
        keep_best=protocol.eval_every_epoch, stop_accuracy=protocol.early_stop_accuracy,
        on_epoch=on_epoch)
    return run_results(engine, runs, seconds)


def run_results(engine: Engine, runs: list[RunState], seconds: float) -> list[RunResult]:
    """One RunResult per run; runs with no evaluation of their final weights (and not
    diverged) are evaluated now, together."""
    pending = [i for i, run in enumerate(runs)
               if not run.diverged and run.best is None and run.last is None]
    evaluated = dict(zip(pending, engine.evaluate(pending))) if pending else {}
    results = []
    for i, run in enumerate(runs):
        metrics, diverged = final_metrics(run.diverged, run.best or run.last or evaluated.get(i))
        results.append(RunResult(metrics["accuracy"], metrics["macro_accuracy"],
                                 metrics["loss"], run.epoch_loss, diverged, run.epochs,
                                 run.steps, seconds, metrics["scored_positions"]))
    return results
