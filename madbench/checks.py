"""Checks no mixer can talk its way past: causality, the contract (shape, dtype, finite
outputs, batch independence), and an empirical audit of the state a mixer declares.

Causality: perturb every input after position t and require the outputs at positions 0..t to
stay the same, for several t, in float64 and again in float32; the first output position that
moves is reported.

State audit: for a causal map, the outputs after a split point depend on the inputs before it
only through what crosses the split, so the Jacobian d y[split:] / d x[:split] (at a random
input) has rank at most that state. The rank is measured in float64 by SVD: singular values
above ``AUDIT_RTOL`` (1e-9) times the largest count. A mixer passes when the measured rank is
at most its declared ``state_size(split) + cache_size(split)``; a layer whose state has no exact
finite size (implicit long filters) names the convention it counts by in ``state_convention``,
and is reported against it, neither passed nor failed. The bound is informative only
when the inputs before the split and the outputs after it both number more than the declared
state (``prefix * dim`` and ``suffix * dim``), so both are chosen as the fewest whole positions
that exceed it (``jacobian_side``). The cost grows as the cube of that side, so the side is
capped at ``max_size`` (default 3,072: about a minute on two CPU cores); ``audit_architecture``
audits each layer at the model width when that fits, else at the widest of dim/2, dim/4, ...
that the layer's class accepts and that fits. Dynamic state (a kv-cache of every past token) is
never smaller than the Jacobian, so its audit is reported as not informative. The audit sees
only state that gradients flow through, so it also compares the Jacobian with central finite
differences along a random direction; a mixer that carries state past autograd (``detach``)
fails as unauditable. State passed through a piecewise-constant function (rounding) is beyond
both.

Checks run in float64 on a copy of the module (float32 when the module cannot run in
float64, with looser tolerances) and in eval mode.
"""
from __future__ import annotations

import copy
import json
from dataclasses import asdict, dataclass, field
from typing import Any, Callable

import scipy.linalg
import torch
from torch import nn

from .accounting import as_spec, build_language_model
from .architecture import LayerSpec, build_mixer, mixer_entry
from .errors import CheckFailed

#: Outputs count as changed above ``atol * max(1, max|y|)``; float64 (float32 fallback).
CAUSALITY_ATOL = {torch.float64: 1e-9, torch.float32: 1e-4}
#: Singular values above ``rtol * largest`` count towards the measured state.
AUDIT_RTOL = {torch.float64: 1e-9, torch.float32: 1e-5}
#: Central-difference step and accepted relative disagreement with the Jacobian.
FINITE_DIFFERENCE_STEP = {torch.float64: 1e-5, torch.float32: 1e-2}
GRADIENT_RTOL = {torch.float64: 1e-4, torch.float32: 5e-2}
#: Largest Jacobian side (rows or columns) the audit builds by default.
AUDIT_MAX_SIZE = 3072
#: Inputs per Jacobian chunk (batch x length x width elements), to bound memory.
_CHUNK_ELEMENTS = 2 ** 20

MixerLike = Any  # an nn.Module, a mixer class, or a callable dim -> module


# -- preparing a module ------------------------------------------------------------------
def as_module(mixer: MixerLike, dim: int, mixer_kwargs: dict | None = None) -> nn.Module:
    """A module from a module (returned as is), a class or a factory ``f(dim, **kwargs)``."""
    if isinstance(mixer, nn.Module):
        return mixer
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return mixer(dim, **(mixer_kwargs or {}))


def _prepared(module: nn.Module, dim: int, seq_len: int) -> tuple[nn.Module, torch.dtype]:
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


def _randn(shape, dtype, seed) -> torch.Tensor:
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed), dtype=dtype)


def default_positions(seq_len: int) -> list[int]:
    """Split points t for the causality check: the start, quarters, and the end."""
    candidates = {0, 1, seq_len // 4, seq_len // 2, (3 * seq_len) // 4, seq_len - 2}
    return sorted(t for t in candidates if 0 <= t <= seq_len - 2)


# -- causality ---------------------------------------------------------------------------
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
    first_model, first_dtype = _prepared(module, dim, seq_len)
    runs = [(first_model, first_dtype)]
    if first_dtype != torch.float32:
        runs.append((copy.deepcopy(module).float().eval(), torch.float32))
    results = []
    for model, dtype in runs:
        x = _randn((batch, seq_len, dim), dtype, seed)

        def perturb(inputs: torch.Tensor, t: int, _dtype=dtype) -> torch.Tensor:
            out = inputs.clone()
            out[:, t + 1:] = _randn(out[:, t + 1:].shape, _dtype, seed + 1 + t)
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


# -- the shape contract ------------------------------------------------------------------
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
    x = _randn((batch, seq_len, dim), torch.float32, seed)
    with torch.no_grad():
        y = copy.deepcopy(module).float().eval()(x)
    if not isinstance(y, torch.Tensor):
        kind = type(y).__name__
        return ContractResult(False, False, False, False, [
            f"forward returns a {kind}, not a tensor (madbench needs the output tensor alone: "
            f"wrap the layer so that forward returns it, e.g. the first element of the {kind})"])
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
        model, dtype = _prepared(module, dim, seq_len)
        x64 = x.to(dtype)
        with torch.no_grad():
            full = model(x64)
            alone = model(x64[:1])
            others = x64.clone()
            others[1:] = _randn(others[1:].shape, dtype, seed + 1)
            redrawn = model(others)
        tol = CAUSALITY_ATOL[dtype] * max(1.0, float(full.abs().max()))
        change = max(float((alone[0] - full[0]).abs().max()),
                     float((redrawn[0] - full[0]).abs().max()))
        batch_independent = change <= tol
        if not batch_independent:
            problems.append(f"batch element 0 changes ({change:.2e}) with the other elements")
    return ContractResult(shape_ok, dtype_ok, finite, batch_independent, problems)


# -- state audit -------------------------------------------------------------------------
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
    measured_state: int  #: Jacobian rank
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

    @property
    def declared_total(self) -> int | None:
        return None if self.declared_state is None else self.declared_state + self.declared_cache

    @property
    def message(self) -> str:
        where = f"at dim {self.dim}, split {self.prefix}+{self.suffix}"
        bound = "" if not self.saturated else " (saturated: a lower bound)"
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
    v = _randn((1, prefix, x.shape[2]), x.dtype, seed + 7)
    step = FINITE_DIFFERENCE_STEP[x.dtype]
    shift = torch.cat([v, torch.zeros_like(x[:, prefix:])], dim=1) * step
    with torch.no_grad():
        forward = module(x + shift)[:, prefix:].reshape(-1)
        backward = module(x - shift)[:, prefix:].reshape(-1)
    numeric = (forward - backward) / (2 * step)
    analytic = jac @ v.reshape(-1)
    scale = max(float(numeric.abs().max()), float(analytic.abs().max()), 1e-12)
    return float((numeric - analytic).abs().max()) / scale


def audit_state(mixer: MixerLike, dim: int, mixer_kwargs: dict | None = None,
                prefix: int | None = None, suffix: int | None = None,
                rtol: float | None = None, max_size: int = AUDIT_MAX_SIZE,
                seed: int = 0) -> AuditResult:
    """Measure a mixer's state as the rank of the Jacobian of its outputs after a split point
    with respect to its inputs before it (see the module docstring), and compare it with the
    declared ``state_size(prefix) + cache_size(prefix)``. ``mixer`` is a module of width
    ``dim``, a class or a factory built as ``mixer(dim, **mixer_kwargs)``."""
    module = as_module(mixer, dim, mixer_kwargs)
    first_long = declared_state(module, 8192)[0]
    dynamic = first_long is not None and first_long != declared_state(module, 16384)[0]
    auto_prefix, auto_suffix = _split_lengths(
        None if first_long is None else first_long + declared_state(module, 8192)[1],
        dynamic, dim, max_size)
    prefix = auto_prefix if prefix is None else prefix
    suffix = auto_suffix if suffix is None else suffix
    model, dtype = _prepared(module, dim, prefix + suffix)
    rtol = AUDIT_RTOL[dtype] if rtol is None else rtol
    x = _randn((1, prefix + suffix, dim), dtype, seed)
    with torch.enable_grad():
        jac = jacobian_across_split(model, x, prefix)
    gradient_error = finite_difference_error(model, x, prefix, jac, seed)
    gradient_ok = gradient_error <= GRADIENT_RTOL[dtype]
    sigma = torch.from_numpy(scipy.linalg.svdvals(jac.numpy(), overwrite_a=True,
                                                  check_finite=False))
    top = float(sigma[0]) if len(sigma) else 0.0
    measured = int((sigma > rtol * top).sum()) if top > 0 else 0
    state, cache = declared_state(module, prefix)
    total = None if state is None else state + cache
    convention = getattr(module, "state_convention", None)
    return AuditResult(
        declared_state=state, declared_cache=cache, measured_state=measured,
        ok=(False if not gradient_ok else None if total is None or convention
            else measured <= total),
        informative=total is not None and min(prefix, suffix) * dim > total,
        saturated=measured == min(prefix, suffix) * dim, dim=dim, prefix=prefix,
        suffix=suffix, rtol=rtol, dtype=str(dtype).replace("torch.", ""),
        sigma_at_rank=float(sigma[measured - 1]) / top if measured else None,
        sigma_after_rank=float(sigma[measured]) / top if 0 < measured < len(sigma) else None,
        gradient_ok=gradient_ok, gradient_error=gradient_error,
        convention=None if convention is None else str(convention))


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


# -- whole architectures -----------------------------------------------------------------
def _one_line(exc: Exception) -> str:
    text = f"{type(exc).__name__}: {exc}".strip().splitlines()
    return text[0] if text else type(exc).__name__


def _layer_label(index: int, layer: LayerSpec) -> str:
    entry = mixer_entry(layer.mixer)
    cls = entry.obj
    origin = f"{cls.__module__}:{cls.__qualname__}"
    return f"layer {index} ({layer.mixer}" + ("" if origin == layer.mixer else
                                            f", {origin}") + ")"


def guard_architecture(spec: Any, seq_len: int = 32, vocab_size: int = 16,
                       raise_on_failure: bool = True) -> dict:
    """Run the causality check on every layer (channel mixers too: position-wise implies
    causal) and on the whole language model, plus the shape contract on every layer.

    Returns ``{"causal", "contract_ok", "layers": [...], "model": {...}, "failures": [...]}``;
    raises CheckFailed with the first failure (layer and first leaking position) unless
    ``raise_on_failure`` is False.
    """
    spec = as_spec(spec)
    model = build_language_model(spec, vocab_size, seq_len)
    layers, failures = [], []
    for index, (layer, block) in enumerate(zip(spec.layers, model.encoder.blocks)):
        label = _layer_label(index, layer)
        try:
            contract = check_contract(block.mixer, spec.dim, seq_len)
            if not contract.shape_ok:  # nothing else can be checked on a wrong shape
                raise CheckFailed(f"{label} breaks the mixer contract: {contract.message}")
            causality = check_causality(block.mixer, spec.dim, seq_len)
        except CheckFailed:
            raise
        except Exception as exc:  # noqa: BLE001 - a mixer that crashes is refused, in one line
            raise CheckFailed(f"{label} fails to run on (2, {seq_len}, {spec.dim}) inputs: "
                              f"{_one_line(exc)}") from None
        layers.append({"index": index, "mixer": layer.mixer,
                       "kind": mixer_entry(layer.mixer).metadata.get("kind", "sequence"),
                       "causality": causality.to_dict(), "contract": contract.to_dict()})
        if not causality.causal:
            failures.append(f"{label} is {causality.message}")
        if not contract.ok:
            failures.append(f"{label} breaks the mixer contract: {contract.message}")
    try:
        whole = check_model_causality(build_language_model(spec, vocab_size, seq_len).double(),
                                      vocab_size, seq_len)
    except Exception:  # noqa: BLE001 - a layer that cannot run in float64
        whole = check_model_causality(model, vocab_size, seq_len)
    if not whole.causal and not failures:
        failures.append(f"the model ({spec.name}) is {whole.message}")
    report = {"causal": all(l["causality"]["causal"] for l in layers) and whole.causal,
              "contract_ok": all(l["contract"]["ok"] for l in layers),
              "layers": layers, "model": whole.to_dict(), "failures": failures}
    if failures and raise_on_failure:
        raise CheckFailed(failures[0])
    return report


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
                raise CheckFailed(f"{_layer_label(index, layer)} cannot be audited at width "
                                  f"{width}: {_one_line(exc)}") from None
        result = cache[key]
        layers.append({"index": index, "mixer": layer.mixer, "label": _layer_label(index, layer),
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
