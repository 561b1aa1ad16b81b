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
import time
from typing import Callable, Sequence

import torch
from torch import nn
from torch.func import functional_call, stack_module_state, vmap

from .metrics import scored_counts, summarize
from .protocol import Protocol
from .trainer import RunResult, autocast, lr_at


class StackedAdamW:
    """AdamW over parameters stacked on a leading configuration axis, with one lr and weight
    decay per configuration (same update as ``torch.optim.AdamW``, decoupled decay)."""

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
        self.t = 0

    @torch.no_grad()
    def step(self, lr_scale: torch.Tensor | float) -> None:
        """One update; ``lr_scale`` multiplies every configuration's base lr (the schedule)."""
        self.t += 1
        c1 = 1 - self.b1 ** self.t
        c2 = 1 - self.b2 ** self.t
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


def _schedule_scale(step: int, total: int, lrs: Sequence[float], protocol: Protocol,
                    device) -> torch.Tensor:
    """Per-configuration lr at ``step`` divided by its base lr."""
    return torch.tensor([lr_at(step, total, lr, protocol) / lr for lr in lrs],
                        dtype=torch.float32, device=device)


def train_batched(make_model: Callable[[], nn.Module],
                  train_data: tuple[torch.Tensor, torch.Tensor],
                  test_data: tuple[torch.Tensor, torch.Tensor], num_classes: int,
                  configs: Sequence[tuple[float, float]], protocol: Protocol, seed: int,
                  precision: str = "fp32",
                  on_epoch: Callable[[int, int, float], None] | None = None) -> list[RunResult]:
    """Train one model per (lr, weight decay) configuration at once; one RunResult each.

    ``make_model`` is called once per configuration right after ``torch.manual_seed(seed)``.
    Evaluation happens after the last epoch (protocols with ``eval_every_epoch`` use the plain
    trainer). A configuration whose loss becomes non-finite is reported as diverged; the
    others continue unaffected (its weights are frozen from then on)."""
    if protocol.eval_every_epoch:
        raise ValueError("the batched engine evaluates once at the end; use the plain trainer")
    inputs, targets = train_data
    device = inputs.device
    models = []
    for _ in configs:
        torch.manual_seed(seed)
        models.append(make_model().to(device))
    base = copy.deepcopy(models[0]).to("meta")
    params, buffers = stack_module_state(models)
    decays = _decay_flags(models[0], protocol.decay)
    lrs = [lr for lr, _ in configs]
    opt = StackedAdamW(params, decays, lrs, [wd for _, wd in configs], protocol.betas,
                       protocol.eps)
    num_configs = len(configs)

    def forward_one(p, b, x):
        return functional_call(base, (p, b), (x,))

    forward = vmap(forward_one, in_dims=(0, 0, None))
    n = inputs.shape[0]
    bs = protocol.batch_size
    steps_per_epoch = -(-n // bs)
    epochs = protocol.epochs_for(steps_per_epoch)
    total = epochs * steps_per_epoch
    gen = torch.Generator(device=device)
    gen.manual_seed(seed)
    alive = torch.ones(num_configs, dtype=torch.bool, device=device)
    last_loss = torch.zeros(num_configs, device=device)
    step = 0
    start = time.perf_counter()
    for _epoch in range(epochs):
        order = torch.randperm(n, generator=gen, device=device)
        loss_sum = torch.zeros(num_configs, device=device)
        for b in range(steps_per_epoch):
            idx = order[b * bs:(b + 1) * bs]
            x, y = inputs[idx], targets[idx]
            with autocast(device, precision):
                logits = forward(params, buffers, x)                # [C, B, L, V]
            per_config = nn.functional.cross_entropy(
                logits.float().reshape(-1, logits.shape[-1]),
                y.expand(num_configs, *y.shape).reshape(-1), ignore_index=-100,
                reduction="none").view(num_configs, -1)
            mask = (y != -100).reshape(1, -1)
            losses = (per_config * mask).sum(1) / mask.sum().clamp(min=1)
            finite = torch.isfinite(losses)
            alive &= finite
            torch.where(alive, losses, torch.zeros_like(losses)).sum().backward()
            grads = [p.grad for p in params.values() if p.grad is not None]
            for g in grads:       # non-finite gradients diverge a configuration, as they would
                alive &= torch.isfinite(g).flatten(1).all(1)         # poison its weights
            for g in grads:                                         # freeze diverged configs
                g.nan_to_num_(0.0, 0.0, 0.0).mul_(alive.view((-1,) + (1,) * (g.ndim - 1)))
            scale = _schedule_scale(step, total, lrs, protocol, device) * alive
            opt.step(scale)
            loss_sum += torch.where(finite, losses.detach(), torch.full_like(losses, math.nan))
            step += 1
        last_loss = loss_sum / steps_per_epoch
        if not bool(alive.any()):                                   # one sync per epoch
            break
        if on_epoch is not None:
            on_epoch(_epoch + 1, epochs, float(last_loss[alive].min()))
    seconds = time.perf_counter() - start
    metrics = evaluate_batched(forward, params, buffers, test_data, num_classes, bs, precision)
    alive_host = alive.tolist()
    last = last_loss.tolist()
    results = []
    for c, m in enumerate(metrics):
        diverged = not alive_host[c] or not math.isfinite(m["loss"])
        if diverged:
            m = {**m, "accuracy": 0.0, "macro_accuracy": 0.0, "loss": float("nan")}
        results.append(RunResult(m["accuracy"], m["macro_accuracy"], m["loss"], last[c],
                                 diverged, _epoch + 1, step, seconds, m["scored_positions"]))
    return results


def supports_batching(make_model: Callable[[], nn.Module], sample: torch.Tensor) -> str | None:
    """None when the model can be vmapped over stacked weights (forward and backward on a
    slice of ``sample``), else the reason it cannot (e.g. data-dependent sparse routing)."""
    models = [make_model().to(sample.device) for _ in range(2)]
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
