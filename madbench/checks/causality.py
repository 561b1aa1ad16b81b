"""Causality: perturb every input after position t and require the outputs at positions 0..t to
stay the same, for several t, in float64 and again in float32; the first output position that
moves is reported. Checks run on a float64 eval-mode copy of the module (float32 when it cannot
run in float64, with looser tolerances)."""
from __future__ import annotations

import copy
from dataclasses import asdict, dataclass
from typing import Callable

import torch
from torch import nn

from ._common import MixerLike, as_module, default_positions, prepared, randn

#: Outputs count as changed above ``atol * max(1, max|y|)``; float64 (float32 fallback).
CAUSALITY_ATOL = {torch.float64: 1e-9, torch.float32: 1e-4}


@dataclass
class CausalityResult:
    """Outcome of perturbing the inputs after each position t in ``positions``."""

    causal: bool
    first_leak: int | None  #: smallest output position that changed
    perturbed_after: int | None  #: the t whose perturbation moved it
    max_change: float  #: largest change at any output position <= t
    tolerance: float
    positions: list[int]
    seq_len: int
    dtype: str

    @property
    def message(self) -> str:
        if self.causal:
            return (f"causal: outputs up to t unchanged when inputs after t change, "
                    f"t in {self.positions}")
        return (f"not causal: output at position {self.first_leak} changed when only inputs "
                f"after position {self.perturbed_after} were perturbed "
                f"(change {self.max_change:.2e} > tolerance {self.tolerance:.1e})")

    def to_dict(self) -> dict:
        return {**asdict(self), "message": self.message}


def _causality(run: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor,
               perturb: Callable[[torch.Tensor, int], torch.Tensor], positions: list[int],
               atol: float, dtype: torch.dtype) -> CausalityResult:
    with torch.no_grad():
        y = run(x)
        tolerance = atol * max(1.0, float(y.abs().max()))
        first_leak, leak_after, worst = None, None, 0.0
        for t in positions:
            y2 = run(perturb(x, t))
            change = (y2[:, :t + 1] - y[:, :t + 1]).abs().flatten(2).amax(dim=(0, 2))
            worst = max(worst, float(change.max()))
            moved = torch.nonzero(change > tolerance).flatten()
            if len(moved) and (first_leak is None or int(moved[0]) < first_leak):
                first_leak, leak_after = int(moved[0]), t
    return CausalityResult(first_leak is None, first_leak, leak_after, worst, tolerance,
                           positions, x.shape[1], str(dtype).replace("torch.", ""))


def check_causality(module: MixerLike, dim: int, seq_len: int = 32,
                    positions: list[int] | None = None, atol: float | None = None,
                    batch: int = 2, seed: int = 0,
                    mixer_kwargs: dict | None = None) -> CausalityResult:
    """Perturb every input after t (fresh Gaussian noise) and require outputs 0..t unchanged
    within ``atol * max(1, max|y|)``, for each t in ``positions`` (default: start, quarters,
    end). Reports the first output position that moved and the t that moved it.

    Runs in float64 (tight tolerance) and again in float32, the dtype models train in (a mixer
    must not behave differently there); the first failing result is returned, else the
    float64 one (float32 alone when the module cannot run in float64)."""
    module = as_module(module, dim, mixer_kwargs)
    positions = default_positions(seq_len) if positions is None else sorted(positions)
    first_model, first_dtype = prepared(module, dim, seq_len)
    runs = [(first_model, first_dtype)]
    if first_dtype != torch.float32:
        runs.append((copy.deepcopy(module).float().eval(), torch.float32))
    results = []
    for model, dtype in runs:
        x = randn((batch, seq_len, dim), dtype, seed)

        def perturb(inputs: torch.Tensor, t: int, _dtype=dtype) -> torch.Tensor:
            out = inputs.clone()
            out[:, t + 1:] = randn(out[:, t + 1:].shape, _dtype, seed + 1 + t)
            return out

        result = _causality(model, x, perturb, positions,
                            CAUSALITY_ATOL[dtype] if atol is None else atol, dtype)
        if not result.causal:
            return result
        results.append(result)
    return results[0]


def check_model_causality(model: nn.Module, vocab_size: int, seq_len: int = 32,
                          positions: list[int] | None = None, atol: float | None = None,
                          batch: int = 2, seed: int = 0) -> CausalityResult:
    """The same check on a whole language model: tokens after t are redrawn, logits up to t
    must stay the same."""
    dtype = next(model.parameters()).dtype
    positions = default_positions(seq_len) if positions is None else sorted(positions)
    gen = torch.Generator().manual_seed(seed)
    tokens = torch.randint(0, vocab_size, (batch, seq_len), generator=gen)

    def perturb(inputs: torch.Tensor, t: int) -> torch.Tensor:
        out = inputs.clone()
        shift = torch.randint(1, vocab_size, out[:, t + 1:].shape, generator=gen)
        out[:, t + 1:] = (out[:, t + 1:] + shift) % vocab_size  # every later token differs
        return out

    return _causality(model.eval(), tokens, perturb, positions,
                      CAUSALITY_ATOL.get(dtype, 1e-3) if atol is None else atol, dtype)
