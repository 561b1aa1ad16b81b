"""The graphed engine: the (lr, weight decay) configurations of one setting trained side by
side, each as its own model whose whole training step (batch gather, forward, backward, AdamW
update, loss bookkeeping) is captured once in a CUDA graph and then replayed.

Each configuration gets its own CUDA stream and graph memory pool, so the GPU runs the C small
steps concurrently and the host only launches C graphs per step. Every run computes what the
plain trainer (``madbench.trainer.train``) computes, in the same order: the same step
(``trainer.Step``), initial weights (``torch.manual_seed(seed)`` before each model is built),
batch order and epochs (``madbench.loop``). Without CUDA (or with ``capture=False``) the
configurations run through the plain engine (``trainer.Eager``), one after the other within
each step.
"""
from __future__ import annotations

from typing import Callable, Sequence

import torch
from torch import nn

from .cuda_graphs import capture_enabled, capture_step
from .loop import RunResult, epoch_plan, train_protocol
from .protocol import Protocol
from .trainer import Eager, Step


class Graphed(Eager):
    """The plain engine with each configuration's step captured, once per batch size, in a
    CUDA graph on the configuration's own stream; a replay reads the batch indices and the
    learning rate from static device buffers."""

    def __init__(self, steps: list[Step], batch_sizes: Sequence[int], *args):
        super().__init__(steps, *args)
        device = steps[0].inputs.device
        self.main = torch.cuda.current_stream(device)
        self.captured = [self._capture(step, batch_sizes) for step in steps]

    @staticmethod
    def _capture(step: Step, batch_sizes: Sequence[int]) -> tuple:
        """(stream, static indices, graph per batch size, the schedule on the device). The
        graphs share one memory pool (they never run at the same time) that no other
        configuration uses (those run concurrently)."""
        device = step.inputs.device
        stream = torch.cuda.Stream(device)
        idx = torch.zeros(max(batch_sizes), dtype=torch.long, device=device)
        lrs = torch.tensor(step.lrs, dtype=torch.float32, device=device)  # one copy per step
        graphs, pool = {}, None
        for size in batch_sizes:
            static = idx[:size]
            graphs[size] = capture_step(lambda: step(static),
                                        [*step.model.parameters(), step.loss_sum],
                                        stream, pool, step.opt)
            pool = graphs[size].pool()
        return stream, idx, graphs, lrs

    def start_epoch(self, live: list[int]) -> None:
        for i in live:
            stream = self.captured[i][0]
            stream.wait_stream(self.main)                 # the new batch order is ready
            with torch.cuda.stream(stream):
                self.steps[i].loss_sum.zero_()

    def step(self, idx: torch.Tensor, step: int, live: list[int]) -> None:
        size = idx.shape[0]
        for i in live:
            stream, static, graphs, lrs = self.captured[i]
            with torch.cuda.stream(stream):
                static[:size].copy_(idx)
                self.steps[i].set_lr(lrs[step])
                graphs[size].replay()

    def end_epoch(self, live: list[int], steps: int) -> list[tuple[float, bool]]:
        for i in live:
            self.main.wait_stream(self.captured[i][0])
        return super().end_epoch(live, steps)


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
    inputs = train_data[0]
    device = inputs.device
    capture = capture_enabled(device, capture)
    n, bs = inputs.shape[0], protocol.batch_size
    steps_per_epoch, epochs = epoch_plan(n, protocol)
    steps = []
    for lr, wd in configs:
        torch.manual_seed(seed)
        model = make_model().to(device)
        model.train()
        steps.append(Step(model, train_data, lr, wd, protocol, epochs * steps_per_epoch,
                          precision, capturable=capture))
    rest = (test_data, num_classes, bs, precision)
    if capture:
        sizes = sorted({min(bs, n - b * bs) for b in range(steps_per_epoch)}, reverse=True)
        engine = Graphed(steps, sizes, *rest)
    else:
        engine = Eager(steps, *rest)
    return train_protocol(engine, n, protocol, seed, device, on_epoch)
