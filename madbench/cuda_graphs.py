"""Capturing a whole training step (forward, backward, optimiser update) in a CUDA graph.

At MAD and small-scaling shapes a step is a few hundred small kernels, so an eager step costs
far more host time (Python, dispatch, launches) than GPU time; a captured step is replayed with
one launch. Shared by the graphed MAD engine (``madbench.graphed``) and the scaling runs.

Rules a captured step follows (PyTorch's "whole network capture"): every tensor it reads or
writes has a fixed address (inputs are copied into static buffers before each replay), nothing
in it synchronises with the host, and the optimiser is built with ``capturable=True`` and a
learning rate held in a device tensor.
"""
from __future__ import annotations

import os
from typing import Callable, Iterable, Sequence

import torch

from .errors import warn


def adamw(groups: list[dict], lr: float, betas: Sequence[float], eps: float,
          device: torch.device, capturable: bool):
    """AdamW and a function that sets its learning rate. When ``capturable`` (CUDA) the lr is
    one device tensor shared by all groups, which a captured step reads at every replay."""
    if not capturable:
        opt = torch.optim.AdamW(groups, lr=lr, betas=tuple(betas), eps=eps,
                                fused=device.type == "cuda")

        def set_lr(value):
            for group in opt.param_groups:
                group["lr"] = float(value)
        return opt, set_lr
    lr_now = torch.tensor(float(lr), dtype=torch.float32, device=device)
    opt = torch.optim.AdamW(groups, lr=lr_now, betas=tuple(betas), eps=eps, fused=True,
                            capturable=True)
    for group in opt.param_groups:
        group["lr"] = lr_now

    def set_lr_tensor(value):                   # a 0-d device tensor or a float
        if torch.is_tensor(value):
            lr_now.copy_(value)
        else:
            lr_now.fill_(value)
    return opt, set_lr_tensor


def _without_host_sync(step: Callable[[], None]) -> None:
    """Run ``step`` with PyTorch's sync debug mode set to "error": a step that waits for the
    host (``.item()``, ``nonzero``, data-dependent shapes) cannot be captured, and this says so
    with a RuntimeError before any capture starts."""
    previous = torch.cuda.get_sync_debug_mode()
    torch.cuda.set_sync_debug_mode("error")
    try:
        step()
    finally:
        torch.cuda.set_sync_debug_mode(previous)


class CaptureError(RuntimeError):
    """The step cannot be captured (it synchronises with the host, or capture itself failed);
    it can still run eagerly."""


def warn_uncapturable(name: str, exc: CaptureError) -> None:
    """One line: ``name``'s training step cannot be captured (and why); it trains without graphs."""
    warn(f"{name}: its training step cannot be captured in a CUDA graph "
         f"({str(exc).splitlines()[0][:120]}); training it without graphs")


def capture_enabled(device: torch.device, requested: bool | None = None) -> bool:
    """Whether training steps on ``device`` are captured: ``requested`` (default: unless
    MADBENCH_CUDA_GRAPHS=0), and only ever on CUDA."""
    if requested is None:
        requested = os.environ.get("MADBENCH_CUDA_GRAPHS", "1") != "0"
    return device.type == "cuda" and requested


def capture_step(step: Callable[[], None], state: Iterable[torch.Tensor],
                 stream: torch.cuda.Stream, pool=None,
                 optimizer: torch.optim.Optimizer | None = None,
                 warmup: int = 2) -> torch.cuda.CUDAGraph:
    """Capture ``step`` (forward, ``backward()``, optimiser update) on ``stream`` after
    ``warmup`` eager runs there, and undo the warm-up: the tensors in ``state`` (weights,
    optimiser and bookkeeping tensors the step updates) get back their values. A torch
    ``optimizer`` has its gradients cleared before each run and its own state restored too
    (state created by the warm-up is zeroed, which is AdamW's initial state). Gradients are
    left as the graph's static buffers, written afresh by each replay. The last warm-up run
    refuses host synchronisation, so an uncapturable step fails before capture: that and a
    failed capture raise :class:`CaptureError`; errors of the step itself (the first warm-up
    run) and running out of memory propagate as they are."""
    state = list(state)
    before = [t.detach().clone() for t in state]
    opt_state = [] if optimizer is None else [
        v for s in optimizer.state.values() for v in s.values() if torch.is_tensor(v)]
    old_state = {id(v): v.clone() for v in opt_state}

    def clear_grads():
        if optimizer is not None:
            optimizer.zero_grad(set_to_none=True)   # the graph allocates fresh gradients

    stream.wait_stream(torch.cuda.current_stream(stream.device))
    with torch.cuda.stream(stream):
        for _ in range(warmup - 1):
            clear_grads()
            step()                              # first calls: compilation, autotuning, set-up
        graph = torch.cuda.CUDAGraph()
        try:
            clear_grads()
            _without_host_sync(step)
            clear_grads()
            with torch.cuda.graph(graph, pool=pool, stream=stream):
                step()
        except torch.cuda.OutOfMemoryError:
            raise
        except RuntimeError as exc:
            raise CaptureError(str(exc)) from exc
        with torch.no_grad():
            for t, saved in zip(state, before):
                t.copy_(saved)
            for s in ([] if optimizer is None else optimizer.state.values()):
                for v in s.values():
                    if torch.is_tensor(v):
                        v.copy_(old_state[id(v)]) if id(v) in old_state else v.zero_()
    torch.cuda.current_stream(stream.device).wait_stream(stream)
    return graph
