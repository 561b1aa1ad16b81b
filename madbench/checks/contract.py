"""The shape contract of a mixer: output of the input's shape and dtype, finite, and each batch
element independent of the others."""
from __future__ import annotations

import copy
from dataclasses import asdict, dataclass, field

import torch

from ._common import MixerLike, as_module, prepared, randn
from .causality import CAUSALITY_ATOL


@dataclass
class ContractResult:
    """Shape and dtype preserved (float32 input), outputs finite, batch elements independent."""

    shape_ok: bool
    dtype_ok: bool
    finite: bool
    batch_independent: bool
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.shape_ok and self.dtype_ok and self.finite and self.batch_independent

    @property
    def message(self) -> str:
        return "contract ok" if self.ok else "; ".join(self.problems)

    def to_dict(self) -> dict:
        return {**asdict(self), "ok": self.ok, "message": self.message}


def check_contract(module: MixerLike, dim: int, seq_len: int = 32, batch: int = 3,
                   seed: int = 0, mixer_kwargs: dict | None = None) -> ContractResult:
    """Output shape equals input shape and dtype is kept (float32), outputs are finite, and
    each batch element's output does not depend on the other elements (compared with running
    it alone, and with the others redrawn)."""
    module = as_module(module, dim, mixer_kwargs)
    problems: list[str] = []
    x = randn((batch, seq_len, dim), torch.float32, seed)
    with torch.no_grad():
        y = copy.deepcopy(module).float().eval()(x)
    if not isinstance(y, torch.Tensor):
        kind = type(y).__name__
        hint = (f"madbench needs the output tensor alone: wrap the layer so that forward returns "
                f"it, e.g. the first element of the {kind}" if isinstance(y, (tuple, list))
                else "forward must return the output tensor, of the input's shape")
        return ContractResult(False, False, False, False, [
            f"forward returns {'None' if y is None else 'a ' + kind}, not a tensor ({hint})"])
    shape_ok = tuple(y.shape) == tuple(x.shape)
    dtype_ok = y.dtype == x.dtype
    finite = bool(torch.isfinite(y).all()) if shape_ok else False
    if not shape_ok:
        problems.append(f"output shape {tuple(y.shape)} != input shape {tuple(x.shape)}")
    if not dtype_ok:
        problems.append(f"output dtype {y.dtype} != input dtype {x.dtype}")
    if shape_ok and not finite:
        problems.append("outputs contain NaN or inf")
    batch_independent = False
    if shape_ok:
        model, dtype = prepared(module, dim, seq_len)
        x64 = x.to(dtype)
        with torch.no_grad():
            full = model(x64)
            alone = model(x64[:1])
            others = x64.clone()
            others[1:] = randn(others[1:].shape, dtype, seed + 1)
            redrawn = model(others)
        tol = CAUSALITY_ATOL[dtype] * max(1.0, float(full.abs().max()))
        change = max(float((alone[0] - full[0]).abs().max()),
                     float((redrawn[0] - full[0]).abs().max()))
        batch_independent = change <= tol
        if not batch_independent:
            problems.append(f"batch element 0 changes ({change:.2e}) with the other elements")
    return ContractResult(shape_ok, dtype_ok, finite, batch_independent, problems)
