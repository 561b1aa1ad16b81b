"""Scaling-law fits: Approach 2 (IsoFLOP parabolas) and Approach 3 (parametric loss), each with
bootstrap intervals.

- **Approach 2** (Hoffmann et al. 2022; the MAD paper's Fig. E.1): per FLOP budget C, fit
  ``loss = p0 + p1 x + p2 x^2`` with ``x = ln N``; the vertex gives N*(C), D*(C) (from the
  group's own ln D against ln N line, exact when C is proportional to N D) and L*(C). Then
  ``N* = k_N C^a``, ``D* = k_D C^b`` and ``L* = k_L C^g`` by least squares in log-log space, over
  the groups that are convex (p2 > 0) with the vertex inside the sampled sizes. The vertex is
  biased even on noise-free data (grid width, off-centre grids, alpha != beta; Czech et al.):
  report Approach 3 beside it.
- **Approach 3**: ``L(N, D) = E + A / N^alpha + B / D^beta``, fitted as in Besiroglu et al.'s
  replication: parameters ``(a, b, e, alpha, beta)`` with ``A = e^a, B = e^b, E = e^e``, predicted
  log loss ``LSE(a - alpha ln N, b - beta ln D, e)``, Huber loss (delta 1e-3) on the residual
  against ln L, the terms **summed** (not averaged: averaging stops L-BFGS early), L-BFGS-B with
  tight tolerances from the best points of a grid of starts (Hoffmann's grid). Under C ~ N D the
  optimum allocates ``N* ~ C^(beta/(alpha+beta))`` and ``D* ~ C^(alpha/(alpha+beta))``.

State against perplexity (the paper's Finding 8, and the all-runs state frontier) is in
:mod:`madbench.scaling.state`.

Bootstrap intervals are percentile intervals (2.5%, 97.5%), each widened to its full-data
estimate where it misses it (``percentile_interval``, here and in :mod:`.state`): Approach 2
resamples runs within each budget group (a loss band only for a group with a vertex);
Approach 3 resamples runs.
"""
from __future__ import annotations

import contextlib
import ctypes
import functools
import glob
import itertools
import math
import os
from dataclasses import dataclass, field

import numpy as np
from scipy.optimize import minimize
from scipy.special import logsumexp

from ..errors import MadbenchError

HUBER_DELTA = 1e-3
#: Hoffmann et al.'s grid of starting points for Approach 3.
DEFAULT_GRID = {"alpha": (0.0, 0.5, 1.0, 1.5, 2.0), "beta": (0.0, 0.5, 1.0, 1.5, 2.0),
                "e": (-1.0, -0.5, 0.0, 0.5, 1.0), "a": (0.0, 5.0, 10.0, 15.0, 20.0, 25.0),
                "b": (0.0, 5.0, 10.0, 15.0, 20.0, 25.0)}
_BOUNDS = [(-20.0, 60.0), (-20.0, 60.0), (-10.0, 5.0), (1e-4, 5.0), (1e-4, 5.0)]  # a b e al be
QUANTILES = (2.5, 97.5)


@functools.lru_cache(maxsize=1)
def _scipy_openblas():
    """scipy's bundled OpenBLAS (wheels ship it in ``scipy.libs``), or None."""
    import scipy
    pattern = os.path.join(os.path.dirname(scipy.__file__), os.pardir, "scipy.libs",
                           "libscipy_openblas*.so")
    for path in glob.glob(pattern):
        try:
            lib = ctypes.CDLL(path)
            lib.scipy_openblas_get_num_threads.restype = ctypes.c_int
            lib.scipy_openblas_set_num_threads.argtypes = [ctypes.c_int]
            return lib
        except (OSError, AttributeError):
            continue
    return None


@contextlib.contextmanager
def single_threaded_blas():
    """One BLAS thread while L-BFGS-B runs: its BLAS calls are on 5-vectors, and a
    multi-threaded OpenBLAS beside torch's thread pool makes each one about 50x slower on a
    busy machine. Best effort (scipy's wheel layout); the thread count is restored after."""
    lib = _scipy_openblas()
    if lib is None:
        yield
        return
    before = lib.scipy_openblas_get_num_threads()
    lib.scipy_openblas_set_num_threads(1)
    try:
        yield
    finally:
        lib.scipy_openblas_set_num_threads(before)


def percentile_interval(values: list[float] | np.ndarray,
                        point: float | None = None) -> list[float] | None:
    """The (2.5%, 97.5%) percentile interval of the finite ``values`` (None for fewer than 2),
    widened to ``point``, the full-data estimate, where it misses it: a band is never reported
    beside an estimate it excludes (all usable replicates on one side of it, or equal to it but
    for rounding)."""
    values = np.asarray([v for v in values if v is not None and np.isfinite(v)], dtype=float)
    if values.size < 2:
        return None
    lo, hi = (float(q) for q in np.percentile(values, QUANTILES))
    if point is not None and math.isfinite(point):
        lo, hi = min(lo, point), max(hi, point)
    return [lo, hi]


# -- grouping --------------------------------------------------------------------------------
#: runs within this factor of a budget (of each other, without labels) form one IsoFLOP group
GROUP_FACTOR = 1.25


def budget_groups(flops: np.ndarray, budgets: np.ndarray | None = None,
                  factor: float = GROUP_FACTOR) -> np.ndarray:
    """The budget each run belongs to: the ``budgets`` column when given, else the median of
    runs whose FLOPs lie within ``factor`` of the smallest run of their group."""
    if budgets is not None:
        return np.asarray(budgets, dtype=float)
    flops = np.asarray(flops, dtype=float)
    order = np.argsort(flops)
    labels = np.empty_like(flops)
    start = 0
    while start < len(order):
        end = start
        while end + 1 < len(order) and flops[order[end + 1]] <= flops[order[start]] * factor:
            end += 1
        members = order[start:end + 1]
        labels[members] = float(np.median(flops[members]))
        start = end + 1
    return labels


# -- power laws ------------------------------------------------------------------------------
@dataclass(frozen=True)
class PowerLaw:
    """``y = coef * x ** exponent``, fitted in log-log space."""

    coef: float
    exponent: float

    def __call__(self, x):
        return self.coef * np.asarray(x, dtype=float) ** self.exponent


def fit_power_law(x, y) -> PowerLaw:
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    if x.size < 2 or np.ptp(np.log(x)) == 0:
        raise MadbenchError("a power law needs at least two distinct x values")
    slope, intercept = np.polyfit(np.log(x), np.log(y), 1)
    return PowerLaw(float(math.exp(intercept)), float(slope))


# -- Approach 2 ------------------------------------------------------------------------------
@dataclass
class IsoFlopGroup:
    """One budget's parabola in ln N and its vertex."""

    budget: float
    params: np.ndarray
    tokens: np.ndarray
    losses: np.ndarray
    coeffs: tuple[float, float, float] | None = None   #: p0, p1, p2
    n_opt: float | None = None
    d_opt: float | None = None
    loss_opt: float | None = None
    problem: str | None = None  #: why the group cannot give a vertex, if it cannot

    @property
    def convex(self) -> bool:
        return self.coeffs is not None and self.coeffs[2] > 0

    @property
    def valid(self) -> bool:
        return self.problem is None

    def predict(self, params) -> np.ndarray:
        p0, p1, p2 = self.coeffs
        x = np.log(np.asarray(params, dtype=float))
        return p0 + p1 * x + p2 * x * x

    def to_dict(self) -> dict:
        return {"budget": self.budget, "points": int(self.params.size),
                "sizes": int(np.unique(self.params).size),
                "params_range": [float(self.params.min()), float(self.params.max())],
                "coeffs": list(self.coeffs) if self.coeffs else None,
                "convex": self.convex, "valid": self.valid, "problem": self.problem,
                "n_opt": self.n_opt, "d_opt": self.d_opt, "loss_opt": self.loss_opt}


#: a group whose parabola sags less than this fraction of its losses is flat (rounding only)
FLAT = 1e-9


def fit_isoflop_group(budget: float, params, tokens, losses) -> IsoFlopGroup:
    """Parabola of loss in ln N for one budget; ``problem`` says why there is no vertex."""
    params, tokens, losses = (np.asarray(v, dtype=float) for v in (params, tokens, losses))
    group = IsoFlopGroup(budget, params, tokens, losses)
    if np.unique(params).size < 3:
        group.problem = f"{np.unique(params).size} model size(s); a parabola needs 3"
        return group
    x = np.log(params)
    p2, p1, p0 = np.polyfit(x, losses, 2)
    group.coeffs = (float(p0), float(p1), float(p2))
    # how far the parabola sags below its chord over the sampled sizes: a curvature whose sag is
    # at the level of floating-point rounding (equal losses) has a sign, but no meaning
    sag = p2 * (x.max() - x.min()) ** 2 / 4
    if abs(sag) <= FLAT * float(np.abs(losses).max()):
        group.problem = "flat (the losses do not change with the model size)"
        return group
    if p2 <= 0:
        group.problem = "not convex (loss curve bends down)"
        return group
    vertex = -p1 / (2 * p2)
    if not x.min() <= vertex <= x.max():
        side = "below the smallest" if vertex < x.min() else "above the largest"
        group.problem = f"vertex at N={_exp_text(vertex)}, {side} sampled size"
        return group
    slope, intercept = np.polyfit(x, np.log(tokens), 1)
    group.n_opt = float(math.exp(vertex))
    group.d_opt = float(math.exp(intercept + slope * vertex))
    group.loss_opt = float(p0 + p1 * vertex + p2 * vertex * vertex)
    return group


def _exp_text(x: float) -> str:
    """``exp(x)`` for a message, as ``e^x`` where it would overflow a float (the vertex of a
    nearly flat parabola lies far outside any size)."""
    return f"{math.exp(x):.3g}" if x < 700 else f"e^{x:.4g}"


@dataclass
class Approach2Fit:
    groups: list[IsoFlopGroup]
    a: float | None = None
    b: float | None = None
    n_law: PowerLaw | None = None
    d_law: PowerLaw | None = None
    loss_law: PowerLaw | None = None
    problem: str | None = None
    a_interval: list[float] | None = None
    b_interval: list[float] | None = None
    loss_bands: dict[float, list[float]] = field(default_factory=dict)
    bootstrap: int = 0
    bootstrap_used: int = 0     #: replicates that gave exponents (the intervals' sample)

    def to_dict(self) -> dict:
        return {"a": self.a, "a_interval": self.a_interval, "b": self.b,
                "b_interval": self.b_interval,
                "n_opt_law": _law_dict(self.n_law), "d_opt_law": _law_dict(self.d_law),
                "loss_frontier_law": _law_dict(self.loss_law), "problem": self.problem,
                "bootstrap": self.bootstrap, "bootstrap_used": self.bootstrap_used,
                "groups": [{**g.to_dict(), "loss_band": self.loss_bands.get(g.budget)}
                           for g in self.groups]}


def _law_dict(law: PowerLaw | None) -> dict | None:
    return None if law is None else {"coef": law.coef, "exponent": law.exponent}


def _approach2_point(params, tokens, losses, labels) -> Approach2Fit:
    groups = [fit_isoflop_group(c, params[labels == c], tokens[labels == c],
                                losses[labels == c]) for c in np.unique(labels)]
    fit = Approach2Fit(groups)
    valid = [g for g in groups if g.valid]
    if len(valid) < 2:
        fit.problem = f"{len(valid)} budget group(s) with an interior vertex; the power laws " \
                      "need 2"
        return fit
    budgets = [g.budget for g in valid]
    fit.n_law = fit_power_law(budgets, [g.n_opt for g in valid])
    fit.d_law = fit_power_law(budgets, [g.d_opt for g in valid])
    fit.loss_law = fit_power_law(budgets, [g.loss_opt for g in valid])
    fit.a, fit.b = fit.n_law.exponent, fit.d_law.exponent
    return fit


def approach2(params, tokens, flops, losses, budgets=None, bootstrap: int = 200,
              seed: int = 0) -> Approach2Fit:
    """IsoFLOP fit of one architecture's runs (arrays of equal length)."""
    params, tokens, flops, losses = (np.asarray(v, dtype=float)
                                     for v in (params, tokens, flops, losses))
    labels = budget_groups(flops, budgets)
    fit = _approach2_point(params, tokens, losses, labels)
    if bootstrap <= 0:
        return fit
    rng = np.random.default_rng(seed)
    index_by_group = [np.flatnonzero(labels == c) for c in np.unique(labels)]
    a_s, b_s, vertex_losses = [], [], {g.budget: [] for g in fit.groups}
    for _ in range(bootstrap):
        idx = np.concatenate([rng.choice(ix, ix.size) for ix in index_by_group])
        rep = _approach2_point(params[idx], tokens[idx], losses[idx], labels[idx])
        a_s.append(rep.a)
        b_s.append(rep.b)
        for g in rep.groups:
            if g.valid:
                vertex_losses[g.budget].append(g.loss_opt)
    fit.bootstrap = bootstrap
    fit.bootstrap_used = sum(1 for a in a_s if a is not None and math.isfinite(a))
    fit.a_interval = percentile_interval(a_s, fit.a)
    fit.b_interval = percentile_interval(b_s, fit.b)
    # a band only where the full data give a vertex: no band beside a group without a point
    fit.loss_bands = {g.budget: band for g in fit.groups if g.valid
                      and (band := percentile_interval(vertex_losses[g.budget], g.loss_opt))}
    return fit


# -- Approach 3 ------------------------------------------------------------------------------
@dataclass
class Approach3Fit:
    E: float
    A: float
    B: float
    alpha: float
    beta: float
    objective: float
    points: int
    intervals: dict[str, list[float] | None] = field(default_factory=dict)
    bootstrap: int = 0
    #: parameters the optimiser left at a bound of its box: their values are the box's, not
    #: the data's (E at exp(-10), alpha at 1e-4 on flat data)
    at_bounds: list[str] = field(default_factory=list)

    @property
    def a(self) -> float:
        """Exponent of N* ~ C^a under C ~ N D."""
        return self.beta / (self.alpha + self.beta)

    @property
    def b(self) -> float:
        return self.alpha / (self.alpha + self.beta)

    def predict(self, params, tokens) -> np.ndarray:
        return (self.E + self.A / np.asarray(params, dtype=float) ** self.alpha
                + self.B / np.asarray(tokens, dtype=float) ** self.beta)

    def to_dict(self) -> dict:
        out = {k: getattr(self, k) for k in ("E", "A", "B", "alpha", "beta", "a", "b")}
        for k in list(out):
            out[f"{k}_interval"] = self.intervals.get(k)
        return {**out, "objective": self.objective, "points": self.points,
                "bootstrap": self.bootstrap, "at_bounds": self.at_bounds}


def _huber(r: np.ndarray, delta: float) -> np.ndarray:
    absr = np.abs(r)
    return np.where(absr <= delta, 0.5 * r * r, delta * (absr - 0.5 * delta))


def _lse_and_weights(terms: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """log-sum-exp over axis 0 and its gradient (the softmax weights)."""
    top = terms.max(axis=0)
    ex = np.exp(terms - top)
    total = ex.sum(axis=0)
    return top + np.log(total), ex / total


def _objective(theta, log_n, log_d, log_l, delta):
    """Summed Huber loss of the log-loss residuals, and its gradient."""
    a, b, e, alpha, beta = theta
    terms = np.stack([a - alpha * log_n, b - beta * log_d, np.full_like(log_n, e)])
    lse, w = _lse_and_weights(terms)
    r = lse - log_l
    w = w * np.clip(r, -delta, delta)            # d LSE / d term, times dHuber / dr
    grad = np.array([w[0].sum(), w[1].sum(), w[2].sum(),
                     -(w[0] * log_n).sum(), -(w[1] * log_d).sum()])
    return float(_huber(r, delta).sum()), grad


def _grid_objectives(grid: np.ndarray, log_n, log_d, log_l, delta) -> np.ndarray:
    a, b, e, alpha, beta = (grid[:, i:i + 1] for i in range(5))
    terms = np.stack([a - alpha * log_n, b - beta * log_d, np.broadcast_to(e, (len(grid),
                                                                              log_n.size))])
    r = logsumexp(terms, axis=0) - log_l
    return _huber(r, delta).sum(axis=1)


def _minimise(start, log_n, log_d, log_l, delta, maxiter=20000):
    res = minimize(_objective, start, args=(log_n, log_d, log_l, delta), jac=True,
                   method="L-BFGS-B", bounds=_BOUNDS,
                   options={"maxiter": maxiter, "maxfun": 2 * maxiter, "ftol": 1e-15,
                            "gtol": 1e-12})
    return res.x, float(res.fun)


def _approach3_point(log_n, log_d, log_l, delta, starts) -> tuple[np.ndarray, float]:
    """L-BFGS-B from every start for a few hundred iterations, then the best polished to
    full tolerance (near the Huber kinks far starts would otherwise crawl for thousands)."""
    best, best_f = None, math.inf
    with single_threaded_blas():
        for start in starts:
            x, f = _minimise(start, log_n, log_d, log_l, delta, maxiter=300)
            if f < best_f:
                best, best_f = x, f
        x, f = _minimise(best, log_n, log_d, log_l, delta)
    return (x, f) if f <= best_f else (best, best_f)


def approach3(params, tokens, losses, delta: float = HUBER_DELTA,
              grid: dict | None = None, top_starts: int = 10, bootstrap: int = 0,
              seed: int = 0) -> Approach3Fit:
    """Fit ``L = E + A/N^alpha + B/D^beta``: every grid point is scored, L-BFGS-B runs from the
    ``top_starts`` best, the lowest objective wins. Bootstrap refits start from the full-data
    optimum."""
    params, tokens, losses = (np.asarray(v, dtype=float) for v in (params, tokens, losses))
    if params.size < 5:
        raise MadbenchError(f"its 5 parameters need at least 5 runs, got {params.size}")
    if np.any(params <= 0) or np.any(tokens <= 0) or np.any(losses <= 0):
        raise MadbenchError("needs positive params, tokens and losses")
    log_n, log_d, log_l = np.log(params), np.log(tokens), np.log(losses)
    g = {**DEFAULT_GRID, **(grid or {})}
    points = np.array(list(itertools.product(g["a"], g["b"], g["e"], g["alpha"], g["beta"])))
    scores = _grid_objectives(points, log_n, log_d, log_l, delta)
    starts = points[np.argsort(scores)[:top_starts]]
    theta, f = _approach3_point(log_n, log_d, log_l, delta, starts)
    fit = _approach3_from_theta(theta, f, params.size)
    if bootstrap > 0:
        rng = np.random.default_rng(seed)
        reps = {k: [] for k in ("E", "A", "B", "alpha", "beta", "a", "b")}
        for _ in range(bootstrap):
            idx = rng.choice(params.size, params.size)
            t, rf = _approach3_point(log_n[idx], log_d[idx], log_l[idx], delta, [theta])
            rep = _approach3_from_theta(t, rf, params.size)
            for k in reps:
                reps[k].append(getattr(rep, k))
        fit.intervals = {k: percentile_interval(v, getattr(fit, k)) for k, v in reps.items()}
        fit.bootstrap = bootstrap
    return fit


def _approach3_from_theta(theta, objective, points) -> Approach3Fit:
    a, b, e, alpha, beta = (float(v) for v in theta)
    at_bounds = [name for name, v, (lo, hi) in zip(("A", "B", "E", "alpha", "beta"), theta,
                                                   _BOUNDS)
                 if min(v - lo, hi - v) <= 1e-6 * (hi - lo)]
    return Approach3Fit(math.exp(e), math.exp(a), math.exp(b), alpha, beta, objective, points,
                        at_bounds=at_bounds)
