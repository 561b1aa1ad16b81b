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

``compile_models`` (the ``compiled`` engine) trains ``torch.compile``'d models the same way.
Each compiled model is first checked against its eager self on one training batch, in training
mode and in evaluation mode: a model whose compiled outputs differ raises
:class:`CompileMismatch` (the sweep then trains the group uncompiled). Compilation fuses the
step's small norm, residual and activation kernels; a layer whose Triton kernels Dynamo
traces instead of calling them as opaque operators can compile to wrong numbers (the bundled
kernels are registered as ``torch.library`` custom operators for this reason).

Under a protocol that evaluates at every epoch (``eval_every_epoch``, ``early_stop_accuracy``)
each configuration's evaluation is captured too, at its first use, on the configuration's
stream: the C evaluations then run concurrently and the host reads their counts once. An
evaluation that cannot be captured runs eagerly (the same numbers).
"""
from __future__ import annotations

from typing import Callable, Sequence

import torch
from torch import nn

from .cuda_graphs import CaptureError, capture_enabled, capture_step
from .loop import RunResult, epoch_plan, evaluates_every_epoch, train_protocol
from .metrics import summarize
from .protocol import Protocol
from .trainer import Eager, Step, autocast, evaluation_counts


#: torch.compile backend of the ``compiled`` engine (tests use a cheaper one)
COMPILE_BACKEND = "inductor"


class CompileMismatch(RuntimeError):
    """A compiled model's outputs differ from its eager self's; train it uncompiled."""


def compile_checked(model: nn.Module, inputs: torch.Tensor, precision: str) -> nn.Module:
    """``torch.compile(model)``, after checking that it gives the eager model's logits on
    ``inputs`` in training mode (with gradients, the graph the step uses) and in evaluation
    mode (without, as evaluation runs); relative tolerance 2e-2 under bf16, 1e-3 in fp32.
    Raises :class:`CompileMismatch` otherwise. Leaves ``model`` in training mode."""
    compiled = torch.compile(model, backend=COMPILE_BACKEND, dynamic=False)
    tol = 2e-2 if precision == "bf16" else 1e-3
    for mode in ("train", "eval"):
        model.train(mode == "train")
        with torch.set_grad_enabled(mode == "train"), autocast(inputs.device, precision):
            eager, other = model(inputs).float(), compiled(inputs).float()
        scale = eager.abs().max().clamp_min(1e-6)
        worst = ((other - eager).abs().max() / scale).item()
        if not worst <= tol:                    # NaN too
            model.train()
            raise CompileMismatch(f"compiled logits differ from eager in {mode} mode by "
                                  f"{worst:.2g} (relative; tolerance {tol:g})")
    model.train()
    return compiled


class Graphed(Eager):
    """The plain engine with each configuration's step captured, once per batch size, in a
    CUDA graph on the configuration's own stream; a replay reads the batch indices and the
    learning rate from static device buffers."""

    def __init__(self, steps: list[Step], batch_sizes: Sequence[int], *args,
                 capture_evaluation: bool = False):
        super().__init__(steps, *args)
        device = steps[0].inputs.device
        self.main = torch.cuda.current_stream(device)
        self.captured = [self._capture(step, batch_sizes) for step in steps]
        self.capture_evaluation = capture_evaluation
        self.evaluations: dict[int, tuple | None] = {}   #: run -> (graph, counts) or None

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

    def _evaluation(self, i: int) -> tuple | None:
        """Run ``i``'s evaluation captured on its stream: (graph, the counts it writes), or
        None when it cannot be captured (a host synchronisation, or no memory for the graph's
        own pool)."""
        if i not in self.evaluations:
            model, stream = self.steps[i].model, self.captured[i][0]
            args = (*self.test_data, self.num_classes, self.batch_size, self.precision)
            counts: list[torch.Tensor] = []     # made by the first (warm-up) call

            def evaluate():
                values = evaluation_counts(model, *args)
                if not counts:
                    counts.extend(values)
                for static, value in zip(counts, values):
                    static.copy_(value)
            try:
                self.evaluations[i] = (capture_step(evaluate, [], stream), counts)
            except (CaptureError, torch.cuda.OutOfMemoryError):  # eager evaluation still fits
                self.main.wait_stream(stream)
                torch.cuda.empty_cache()
                self.evaluations[i] = None
        return self.evaluations[i]

    def evaluate(self, runs: list[int]) -> list[dict]:
        if not self.capture_evaluation:
            return super().evaluate(runs)
        captured = {i: self._evaluation(i) for i in runs}
        for i, evaluation in captured.items():
            if evaluation is not None:
                with torch.cuda.stream(self.captured[i][0]):
                    evaluation[0].replay()
        for i in runs:
            self.main.wait_stream(self.captured[i][0])
        return [summarize(*captured[i][1]) if captured[i] is not None
                else super().evaluate([i])[0] for i in runs]


def train_graphed(make_model: Callable[[], nn.Module],
                  train_data: tuple[torch.Tensor, torch.Tensor],
                  test_data: tuple[torch.Tensor, torch.Tensor], num_classes: int,
                  configs: Sequence[tuple[float, float]], protocol: Protocol, seed: int,
                  precision: str = "fp32",
                  on_epoch: Callable[[int, int, float], None] | None = None,
                  capture: bool | None = None,
                  compile_models: bool = False) -> list[RunResult]:
    """Train one model per (lr, weight decay) configuration, side by side; one RunResult each,
    with the plain trainer's semantics (divergence, ``eval_every_epoch``, early stop).

    ``capture`` (default: on for CUDA unless MADBENCH_CUDA_GRAPHS=0) captures each step in a
    CUDA graph. ``compile_models`` trains ``compile_checked`` models (may raise
    :class:`CompileMismatch` before any training)."""
    inputs = train_data[0]
    device = inputs.device
    capture = capture_enabled(device, capture)
    n, bs = inputs.shape[0], protocol.batch_size
    steps_per_epoch, epochs = epoch_plan(n, protocol)
    steps = []
    if compile_models:      # a fresh compiler cache per group: no group meets the recompile limit
        torch._dynamo.reset()
    for lr, wd in configs:
        torch.manual_seed(seed)
        model = make_model().to(device)
        model.train()
        if compile_models:
            model = compile_checked(model, inputs[:bs], precision)
        steps.append(Step(model, train_data, lr, wd, protocol, epochs * steps_per_epoch,
                          precision, capturable=capture))
    rest = (test_data, num_classes, bs, precision)
    if capture:
        sizes = sorted({min(bs, n - b * bs) for b in range(steps_per_epoch)}, reverse=True)
        engine = Graphed(steps, sizes, *rest,
                         capture_evaluation=evaluates_every_epoch(protocol))
    else:
        engine = Eager(steps, *rest)
    return train_protocol(engine, n, protocol, seed, device, on_epoch)
