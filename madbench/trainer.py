"""The plain trainer: one model, one (lr, weight decay) configuration, one setting.

Data stay on the device; the step loop never waits for the host (the loss is accumulated on the
device and read once per epoch, where divergence is detected too). Deterministic given the seed
(on CPU; on CUDA up to the nondeterminism of some kernels).
"""
from __future__ import annotations

import contextlib
import math
import time
from dataclasses import dataclass
from typing import Callable

import torch
from torch import nn

from .metrics import scored_counts, summarize
from .model import auxiliary_loss
from .protocol import Protocol


def resolve_device(device: str = "auto") -> torch.device:
    """``auto`` (CUDA when available, else CPU), ``cpu``, ``cuda`` or ``cuda:N``; anything
    else, or a CUDA device this machine does not have, is a usage error (one line)."""
    from .errors import UsageError
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
        from .errors import UsageError
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
def evaluate(model: nn.Module, inputs: torch.Tensor, targets: torch.Tensor, num_classes: int,
             batch_size: int, precision: str = "fp32") -> dict[str, float]:
    """Token accuracy, macro accuracy and loss over the scored positions of a dataset."""
    was_training = model.training
    model.eval()
    totals = None
    with autocast(inputs.device, precision):
        for start in range(0, inputs.shape[0], batch_size):
            stats = scored_counts(model(inputs[start:start + batch_size]),
                                  targets[start:start + batch_size], num_classes)
            totals = stats if totals is None else tuple(a + b for a, b in zip(totals, stats))
    model.train(was_training)
    return summarize(*totals)


def final_metrics(diverged: bool, best: dict | None,
                  evaluate_now: Callable[[], dict]) -> tuple[dict, bool]:
    """A finished run's reported metrics and whether it counts as diverged: zeros for a
    diverged run, else the best epoch's (``eval_every_epoch``) or a final evaluation; a
    non-finite test loss also counts as divergence (accuracy 0)."""
    if diverged:
        return {"accuracy": 0.0, "macro_accuracy": 0.0, "loss": float("nan"),
                "scored_positions": 0}, True
    metrics = best if best is not None else evaluate_now()
    if not math.isfinite(metrics["loss"]):
        return {**metrics, "accuracy": 0.0, "macro_accuracy": 0.0}, True
    return metrics, False


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


def train(model: nn.Module, train_data: tuple[torch.Tensor, torch.Tensor],
          test_data: tuple[torch.Tensor, torch.Tensor], num_classes: int, lr: float,
          weight_decay: float, protocol: Protocol, seed: int, precision: str = "fp32",
          on_epoch: Callable[[int, int, float], None] | None = None) -> RunResult:
    """Train ``model`` under ``protocol`` and evaluate it on the test data.

    ``paper``-style protocols report the final model; with ``eval_every_epoch`` the epoch of
    lowest test loss is reported (mad-lab's checkpoint rule) and training stops early once test
    accuracy reaches ``early_stop_accuracy``. A non-finite training loss ends the run as
    diverged, with accuracy 0."""
    inputs, targets = train_data
    device = inputs.device
    n = inputs.shape[0]
    bs = protocol.batch_size
    steps_per_epoch = -(-n // bs)
    epochs = protocol.epochs_for(steps_per_epoch)
    total_steps = epochs * steps_per_epoch
    opt = torch.optim.AdamW(parameter_groups(model, weight_decay, protocol.decay), lr=lr,
                            betas=tuple(protocol.betas), eps=protocol.eps,
                            fused=device.type == "cuda")
    gen = torch.Generator(device=device)
    gen.manual_seed(seed)
    model.train()
    start = time.perf_counter()
    step = 0
    best = None
    diverged = False
    epoch_loss = float("nan")
    for epoch in range(epochs):
        order = torch.randperm(n, generator=gen, device=device)
        loss_sum = torch.zeros((), device=device)
        for b in range(steps_per_epoch):
            idx = order[b * bs:(b + 1) * bs]
            x, y = inputs[idx], targets[idx]
            for group in opt.param_groups:
                group["lr"] = lr_at(step, total_steps, lr, protocol)
            with autocast(device, precision):
                logits = model(x)
            loss = nn.functional.cross_entropy(logits.float().reshape(-1, logits.shape[-1]),
                                               y.reshape(-1), ignore_index=-100)
            aux = auxiliary_loss(model)        # e.g. a router's load balancing; not reported
            opt.zero_grad(set_to_none=True)
            (loss if aux is None else loss + aux).backward()
            opt.step()
            loss_sum += loss.detach()
            step += 1
        epoch_loss = float(loss_sum) / steps_per_epoch       # one sync per epoch
        if not math.isfinite(epoch_loss):
            diverged = True
            break
        if on_epoch is not None:
            on_epoch(epoch + 1, epochs, epoch_loss)
        if protocol.eval_every_epoch:
            metrics = evaluate(model, *test_data, num_classes, bs, precision)
            if best is None or metrics["loss"] < best["loss"]:
                best = metrics
            if (protocol.early_stop_accuracy is not None
                    and metrics["accuracy"] >= protocol.early_stop_accuracy):
                break
    seconds = time.perf_counter() - start
    metrics, diverged = final_metrics(
        diverged, best, lambda: evaluate(model, *test_data, num_classes, bs, precision))
    return RunResult(metrics["accuracy"], metrics["macro_accuracy"], metrics["loss"],
                     epoch_loss, diverged, epoch + 1 if epochs else 0, step, seconds,
                     metrics["scored_positions"])
