"""The graphed engine: the (lr, weight decay) configurations of one setting trained side by
side, each as its own model whose whole training step (batch gather, forward, backward, AdamW
update, loss bookkeeping) is captured once in a CUDA graph and then replayed.

Each configuration gets its own CUDA stream and graph memory pool, so the GPU runs the C small
steps concurrently and the host only launches C graphs per step. Every run computes what the
plain trainer (``madbench.trainer.train``) computes, in the same order: same initial weights
(``torch.manual_seed(seed)`` before each model is built), same batch order (one generator
seeded with ``seed``), same AdamW update and schedule. Without CUDA (or with ``capture=False``)
the same code runs eagerly, one configuration after the other within each step.
"""
from __future__ import annotations

import math
import time
from typing import Callable, Sequence

import torch
from torch import nn

from .cuda_graphs import adamw, capture_enabled, capture_step
from .model import auxiliary_loss
from .protocol import Protocol
from .trainer import RunResult, autocast, evaluate, final_metrics, lr_at, parameter_groups


class _Run:
    """One configuration: its model, optimiser, static step inputs and captured graphs."""

    def __init__(self, model: nn.Module, lr: float, weight_decay: float, protocol: Protocol,
                 data: tuple[torch.Tensor, torch.Tensor], total_steps: int, precision: str,
                 capture: bool):
        self.model, self.inputs, self.targets = model, *data
        self.precision, self.capture = precision, capture
        device = self.inputs.device
        self.schedule = [lr_at(s, total_steps, lr, protocol) for s in range(total_steps)]
        self.opt, self.set_lr = adamw(parameter_groups(model, weight_decay, protocol.decay), lr,
                                      protocol.betas, protocol.eps, device, capture)
        if capture:   # the whole schedule on the device: one copy per step, no host transfer
            self.schedule = torch.tensor(self.schedule, dtype=torch.float32, device=device)
            self.stream = torch.cuda.Stream(device)
        self.idx = torch.zeros(protocol.batch_size, dtype=torch.long, device=device)
        self.loss_sum = torch.zeros((), device=device)
        self.graphs: dict[int, torch.cuda.CUDAGraph] = {}
        self.alive = True           # not diverged, not stopped early
        self.diverged = False
        self.best: dict | None = None
        self.epoch_loss = math.nan
        self.epochs_done = 0

    def _step(self, idx: torch.Tensor) -> None:
        x = self.inputs.index_select(0, idx)
        y = self.targets.index_select(0, idx)
        with autocast(x.device, self.precision):
            logits = self.model(x)
        loss = nn.functional.cross_entropy(logits.float().reshape(-1, logits.shape[-1]),
                                           y.reshape(-1), ignore_index=-100)
        aux = auxiliary_loss(self.model)       # e.g. a router's load balancing; not reported
        if not self.capture:
            self.opt.zero_grad(set_to_none=True)
        (loss if aux is None else loss + aux).backward()
        self.opt.step()
        self.loss_sum += loss.detach()

    def prepare(self, batch_sizes: Sequence[int]) -> None:
        """Capture one graph per batch size; the graphs share one memory pool (they never run
        at the same time) that no other configuration uses (those run concurrently)."""
        pool = None
        for size in batch_sizes if self.capture else ():
            idx = self.idx[:size]
            self.graphs[size] = capture_step(lambda: self._step(idx),
                                             [*self.model.parameters(), self.loss_sum],
                                             self.stream, pool, self.opt)
            pool = self.graphs[size].pool()

    def step(self, idx: torch.Tensor, step: int) -> None:
        if not self.capture:
            self.set_lr(self.schedule[step])
            self._step(idx)
            return
        with torch.cuda.stream(self.stream):
            size = idx.shape[0]
            self.idx[:size].copy_(idx)
            self.set_lr(self.schedule[step])
            self.graphs[size].replay()


def train_graphed(make_model: Callable[[], nn.Module],
                  train_data: tuple[torch.Tensor, torch.Tensor],
                  test_data: tuple[torch.Tensor, torch.Tensor], num_classes: int,
                  configs: Sequence[tuple[float, float]], protocol: Protocol, seed: int,
                  precision: str = "fp32",
                  on_epoch: Callable[[int, int, float], None] | None = None,
                  capture: bool | None = None) -> list[RunResult]:
    """Train one model per (lr, weight decay) configuration, side by side; one RunResult each,
    with the plain trainer's semantics (divergence, ``eval_every_epoch``, early stop).

    ``capture`` (default: on for CUDA unless MADBENCH_CUDA_GRAPHS=0) captures each step in a
    CUDA graph."""
    inputs, targets = train_data
    device = inputs.device
    capture = capture_enabled(device, capture)
    n = inputs.shape[0]
    bs = protocol.batch_size
    steps_per_epoch = -(-n // bs)
    epochs = protocol.epochs_for(steps_per_epoch)
    total = epochs * steps_per_epoch
    runs = []
    for lr, wd in configs:
        torch.manual_seed(seed)
        model = make_model().to(device)
        model.train()
        runs.append(_Run(model, lr, wd, protocol, train_data, total, precision, capture))
    sizes = sorted({min(bs, n - b * bs) for b in range(steps_per_epoch)}, reverse=True)
    main = torch.cuda.current_stream(device) if capture else None
    for run in runs:
        run.prepare(sizes)
    gen = torch.Generator(device=device)
    gen.manual_seed(seed)
    start = time.perf_counter()
    step = 0
    for epoch in range(epochs):
        live = [r for r in runs if r.alive]
        if not live:
            break
        order = torch.randperm(n, generator=gen, device=device)
        for run in live:
            if capture:
                run.stream.wait_stream(main)          # the new batch order is ready
                with torch.cuda.stream(run.stream):
                    run.loss_sum.zero_()
            else:
                run.loss_sum.zero_()
        for b in range(steps_per_epoch):
            idx = order[b * bs:(b + 1) * bs]
            for run in live:
                run.step(idx, step)
            step += 1
        if capture:
            for run in live:
                main.wait_stream(run.stream)
        losses = torch.stack([r.loss_sum for r in live]).tolist()    # one sync per epoch
        for run, loss_sum in zip(live, losses):
            run.epochs_done = epoch + 1
            run.epoch_loss = loss_sum / steps_per_epoch
            if not math.isfinite(run.epoch_loss):
                run.alive, run.diverged = False, True
                continue
            if protocol.eval_every_epoch:
                metrics = evaluate(run.model, *test_data, num_classes, bs, precision)
                if run.best is None or metrics["loss"] < run.best["loss"]:
                    run.best = metrics
                if (protocol.early_stop_accuracy is not None
                        and metrics["accuracy"] >= protocol.early_stop_accuracy):
                    run.alive = False
        if on_epoch is not None:
            finite = [r.epoch_loss for r in live if math.isfinite(r.epoch_loss)]
            on_epoch(epoch + 1, epochs, min(finite) if finite else math.nan)
    seconds = time.perf_counter() - start
    results = []
    for run in runs:
        metrics, diverged = final_metrics(
            run.diverged, run.best,
            lambda: evaluate(run.model, *test_data, num_classes, bs, precision))
        results.append(RunResult(metrics["accuracy"], metrics["macro_accuracy"],
                                 metrics["loss"], run.epoch_loss, diverged, run.epochs_done,
                                 run.epochs_done * steps_per_epoch, seconds,
                                 metrics["scored_positions"]))
    return results
