"""What every check shares: a module made from a mixer, a float64 eval-mode copy of it (float32
when it cannot run in float64), seeded random inputs, and one-line labels of layers and
errors."""
from __future__ import annotations

import copy
from typing import Any

import torch
from torch import nn

from ..architecture import LayerSpec, mixer_entry

MixerLike = Any  # an nn.Module, a mixer class, or a callable dim -> module


def as_module(mixer: MixerLike, dim: int, mixer_kwargs: dict | None = None) -> nn.Module:
    """A module from a module (returned as is), a class or a factory ``f(dim, **kwargs)``."""
    if isinstance(mixer, nn.Module):
        return mixer
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return mixer(dim, **(mixer_kwargs or {}))


def prepared(module: nn.Module, dim: int, seq_len: int) -> tuple[nn.Module, torch.dtype]:
    """A float64 eval-mode copy of ``module``, or float32 when float64 fails."""
    for dtype in (torch.float64, torch.float32):
        candidate = copy.deepcopy(module).to(dtype).eval()
        try:
            with torch.no_grad():
                candidate(torch.zeros(1, seq_len, dim, dtype=dtype))
            return candidate, dtype
        except Exception:  # noqa: BLE001 - retried in float32, where errors surface
            if dtype == torch.float32:
                raise
    raise AssertionError("unreachable")


def randn(shape, dtype, seed) -> torch.Tensor:
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed), dtype=dtype)


def default_positions(seq_len: int) -> list[int]:
    """Split points t for the causality check: the start, quarters, and the end."""
    candidates = {0, 1, seq_len // 4, seq_len // 2, (3 * seq_len) // 4, seq_len - 2}
    return sorted(t for t in candidates if 0 <= t <= seq_len - 2)


def one_line(exc: Exception) -> str:
    text = f"{type(exc).__name__}: {exc}".strip().splitlines()
    return text[0] if text else type(exc).__name__


def layer_label(index: int, layer: LayerSpec) -> str:
    entry = mixer_entry(layer.mixer)
    cls = entry.obj
    origin = f"{cls.__module__}:{cls.__qualname__}"
    return f"layer {index} ({layer.mixer}" + ("" if origin == layer.mixer else
                                            f", {origin}") + ")"
