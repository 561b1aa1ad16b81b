"""The sweep engine: the (lr, weight decay) configurations of one setting trained together as
one batched model.

The C models start from the same weights (as in sequential training, where each run seeds
``torch.manual_seed(seed)`` before building its model), see the same batches in the same order,
and differ only in their optimiser hyper-parameters. Their weights are stacked on a leading
configuration axis (``torch.func.stack_module_state``), the forward pass is ``vmap``-ed over
that axis, and one AdamW step updates every configuration with its own lr and weight decay. The
result equals sequential training of each configuration up to floating-point reassociation.
"""
from __future__ import annotations

import copy
import math
from typing import Callable, Sequence

import torch
from torch import nn
from torch.func import functional_call, stack_module_state, vmap

from .cuda_graphs import capture_enabled, capture_step
from .loop import Engine, RunResult, epoch_plan, evaluates_every_epoch, train_protocol
from .metrics import scored_counts, summarize
from .protocol import Protocol
from .trainer import autocast, lr_at


class StackedAdamW:
    """AdamW over parameters stacked on a leading configuration axis, with one lr and weight
    decay per configuration (same update as ``torch.optim.AdamW``, decoupled decay). All its
    state lives on the device, so a step can be captured in a CUDA graph."""

    def __init__(self, params: dict[str, torch.Tensor], decays: dict[str, bool],
                 lrs: Sequence[float], weight_decays: Sequence[float], betas, eps: float):
        self.params = params
        first = next(iter(params.values()))
        self.base_lr = torch.tensor(list(lrs), dtype=torch.float32, device=first.device)
        self.wd = torch.tensor(list(weight_decays), dtype=torch.float32, device=first.device)
        self.decays = decays
        self.b1, self.b2 = betas
        self.eps = eps
        self.m = {k: torch.zeros_like(p) for k, p in params.items()}
        self.v = {k: torch.zeros_like(p) for k, p in params.items()}
        self.t = torch.zeros((), dtype=torch.float32, device=first.device)

    def state(self) -> list[torch.Tensor]:
        return [*self.params.values(), *self.m.values(), *self.v.values(), self.t]

    @torch.no_grad()
    def step(self, lr_scale: torch.Tensor) -> None:
        """One update; ``lr_scale`` [C] multiplies each configuration's base lr (the schedule;
        0 freezes a configuration)."""
        self.t += 1
        c1 = 1 - torch.pow(self.b1, self.t)
        c2 = 1 - torch.pow(self.b2, self.t)
        lr = self.base_lr * lr_scale
        for k, p in self.params.items():
            g = p.grad
            if g is None:
                continue
            shape = (-1,) + (1,) * (p.ndim - 1)
            lr_k = lr.view(shape)
            if self.decays[k]:
                p.mul_(1 - lr_k * self.wd.view(shape))
            self.m[k].lerp_(g, 1 - self.b1)
            self.v[k].mul_(self.b2).addcmul_(g, g, value=1 - self.b2)
            denom = (self.v[k] / c2).sqrt_().add_(self.eps)
            p.addcdiv_(self.m[k] * (lr_k / c1), denom, value=-1.0)
            p.grad = None


def _decay_flags(model: nn.Module, decay: str) -> dict[str, bool]:
    return {name: decay == "all" or (p.ndim >= 2 and not getattr(p, "_no_weight_decay", False))
            for name, p in model.named_parameters()}


def _schedule(total: int, lrs: Sequence[float], protocol: Protocol, device) -> torch.Tensor:
    """[total, C]: each configuration's lr at each step divided by its base lr."""
    return torch.tensor([[lr_at(step, total, lr, protocol) / lr for lr in lrs]
                         for step in range(total)], dtype=torch.float32, device=device)


class _Stepper:
    """One optimisation step of every configuration on the batch ``inputs[idx]``; on CUDA the
    whole step (gather, forward, backward, update) is captured once per batch shape in a CUDA
    graph and replayed."""

    def __init__(self, forward, params, buffers, opt, data, num_configs, precision,
                 capture: bool):
        self.forward, self.params, self.buffers, self.opt = forward, params, buffers, opt
        self.inputs, self.targets = data
        self.num_configs = num_configs
        self.precision = precision
        device = self.inputs.device
        self.alive = torch.ones(num_configs, dtype=torch.bool, device=device)
        self.loss_sum = torch.zeros(num_configs, device=device)
        self.capture = capture
        self.graphs: dict[int, tuple] = {}
        self.pool = None

    def _step(self, idx: torch.Tensor, scale: torch.Tensor) -> None:
        x = self.inputs.index_select(0, idx)
        y = self.targets.index_select(0, idx)
        c = self.num_configs
        with autocast(x.device, self.precision):
            logits = self.forward(self.params, self.buffers, x)       # [C, B, L, V]
        per_token = nn.functional.cross_entropy(
            logits.float().reshape(-1, logits.shape[-1]), y.expand(c, *y.shape).reshape(-1),
            ignore_index=-100, reduction="none").view(c, -1)
        mask = (y != -100).reshape(1, -1)
        losses = (per_token * mask).sum(1) / mask.sum().clamp(min=1)
        finite = torch.isfinite(losses)
        self.alive &= finite
        torch.where(self.alive, losses, torch.zeros_like(losses)).sum().backward()
        grads = [p.grad for p in self.params.values() if p.grad is not None]
        for g in grads:           # non-finite gradients diverge a configuration, as they would
            self.alive &= torch.isfinite(g).flatten(1).all(1)        # poison its weights
        for g in grads:                                             # freeze diverged configs
            g.nan_to_num_(0.0, 0.0, 0.0).mul_(self.alive.view((-1,) + (1,) * (g.ndim - 1)))
        self.opt.step(scale * self.alive)
        self.loss_sum += torch.where(finite, losses.detach(), torch.full_like(losses, math.nan))

    def __call__(self, idx: torch.Tensor, scale: torch.Tensor) -> None:
        if not self.capture:
            self._step(idx, scale)
            return
        size = idx.shape[0]
        if size not in self.graphs:
            self.graphs[size] = self._capture(size, scale)
        graph, static_idx, static_scale = self.graphs[size]
        static_idx.copy_(idx)
        static_scale.copy_(scale)
        graph.replay()

    def _capture(self, size: int, scale: torch.Tensor):
        static_idx = torch.arange(size, device=self.inputs.device)
        static_scale = scale.clone()
        graph = capture_step(lambda: self._step(static_idx, static_scale),
                             [*self.opt.state(), self.alive, self.loss_sum],
                             torch.cuda.Stream(self.inputs.device), self.pool)
        self.pool = graph.pool()
        return graph, static_idx, static_scale


class Batched(Engine):
    """The configurations as one model with stacked weights: each step is one vmapped forward
    and backward and one :class:`StackedAdamW` update (``_Stepper``). A configuration whose
    loss or gradients become non-finite is frozen, not left out, so the loop carries it until
    every configuration has diverged (its record stays as it was when it diverged)."""

    carries_finished = True

    def __init__(self, make_model, train_data, test_data, num_classes, configs, protocol,
                 seed, total_steps, precision, capture):
        device = train_data[0].device
        models = []
        for _ in configs:
            torch.manual_seed(seed)
            models.append(make_model().to(device))
        base = copy.deepcopy(models[0]).to("meta")
        self.params, self.buffers = stack_module_state(models)
        lrs = [lr for lr, _ in configs]
        opt = StackedAdamW(self.params, _decay_flags(models[0], protocol.decay), lrs,
                           [wd for _, wd in configs], protocol.betas, protocol.eps)

        def forward_one(p, b, x):
            return functional_call(base, (p, b), (x,))

        self.forward = vmap(forward_one, in_dims=(0, 0, None))
        self.runs = len(configs)
        self.schedule = _schedule(total_steps, lrs, protocol, device)
        self.stepper = _Stepper(self.forward, self.params, self.buffers, opt, train_data,
                                self.runs, precision, capture)
        self.test_data, self.num_classes = test_data, num_classes
        self.batch_size, self.precision = protocol.batch_size, precision

    def start_epoch(self, live: list[int]) -> None:
        self.stepper.loss_sum.zero_()

    def step(self, idx: torch.Tensor, step: int, live: list[int]) -> None:
        self.stepper(idx, self.schedule[step])

    def end_epoch(self, live: list[int], steps: int) -> list[tuple[float, bool]]:
        losses = (self.stepper.loss_sum / steps).tolist()              # one sync per epoch
        alive = self.stepper.alive.tolist()
        return [(losses[i], not alive[i]) for i in live]

    def evaluate(self, runs: list[int]) -> list[dict]:
        metrics = evaluate_batched(self.forward, self.params, self.buffers, self.test_data,
                                   self.num_classes, self.batch_size, self.precision)
        return [metrics[i] for i in runs]


def train_batched(make_model: Callable[[], nn.Module],
                  train_data: tuple[torch.Tensor, torch.Tensor],
                  test_data: tuple[torch.Tensor, torch.Tensor], num_classes: int,
                  configs: Sequence[tuple[float, float]], protocol: Protocol, seed: int,
                  precision: str = "fp32",
                  on_epoch: Callable[[int, int, float], None] | None = None,
                  capture: bool | None = None) -> list[RunResult]:
    """Train one model per (lr, weight decay) configuration at once; one RunResult each.

    ``make_model`` is called once per configuration right after ``torch.manual_seed(seed)``.
    Evaluation happens after the last epoch (protocols that evaluate every epoch,
    ``eval_every_epoch`` or ``early_stop_accuracy``, use the plain or graphed engine). A
    configuration whose loss or gradients become non-finite is reported as diverged; the
    others continue unaffected (its weights are frozen from then on).

    ``capture``: capture the training step in a CUDA graph (default: on CUDA unless
    MADBENCH_CUDA_GRAPHS=0; on an H100 it took the six-configuration Hyena step from 22.6 ms
    eager to 14.4 ms, benchmarks/RESULTS.md)."""
    device = train_data[0].device
    capture = capture_enabled(device, capture)
    if evaluates_every_epoch(protocol):
        raise ValueError("the batched engine evaluates once at the end; use the plain trainer")
    if device.type != "cuda":
        return _train_batched(make_model, train_data, test_data, num_classes, configs,
                              protocol, seed, precision, on_epoch, capture)
    # Everything on one side stream: no work of this run ever touches the legacy default
    # stream, which CUDA-graph capture forbids.
    stream = torch.cuda.Stream(device)
    stream.wait_stream(torch.cuda.current_stream(device))
    with torch.cuda.stream(stream):
        results = _train_batched(make_model, train_data, test_data, num_classes, configs,
                                 protocol, seed, precision, on_epoch, capture)
    torch.cuda.current_stream(device).wait_stream(stream)
    return results


def _train_batched(make_model, train_data, test_data, num_classes, configs, protocol, seed,
                   precision, on_epoch, capture) -> list[RunResult]:
    n = train_data[0].shape[0]
    steps_per_epoch, epochs = epoch_plan(n, protocol)
    engine = Batched(make_model, train_data, test_data, num_classes, configs, protocol, seed,
                     epochs * steps_per_epoch, precision, capture)
    return train_protocol(engine, n, protocol, seed, train_data[0].device, on_epoch)


def supports_batching(make_model: Callable[[], nn.Module], sample: torch.Tensor) -> str | None:
    """None when the model can be vmapped over stacked weights (forward and backward on a
    slice of ``sample``), else the reason it cannot (e.g. data-dependent sparse routing)."""
    models = [make_model().to(sample.device) for _ in range(2)]
    if any(getattr(m, "returns_aux_loss", False) for m in models[0].modules()):
        return "a mixer adds an auxiliary loss, which the batched engine does not collect"
    base = copy.deepcopy(models[0]).to("meta")
    params, buffers = stack_module_state(models)
    try:
        out = vmap(lambda p, b, x: functional_call(base, (p, b), (x,)),
                   in_dims=(0, 0, None))(params, buffers, sample[:2])
        out.float().square().mean().backward()
    except (RuntimeError, NotImplementedError) as exc:
        return f"{type(exc).__name__}: {exc}".splitlines()[0]
    return None


@torch.no_grad()
def evaluate_batched(forward, params, buffers, test_data, num_classes: int, batch_size: int,
                     precision: str) -> list[dict[str, float]]:
    inputs, targets = test_data
    num_configs = next(iter(params.values())).shape[0]
    totals: list = [None] * num_configs
    with autocast(inputs.device, precision):
        for start in range(0, inputs.shape[0], batch_size):
            logits = forward(params, buffers, inputs[start:start + batch_size])
            y = targets[start:start + batch_size]
            for c in range(num_configs):
                stats = scored_counts(logits[c], y, num_classes)
                totals[c] = stats if totals[c] is None else tuple(
                    a + b for a, b in zip(totals[c], stats))
    return [summarize(*t) for t in totals]
