"""State audit, an empirical check of the state a mixer declares: for a causal map, the outputs
after a split point depend on the inputs before it only through what crosses the split, so the
Jacobian d y[split:] / d x[:split] (at a random input) has rank at most that state. The rank is measured in float64 by SVD: singular values
above ``AUDIT_RTOL`` (1e-9) times the largest count. A mixer passes when the measured rank is
at most its declared ``state_size(split) + cache_size(split)``; a layer whose state has no exact
finite size (implicit long filters) names the convention it counts by in ``state_convention``,
and is reported against it, neither passed nor failed. The bound is informative only
when the inputs before the split and the outputs after it both number more than the declared
state (``prefix * dim`` and ``suffix * dim``), so both are chosen as the fewest whole positions
that exceed it (``jacobian_side``). The cost grows as the cube of that side, so the side is
capped at ``max_size`` (default 3,072: one to two minutes on two CPU cores, both measurements
below included); ``audit_architecture`` audits each layer at the model width when that fits,
else at the widest of dim/2, dim/4, ... that the layer's class accepts and that fits. Dynamic state (a kv-cache of every past token) is
never smaller than the Jacobian, so its audit is reported as not informative. The audit sees
only state that gradients flow through, so it also compares the Jacobian with central finite
differences along a random direction; a mixer that carries state past autograd (``detach``)
fails as unauditable. State passed through a piecewise-constant function (rounding) is beyond
both.

The rank at special weights can only be lower than at generic ones: a zero-initialized output
projection, gate or readout hides state that training uncovers (fla's RWKV7Attention zeroes its
``o_proj``: rank 0 as built). So the rank is also measured on a copy whose trainable parameters
are perturbed at random (seeded), and the measured state is the larger of the two ranks; a
perturbed copy that fails to run or whose Jacobian is not finite (a constraint the perturbation
broke, e.g. a parameter under a square root) is ignored, and the result says so.

Checks run in float64 on a copy of the module (float32 when the module cannot run in
float64, with looser tolerances) and in eval mode.
"""
from __future__ import annotations

import copy
import json
import math
from dataclasses import asdict, dataclass
from typing import Any

import scipy.linalg
import torch
from torch import nn

from ..architecture import LayerSpec, as_spec, build_mixer, mixer_entry
from ..errors import CheckFailed
from ._common import MixerLike, as_module, layer_label, one_line, prepared, randn

#: Singular values above ``rtol * largest`` count towards the measured state.
AUDIT_RTOL = {torch.float64: 1e-9, torch.float32: 1e-5}
#: Central-difference step and accepted relative disagreement with the Jacobian.
FINITE_DIFFERENCE_STEP = {torch.float64: 1e-5, torch.float32: 1e-2}
GRADIENT_RTOL = {torch.float64: 1e-4, torch.float32: 5e-2}
#: Largest Jacobian side (rows or columns) the audit builds by default.
AUDIT_MAX_SIZE = 3072
#: Weight perturbation of the second measurement: each trainable floating-point parameter gets
#: ``PERTURBATION_SCALE * std`` Gaussian noise, or ``PERTURBATION_FLOOR`` when it has one element
#: or no spread (a zero-initialized projection, a constant gain); buffers are left alone.
PERTURBATION_SCALE = 0.5
PERTURBATION_FLOOR = 0.02
#: Inputs per Jacobian chunk (batch x length x width elements), to bound memory.
_CHUNK_ELEMENTS = 2 ** 20


def declared_state(module: nn.Module, seq_len: int) -> tuple[int | None, int]:
    """``state_size(seq_len)`` (None when the mixer has none) and ``cache_size(seq_len)``."""
    state = getattr(module, "state_size", None)
    cache = getattr(module, "cache_size", None)
    return (int(state(seq_len)) if callable(state) else None,
            int(cache(seq_len)) if callable(cache) else 0)


@dataclass
class AuditResult:
    """Declared against measured state (Jacobian rank across a split point)."""

    declared_state: int | None  #: state_size(prefix)
    declared_cache: int  #: cache_size(prefix)
    measured_state: int  #: Jacobian rank: the larger of as built and perturbed
    ok: bool | None  #: measured <= declared (None: nothing declared)
    informative: bool  #: both Jacobian sides exceed the declared total
    saturated: bool  #: rank equals the smaller side: the true state may be larger
    dim: int
    prefix: int  #: positions before the split
    suffix: int  #: positions after it
    rtol: float
    dtype: str
    sigma_at_rank: float | None = None  #: the last singular value counted, relative
    sigma_after_rank: float | None = None  #: the first one not counted, relative
    gradient_ok: bool = True  #: the Jacobian agrees with finite differences
    gradient_error: float = 0.0  #: relative disagreement
    convention: str | None = None  #: the layer's ``state_convention``, when it counts by one
    measured_as_built: int | None = None  #: Jacobian rank at the weights as built
    #: True when the perturbed weights gave the larger rank, False when they did not, None when
    #: they could not be measured (``perturbed_failure`` says why)
    perturbed: bool | None = None
    perturbed_failure: str | None = None

    @property
    def declared_total(self) -> int | None:
        return None if self.declared_state is None else self.declared_state + self.declared_cache

    @property
    def message(self) -> str:
        where = f"at dim {self.dim}, split {self.prefix}+{self.suffix}"
        bound = "" if not self.saturated else " (saturated: a lower bound)"
        if self.perturbed:
            bound += f" (at perturbed weights; {self.measured_as_built} as built)"
        elif self.perturbed is None and self.perturbed_failure:
            bound += f" (as built only: perturbed weights {self.perturbed_failure})"
        if not self.gradient_ok:
            return (f"UNAUDITABLE: gradients disagree with finite differences (relative error "
                    f"{self.gradient_error:.1e}), so the Jacobian does not show the state that "
                    f"crosses the split (detached or non-differentiable state?) {where}")
        if self.declared_state is None:
            return f"no state_size declared; measured state {self.measured_state}{bound} {where}"
        if self.convention is not None:
            relation = ("exceeds" if self.measured_state > self.declared_total
                        else "is within")
            return (f"declared by convention, not checked: measured {self.measured_state}"
                    f"{bound} {relation} declared {self.declared_state} + cache "
                    f"{self.declared_cache} {where}; {self.convention}")
        verdict = "ok" if self.ok else "UNDER-DECLARED"
        note = "" if self.informative else " (bound not informative: Jacobian too small)"
        return (f"{verdict}: measured {self.measured_state}{bound} vs declared "
                f"{self.declared_state} + cache {self.declared_cache} {where}{note}")

    def to_dict(self) -> dict:
        return {**asdict(self), "declared_total": self.declared_total, "message": self.message}


def jacobian_side(declared_total: int, dim: int) -> int:
    """Inputs before (and outputs after) the split that make the bound informative: the
    fewest whole positions of ``dim`` elements that exceed the declared state."""
    return (declared_total // dim + 1) * dim


def _split_lengths(declared_total: int | None, dynamic: bool, dim: int,
                   max_size: int) -> tuple[int, int]:
    """Positions before and after the split: ``jacobian_side`` for a fixed declared state,
    8 positions for dynamic or undeclared state; at most ``max_size // dim``."""
    cap = max(1, max_size // dim)
    if declared_total is None or dynamic:
        n = min(8, cap)
    else:
        n = min(jacobian_side(declared_total, dim) // dim, cap)
    return n, n


def jacobian_across_split(module: nn.Module, x: torch.Tensor, prefix: int) -> torch.Tensor:
    """d y[:, prefix:] / d x[:, :prefix] for one sequence ``x`` of shape (1, L, dim), as a
    (suffix*dim, prefix*dim) matrix. Rows are computed a chunk at a time by running copies of
    the sequence as a batch (valid for batch-independent modules): copy b back-propagates
    output row b only."""
    _, length, dim = x.shape
    rows = (length - prefix) * dim
    jac = torch.empty(rows, prefix * dim, dtype=x.dtype)
    chunk = max(1, min(256, _CHUNK_ELEMENTS // (length * dim)))
    for start in range(0, rows, chunk):
        b = min(chunk, rows - start)
        before = x[:, :prefix].expand(b, -1, -1).clone().requires_grad_(True)
        after = x[:, prefix:].expand(b, -1, -1)
        y = module(torch.cat([before, after], dim=1))[:, prefix:].reshape(b, -1)
        picked = y[torch.arange(b), torch.arange(start, start + b)]
        (grad,) = torch.autograd.grad(picked.sum(), before)
        jac[start:start + b] = grad.reshape(b, -1)
    return jac


def finite_difference_error(module: nn.Module, x: torch.Tensor, prefix: int,
                            jac: torch.Tensor, seed: int = 0) -> float:
    """Relative disagreement between ``jac @ v`` and the central difference of the outputs
    after the split along a random direction ``v`` of the inputs before it. A mixer that hides
    state from autograd (``detach``) shows up here, not in the rank."""
    v = randn((1, prefix, x.shape[2]), x.dtype, seed + 7)
    step = FINITE_DIFFERENCE_STEP[x.dtype]
    shift = torch.cat([v, torch.zeros_like(x[:, prefix:])], dim=1) * step
    with torch.no_grad():
        forward = module(x + shift)[:, prefix:].reshape(-1)
        backward = module(x - shift)[:, prefix:].reshape(-1)
    numeric = (forward - backward) / (2 * step)
    analytic = jac @ v.reshape(-1)
    scale = max(float(numeric.abs().max()), float(analytic.abs().max()), 1e-12)
    return float((numeric - analytic).abs().max()) / scale


def perturbed_copy(model: nn.Module, seed: int = 0) -> nn.Module:
    """A copy of ``model`` whose trainable floating-point parameters carry seeded Gaussian noise
    (``PERTURBATION_SCALE`` times their std, else ``PERTURBATION_FLOOR``); buffers and frozen
    parameters are kept, and so are tied parameters' ties."""
    other = copy.deepcopy(model)
    generator = torch.Generator().manual_seed(seed + 11)
    with torch.no_grad():
        for p in other.parameters():
            if not p.requires_grad or not (p.is_floating_point() or p.is_complex()) \
                    or p.numel() == 0:
                continue
            spread = float(p.std()) if p.numel() > 1 else 0.0
            scale = (PERTURBATION_SCALE * spread if spread > 0 and math.isfinite(spread)
                     else PERTURBATION_FLOOR)
            noise = torch.randn(p.shape, generator=generator, dtype=p.dtype)
            p.add_(noise.to(p.device), alpha=scale)
    return other


def _rank(jac: torch.Tensor, rtol: float) -> tuple[int, torch.Tensor, float]:
    """The number of singular values above ``rtol`` times the largest, the singular values and
    the largest."""
    sigma = torch.from_numpy(scipy.linalg.svdvals(jac.numpy(), overwrite_a=True,
                                                  check_finite=False))
    top = float(sigma[0]) if len(sigma) else 0.0
    return (int((sigma > rtol * top).sum()) if top > 0 else 0), sigma, top


def _perturbed_rank(model: nn.Module, x: torch.Tensor, prefix: int, rtol: float,
                    seed: int) -> tuple[int, torch.Tensor, float] | str:
    """The rank at perturbed weights (see ``_rank``), or why it could not be measured."""
    try:
        with torch.enable_grad():
            jac = jacobian_across_split(perturbed_copy(model, seed), x, prefix)
    except Exception as exc:  # noqa: BLE001 - e.g. a constraint the perturbation broke
        return f"failed ({one_line(exc)[:200]})"
    if not bool(torch.isfinite(jac).all()):
        return "gave non-finite outputs"
    return _rank(jac, rtol)


def audit_state(mixer: MixerLike, dim: int, mixer_kwargs: dict | None = None,
                prefix: int | None = None, suffix: int | None = None,
                rtol: float | None = None, max_size: int = AUDIT_MAX_SIZE,
                seed: int = 0) -> AuditResult:
    """Measure a mixer's state as the rank of the Jacobian of its outputs after a split point
    with respect to its inputs before it (see the module docstring), and compare it with the
    declared ``state_size(prefix) + cache_size(prefix)``. ``mixer`` is a module of width
    ``dim``, a class or a factory built as ``mixer(dim, **mixer_kwargs)``. The rank is the
    larger of those at the weights as built and at perturbed ones (``perturbed_copy``); the
    finite-difference check runs on the weights as built."""
    module = as_module(mixer, dim, mixer_kwargs)
    first_long = declared_state(module, 8192)[0]
    dynamic = first_long is not None and first_long != declared_state(module, 16384)[0]
    auto_prefix, auto_suffix = _split_lengths(
        None if first_long is None else first_long + declared_state(module, 8192)[1],
        dynamic, dim, max_size)
    prefix = auto_prefix if prefix is None else prefix
    suffix = auto_suffix if suffix is None else suffix
    model, dtype = prepared(module, dim, prefix + suffix)
    rtol = AUDIT_RTOL[dtype] if rtol is None else rtol
    x = randn((1, prefix + suffix, dim), dtype, seed)
    with torch.enable_grad():
        jac = jacobian_across_split(model, x, prefix)
    gradient_error = finite_difference_error(model, x, prefix, jac, seed)
    gradient_ok = gradient_error <= GRADIENT_RTOL[dtype]
    as_built = measured, sigma, top = _rank(jac, rtol)
    del jac
    side = min(prefix, suffix) * dim
    # skipped where it cannot change the verdict: a saturated rank cannot grow, and a layer
    # whose gradients disagree with finite differences is unauditable either way
    skip = measured == side or not gradient_ok
    other = as_built if skip else _perturbed_rank(model, x, prefix, rtol, seed)
    failure = other if isinstance(other, str) else None
    perturbed = None if failure else other[0] > as_built[0]
    if perturbed:
        measured, sigma, top = other
    state, cache = declared_state(module, prefix)
    total = None if state is None else state + cache
    convention = getattr(module, "state_convention", None)
    return AuditResult(
        declared_state=state, declared_cache=cache, measured_state=measured,
        ok=(False if not gradient_ok else None if total is None or convention
            else measured <= total),
        informative=total is not None and min(prefix, suffix) * dim > total,
        saturated=measured == side, dim=dim, prefix=prefix,
        suffix=suffix, rtol=rtol, dtype=str(dtype).replace("torch.", ""),
        sigma_at_rank=float(sigma[measured - 1]) / top if measured else None,
        sigma_after_rank=float(sigma[measured]) / top if 0 < measured < len(sigma) else None,
        gradient_ok=gradient_ok, gradient_error=gradient_error,
        convention=None if convention is None else str(convention),
        measured_as_built=as_built[0], perturbed=perturbed, perturbed_failure=failure)


def _audit_width(layer: LayerSpec, dim: int, max_size: int) -> int:
    """The width to audit a layer at: ``dim`` when the informative Jacobian (``jacobian_side``)
    fits in ``max_size``, else the widest of dim/2, dim/4, ... (at least 8) at which the layer
    builds and it fits; when none fits, the width needing the smallest Jacobian. Dynamic or
    undeclared state is audited at ``dim``: narrowing does not make that bound informative."""
    width, best, best_side = dim, dim, None
    while width >= 8:
        try:
            module = build_mixer(layer, width, 2 * max_size)
        except Exception:  # noqa: BLE001 - the class does not accept this width
            break
        state, cache = declared_state(module, 8192)
        if state is None or state != declared_state(module, 16384)[0]:
            break
        side = jacobian_side(state + cache, width)
        if side <= max_size:
            return width
        if best_side is None or side < best_side:
            best, best_side = width, side
        width //= 2
    return best


def audit_architecture(spec: Any, max_size: int = AUDIT_MAX_SIZE,
                       audit_dim: int | None = None) -> dict:
    """Audit every distinct sequence-mixing layer (same mixer and kwargs audited once), at the
    architecture's width or, when that is too costly, the widest affordable one (or at
    ``audit_dim``). Returns ``{"declared_state", "measured_state", "state_ok", "layers"}``:
    the totals sum the audited configurations over all sequence layers; ``state_ok`` is False
    when some layer's measured state exceeds its declared state."""
    spec = as_spec(spec)
    cache: dict[str, AuditResult] = {}
    layers = []
    for index, layer in enumerate(spec.layers):
        if mixer_entry(layer.mixer).metadata.get("kind", "sequence") != "sequence":
            continue
        key = json.dumps([layer.mixer, dict(layer.kwargs)], sort_keys=True, default=str)
        if key not in cache:
            width = audit_dim or _audit_width(layer, spec.dim, max_size)
            longest = 2 * max_size  # no split is longer, at any width (see _split_lengths)
            try:
                cache[key] = audit_state(lambda d, _l=layer: build_mixer(_l, d, longest), width,
                                         max_size=max_size)
            except Exception as exc:  # noqa: BLE001 - e.g. no backward pass: refused in one line
                raise CheckFailed(f"{layer_label(index, layer)} cannot be audited at width "
                                  f"{width}: {one_line(exc)}") from None
        result = cache[key]
        layers.append({"index": index, "mixer": layer.mixer, "label": layer_label(index, layer),
                       **result.to_dict()})
    declared = [l["declared_total"] for l in layers]
    return {
        "declared_state": None if None in declared else sum(declared),
        "measured_state": sum(l["measured_state"] for l in layers),
        "state_ok": all(l["ok"] is not False for l in layers),
        "layers": layers,
    }


def state_failures(audit: dict) -> list[str]:
    """One line per layer whose measured state exceeds its declared state (or whose state the
    audit cannot see)."""
    return [f"{l['label']} " + ("under-declares its state: " if l["gradient_ok"] else
                                "cannot be audited: ") + l["message"]
            for l in audit["layers"] if l["ok"] is False]
