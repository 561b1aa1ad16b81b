"""The plain trainer: one model, one (lr, weight decay) configuration, one setting.

Its :class:`Step` is the readable reference step every engine is tested against; the epochs
around it are ``madbench.loop``'s, shared by all engines. Data stay on the device; the step
never waits for the host (the loss is accumulated on the device and read once per epoch, where
divergence is detected too). Deterministic given the seed (on CPU; on CUDA up to the
nondeterminism of some kernels).
"""
from __future__ import annotations

import contextlib
import math
from typing import Callable

import torch
from torch import nn

from .cuda_graphs import adamw
from .errors import UsageError
from .loop import Engine, RunResult, epoch_plan, train_protocol
from .metrics import scored_counts, summarize
from .model import auxiliary_loss
from .protocol import Protocol


def resolve_device(device: str = "auto") -> torch.device:
    """``auto`` (CUDA when available, else CPU), ``cpu``, ``cuda`` or ``cuda:N``; anything
    else, or a CUDA device this machine does not have, is a usage error (one line)."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError, ValueError):
        raise UsageError(f"--device {device!r}: not a device (use auto, cpu, cuda or "
                         "cuda:N)") from None
    if dev.type not in ("cpu", "cuda"):
        raise UsageError(f"--device {device!r}: madbench trains on cpu or cuda devices")
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise UsageError(f"--device {device}: CUDA is not available on this machine")
    if dev.type == "cuda" and dev.index is not None and dev.index >= torch.cuda.device_count():
        raise UsageError(f"--device {device}: this machine has {torch.cuda.device_count()} "
                         "CUDA device(s)")
    return dev


def resolve_precision(dev: torch.device, precision: str) -> str:
    """``auto``: bf16 on CUDA, fp32 elsewhere; bf16 off CUDA is refused."""
    if precision == "auto":
        return "bf16" if dev.type == "cuda" else "fp32"
    if precision == "bf16" and dev.type != "cuda":
        raise UsageError("--precision bf16 needs a CUDA device; use fp32 on CPU")
    return precision


def autocast(device: torch.device, precision: str):
    if precision == "bf16" and device.type == "cuda":   # no weight-cast cache: graph capture
        return torch.autocast("cuda", dtype=torch.bfloat16, cache_enabled=False)
    return contextlib.nullcontext()


def parameter_groups(model: nn.Module, weight_decay: float, decay: str,
                     exempt: frozenset[int] = frozenset()) -> list[dict]:
    """Weight decay on matrices (ndim >= 2: linear, conv and embedding weights) unless a
    parameter is marked ``p._no_weight_decay = True`` or its ``id`` is in ``exempt``; none on
    biases, norm gains and other vectors. ``decay="all"`` decays everything (mad-lab)."""
    if decay == "all":
        return [{"params": list(model.parameters()), "weight_decay": weight_decay}]
    yes, no = [], []
    for p in model.parameters():
        if not p.requires_grad:
            continue
        matrix = p.ndim >= 2 and id(p) not in exempt
        (yes if matrix and not getattr(p, "_no_weight_decay", False) else no).append(p)
    return [{"params": yes, "weight_decay": weight_decay}, {"params": no, "weight_decay": 0.0}]


def lr_at(step: int, total_steps: int, lr: float, protocol: Protocol) -> float:
    """Cosine decay from ``lr`` to ``protocol.min_lr`` over the run, or constant."""
    if protocol.schedule == "constant" or total_steps <= 1:
        return lr
    floor = min(protocol.min_lr, lr)
    return floor + (lr - floor) * 0.5 * (1.0 + math.cos(math.pi * step / (total_steps - 1)))


@torch.no_grad()
def evaluation_counts(model: nn.Module, inputs: torch.Tensor, targets: torch.Tensor,
                      num_classes: int, batch_size: int, precision: str = "fp32") -> tuple:
    """The summed :func:`~madbench.metrics.scored_counts` of a dataset, on the device (no host
    synchronisation: the graphed engine captures this)."""
    was_training = model.training
    model.eval()
    totals = None
    try:
        with autocast(inputs.device, precision):
            for start in range(0, inputs.shape[0], batch_size):
                stats = scored_counts(model(inputs[start:start + batch_size]),
                                      targets[start:start + batch_size], num_classes)
                totals = stats if totals is None else tuple(a + b for a, b in zip(totals, stats))
    finally:
        model.train(was_training)     # also when the forward fails (e.g. refused capture)
    return totals


def evaluate_model(model: nn.Module, inputs: torch.Tensor, targets: torch.Tensor,
                   num_classes: int, batch_size: int, precision: str = "fp32"
                   ) -> dict[str, float]:
    """Token accuracy, macro accuracy and loss over the scored positions of a dataset."""
    return summarize(*evaluation_counts(model, inputs, targets, num_classes, batch_size,
                                        precision))


class Step:
    """One configuration's training step, the reference every engine is tested against: gather
    the batch ``inputs[idx]``, forward (under autocast for bf16), cross-entropy over the scored
    positions (plus any auxiliary loss a mixer left, unreported), backward, AdamW update; the
    loss is added to ``loss_sum`` on the device. ``lrs[step]`` is the learning rate of each
    step of the run. ``capturable`` builds an optimiser a CUDA graph can capture (the graphed
    engine); gradients are then not cleared (each replay writes them afresh)."""

    def __init__(self, model: nn.Module, train_data: tuple[torch.Tensor, torch.Tensor], lr: float,
                 weight_decay: float, protocol: Protocol, total_steps: int, precision: str,
                 capturable: bool = False):
        self.model = model
        self.inputs, self.targets = train_data
        self.precision, self.capturable = precision, capturable
        self.lrs = [lr_at(step, total_steps, lr, protocol) for step in range(total_steps)]
        self.opt, self.set_lr = adamw(parameter_groups(model, weight_decay, protocol.decay), lr,
                                      protocol.betas, protocol.eps, self.inputs.device,
                                      capturable)
        self.loss_sum = torch.zeros((), device=self.inputs.device)

    def __call__(self, idx: torch.Tensor) -> None:
        x = self.inputs.index_select(0, idx)
        y = self.targets.index_select(0, idx)
        with autocast(x.device, self.precision):
            logits = self.model(x)
        loss = nn.functional.cross_entropy(logits.float().reshape(-1, logits.shape[-1]),
                                           y.reshape(-1), ignore_index=-100)
        aux = auxiliary_loss(self.model)       # e.g. a router's load balancing; not reported
        if not self.capturable:
            self.opt.zero_grad(set_to_none=True)
        (loss if aux is None else loss + aux).backward()
        self.opt.step()
        self.loss_sum += loss.detach()


class Eager(Engine):
    """The plain engine: each configuration's :class:`Step`, eagerly, one after the other
    (one configuration for ``train``; several for the graphed engine without graphs)."""

    def __init__(self, steps: list[Step], test_data: tuple[torch.Tensor, torch.Tensor],
                 num_classes: int, batch_size: int, precision: str):
        self.steps, self.runs = steps, len(steps)
        self.test_data, self.num_classes = test_data, num_classes
        self.batch_size, self.precision = batch_size, precision

    def start_epoch(self, live: list[int]) -> None:
        for i in live:
            self.steps[i].loss_sum.zero_()

    def step(self, idx: torch.Tensor, step: int, live: list[int]) -> None:
        for i in live:
            run = self.steps[i]
            run.set_lr(run.lrs[step])
            run(idx)

    def end_epoch(self, live: list[int], steps: int) -> list[tuple[float, bool]]:
        sums = torch.stack([self.steps[i].loss_sum for i in live]).tolist()   # one sync
        return [(s / steps, not math.isfinite(s / steps)) for s in sums]

    def evaluate(self, runs: list[int]) -> list[dict]:
        return [evaluate_model(self.steps[i].model, *self.test_data, self.num_classes,
                         self.batch_size, self.precision) for i in runs]


def train(model: nn.Module, train_data: tuple[torch.Tensor, torch.Tensor],
          test_data: tuple[torch.Tensor, torch.Tensor], num_classes: int, lr: float,
          weight_decay: float, protocol: Protocol, seed: int, precision: str = "fp32",
          on_epoch: Callable[[int, int, float], None] | None = None) -> RunResult:
    """Train ``model`` under ``protocol`` and evaluate it on the test data.

    ``paper``-style protocols report the final model; with ``eval_every_epoch`` the epoch of
    lowest test loss is reported (mad-lab's checkpoint rule). With ``early_stop_accuracy``
    training stops at the first epoch whose test accuracy reaches it. A non-finite training
    loss ends the run as diverged, with accuracy 0."""
    steps_per_epoch, epochs = epoch_plan(train_data[0].shape[0], protocol)
    step = Step(model, train_data, lr, weight_decay, protocol, epochs * steps_per_epoch,
                precision)
    model.train()
    engine = Eager([step], test_data, num_classes, protocol.batch_size, precision)
    return train_protocol(engine, train_data[0].shape[0], protocol, seed,
                          train_data[0].device, on_epoch)[0]
