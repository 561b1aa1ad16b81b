"""State and perplexity: the paper's state-optimal scaling (Finding 8) and, separately, the
state frontier over all runs. The two answer different questions and their exponents are not
comparable.

**State-optimal scaling, as the paper builds it** (``state_optimal``; ``madbench scaling
state-optimal``). Per architecture and budget, take the compute-optimal model; read its state
M (fixed state plus the dynamic state at the paper's length of 8k, ``total_state_8k``) and its
perplexity P* = exp(L*); fit one power law with a shared exponent and an offset per
architecture,

    ln P*[a, C] = k[a] + c ln M[a, C]

by least squares (the paper reports c about -0.28). The compute-optimal model is either the
vertex of the IsoFLOP parabola (``optimum="vertex"``, as Approach 2: its loss is the vertex's,
its state read off the group's line of ln M against ln N at the vertex, exact when M is a
power of N along the group, as D* is) or the best trained run of the group (``"best"``:
a real model, its own state). Intervals: percentile bootstrap, resampling runs within each
(architecture, budget) group and rebuilding the optima, widened to the estimate where they
miss it (``fits.percentile_interval``, as every interval of the scaling fits).

**State frontier over all runs** (``state_frontier_fit``; ``madbench scaling fit
--state-frontier COLUMN``). Per budget, across every run of every architecture, keep the
points that no other point beats with both less state and lower perplexity, and fit
P = k M^c on them. It mixes compute-optimal and off-optimal models of several architectures;
it is a description of the runs, not the paper's Finding 8.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

from ..errors import MadbenchError, UsageError
from .fits import PowerLaw, budget_groups, fit_isoflop_group, fit_power_law, percentile_interval
from .table import arch_budget_groups, budgets_of, columns, require_numbers

DEFAULT_STATE_COLUMN = "total_state_8k"
OPTIMA = ("vertex", "best")


# -- the paper's construction ----------------------------------------------------------------
@dataclass
class OptimalModel:
    """The compute-optimal model of one architecture at one budget, and its state."""

    arch: str
    budget: float
    params: float | None = None
    loss: float | None = None
    state: float | None = None
    fixed_state: float | None = None
    dynamic_state: float | None = None  #: at the state column's length (8k by default)
    problem: str | None = None

    @property
    def valid(self) -> bool:
        return self.problem is None

    def to_dict(self) -> dict:
        return {"arch": self.arch, "budget": self.budget, "params": self.params,
                "loss": self.loss,
                "perplexity": None if self.loss is None else math.exp(self.loss),
                "state": self.state, "fixed_state": self.fixed_state,
                "dynamic_state": self.dynamic_state, "problem": self.problem}


def _at_vertex(params: np.ndarray, values: np.ndarray, n_opt: float) -> float:
    """A per-run quantity read at ``n_opt``: the group's least-squares line in log-log space
    when every value is positive, 0 when all are 0, else a line in ln N."""
    x = np.log(params)
    if np.all(values > 0):
        slope, intercept = np.polyfit(x, np.log(values), 1)
        return float(math.exp(intercept + slope * math.log(n_opt)))
    if np.all(values == 0):
        return 0.0
    slope, intercept = np.polyfit(x, values, 1)
    return float(intercept + slope * math.log(n_opt))


def optimal_model(arch: str, budget: float, params, tokens, losses, state, fixed,
                  optimum: str = "vertex") -> OptimalModel:
    """The compute-optimal model of one IsoFLOP group (arrays of equal length; ``fixed`` may
    be None when the runs do not split their state)."""
    params, tokens, losses, state = (np.asarray(v, dtype=float)
                                     for v in (params, tokens, losses, state))
    model = OptimalModel(arch, float(budget))
    if optimum == "best":
        i = int(np.argmin(losses))
        model.params, model.loss, model.state = float(params[i]), float(losses[i]), \
            float(state[i])
        if fixed is not None:
            model.fixed_state = float(fixed[i])
        if np.unique(params).size >= 2 and params[i] in (params.min(), params.max()):
            model.problem = "best run at the edge of the sampled sizes (the optimum may lie " \
                            "outside them)"
    else:
        group = fit_isoflop_group(budget, params, tokens, losses)
        if not group.valid:
            model.problem = group.problem
            return model
        model.params, model.loss = group.n_opt, group.loss_opt
        if fixed is None:
            model.state = _at_vertex(params, state, group.n_opt)
        else:          # fixed and dynamic each read at the vertex; M is their sum
            fixed = np.asarray(fixed, dtype=float)
            model.fixed_state = _at_vertex(params, fixed, group.n_opt)
            model.state = model.fixed_state + _at_vertex(params, state - fixed, group.n_opt)
    if model.fixed_state is not None:
        model.dynamic_state = model.state - model.fixed_state
    if model.problem is None and not model.state > 0:
        model.problem = f"state {model.state:g} is not positive"
    return model


@dataclass
class StateOptimalFit:
    """``P* = exp(k[arch]) M^c``: one exponent, one offset per architecture."""

    exponent: float
    offsets: dict[str, float]            #: k[arch] (natural log of the coefficient)
    models: list[OptimalModel]           #: every group, valid or not
    residual_rms: float
    per_arch_exponent: dict[str, float | None] = field(default_factory=dict)
    exponent_interval: list[float] | None = None
    offset_intervals: dict[str, list[float] | None] = field(default_factory=dict)
    bootstrap: int = 0
    bootstrap_used: int = 0     #: replicates that gave an exponent
    optimum: str = "vertex"
    state_column: str = DEFAULT_STATE_COLUMN

    def predict(self, arch: str, state) -> np.ndarray:
        """Perplexity the fit gives ``arch`` at ``state``."""
        return np.exp(self.offsets[arch] + self.exponent * np.log(np.asarray(state, float)))

    def to_dict(self) -> dict:
        return {"construction": "paper (compute-optimal model per architecture and budget)",
                "optimum": self.optimum, "state_column": self.state_column,
                "exponent": self.exponent, "exponent_interval": self.exponent_interval,
                "offsets": {a: {"log_coef": k, "coef": math.exp(k),
                                "log_coef_interval": self.offset_intervals.get(a),
                                "exponent_alone": self.per_arch_exponent.get(a)}
                            for a, k in self.offsets.items()},
                "residual_rms": self.residual_rms, "bootstrap": self.bootstrap,
                "bootstrap_used": self.bootstrap_used,
                "models": [m.to_dict() for m in self.models]}


def shared_exponent_fit(archs: Sequence[str], state, perplexity) -> tuple[float, dict, float]:
    """Least squares of ``ln P = k[arch] + c ln M``: (c, {arch: k}, rms residual in ln P)."""
    archs = list(archs)
    state, perplexity = np.asarray(state, float), np.asarray(perplexity, float)
    if np.any(state <= 0) or np.any(perplexity <= 0):
        raise MadbenchError("the state-optimal fit needs positive state and perplexity")
    names = sorted(set(archs))
    logm = np.log(state)
    within = sum(np.ptp(logm[[i for i, a in enumerate(archs) if a == n]]) > 0 for n in names)
    if not within:
        raise MadbenchError("no architecture has compute-optimal models of two different "
                            "states; the shared exponent needs them (more budgets)")
    design = np.zeros((len(archs), len(names) + 1))
    for i, a in enumerate(archs):
        design[i, names.index(a)] = 1.0
    design[:, -1] = logm
    y = np.log(perplexity)
    coef, *_ = np.linalg.lstsq(design, y, rcond=None)
    rms = float(np.sqrt(np.mean((design @ coef - y) ** 2)))
    return float(coef[-1]), {n: float(coef[k]) for k, n in enumerate(names)}, rms


def _groups(rows: Sequence[dict[str, Any]], state_column: str, split: bool):
    """Per (arch, budget): the arrays an optimum needs."""
    out = []
    for arch, by_budget in arch_budget_groups(rows).items():
        for budget, idx in by_budget.items():
            sub = [rows[i] for i in idx]
            params, tokens, losses, state = columns(sub, "params", "tokens", "loss",
                                                    state_column)
            fixed = columns(sub, "fixed_state")[0] if split else None
            out.append((arch, budget, params, tokens, losses, state, fixed))
    return out


def _optima(groups, optimum: str) -> list[OptimalModel]:
    return [optimal_model(*g[:6], g[6], optimum=optimum) for g in groups]


def _fit_models(models: list[OptimalModel]):
    ok = [m for m in models if m.valid]
    return shared_exponent_fit([m.arch for m in ok], [m.state for m in ok],
                               [math.exp(m.loss) for m in ok])


def state_optimal(rows: Sequence[dict[str, Any]], state_column: str = DEFAULT_STATE_COLUMN,
                  optimum: str = "vertex", bootstrap: int = 200,
                  seed: int = 0) -> StateOptimalFit:
    """The paper's state-optimal fit over runs of one or more architectures (rows with
    ``arch``, ``params``, ``tokens``, ``flops``, ``loss``, the state column and optionally
    ``budget`` and ``fixed_state``)."""
    if optimum not in OPTIMA:
        raise UsageError(f"optimum must be one of {', '.join(OPTIMA)}, not {optimum!r}")
    require_numbers(rows, state_column, "the state-optimal fit")
    split = state_column == DEFAULT_STATE_COLUMN and all(
        r.get("fixed_state") is not None for r in rows)
    if split:
        require_numbers(rows, "fixed_state", "the state-optimal fit", zero=True)
    groups = _groups(rows, state_column, split)
    models = _optima(groups, optimum)
    c, offsets, rms = _fit_models(models)
    fit = StateOptimalFit(c, offsets, models, rms, optimum=optimum, state_column=state_column)
    for arch in offsets:
        mine = [m for m in models if m.valid and m.arch == arch]
        states = [m.state for m in mine]
        fit.per_arch_exponent[arch] = (fit_power_law(states, [math.exp(m.loss) for m in mine])
                                       .exponent if len(set(states)) >= 2 else None)
    if bootstrap > 0:
        rng = np.random.default_rng(seed)
        exps, offs = [], {a: [] for a in offsets}
        for _ in range(bootstrap):
            resampled = []
            for arch, budget, *arrays in groups:
                idx = rng.choice(arrays[0].size, arrays[0].size)
                resampled.append((arch, budget,
                                  *(None if a is None else a[idx] for a in arrays)))
            try:
                rc, roffs, _ = _fit_models(_optima(resampled, optimum))
            except MadbenchError:
                continue
            exps.append(rc)
            for a, k in roffs.items():
                offs[a].append(k)
        fit.bootstrap, fit.bootstrap_used = bootstrap, len(exps)
        fit.exponent_interval = percentile_interval(exps, c)
        fit.offset_intervals = {a: percentile_interval(v, offsets[a]) for a, v in offs.items()}
    return fit


# -- the state frontier over all runs --------------------------------------------------------
@dataclass
class StateFrontierFit:
    """``P = coef * M^exponent`` on the state frontier of a set of runs."""

    law: PowerLaw
    frontier: np.ndarray  #: indices of the frontier points, by increasing state
    exponent_interval: list[float] | None = None
    bootstrap: int = 0

    def to_dict(self) -> dict:
        return {"construction": "state frontier over all runs (not the paper's Finding 8)",
                "coef": self.law.coef, "exponent": self.law.exponent,
                "exponent_interval": self.exponent_interval,
                "frontier": [int(i) for i in self.frontier], "bootstrap": self.bootstrap}


def state_frontier(state, perplexity) -> np.ndarray:
    """Indices of the points no other point beats with both less (or equal) state and lower
    perplexity, by increasing state."""
    state, perplexity = np.asarray(state, dtype=float), np.asarray(perplexity, dtype=float)
    order = np.lexsort((perplexity, state))
    frontier, best = [], math.inf
    for i in order:
        if perplexity[i] < best:
            frontier.append(i)
            best = perplexity[i]
    return np.array(frontier, dtype=int)


def state_frontier_fit(state, perplexity, bootstrap: int = 200,
                       seed: int = 0) -> StateFrontierFit:
    """Power law of perplexity in state, fitted on the state frontier of the points."""
    state, perplexity = np.asarray(state, dtype=float), np.asarray(perplexity, dtype=float)
    if np.any(state <= 0) or np.any(perplexity <= 0):
        raise MadbenchError("the state frontier fit needs positive state and perplexity")
    front = state_frontier(state, perplexity)
    if front.size < 2:
        raise MadbenchError("the state frontier has fewer than 2 points")
    fit = StateFrontierFit(fit_power_law(state[front], perplexity[front]), front)
    if bootstrap > 0:
        rng = np.random.default_rng(seed)
        exps = []
        for _ in range(bootstrap):
            idx = rng.choice(state.size, state.size)
            f = state_frontier(state[idx], perplexity[idx])
            if np.unique(state[idx][f]).size >= 2:
                exps.append(fit_power_law(state[idx][f], perplexity[idx][f]).exponent)
        fit.exponent_interval = percentile_interval(exps, fit.law.exponent)
        fit.bootstrap = bootstrap
    return fit


def state_frontiers_by_budget(rows: Sequence[dict[str, Any]], column: str,
                              bootstrap: int) -> dict[str, dict]:
    """Per budget, across every run of every architecture: the state frontier fit
    (perplexity = exp(loss)), or the problem that prevents it."""
    require_numbers(rows, column, "the state frontier")
    flops = np.array([float(r["flops"]) for r in rows])
    labels = budget_groups(flops, budgets_of(rows))
    state = np.array([float(r[column]) for r in rows])
    perplexity = np.exp([float(r["loss"]) for r in rows])
    out = {}
    for c in np.unique(labels):
        m = labels == c
        try:
            fit = state_frontier_fit(state[m], perplexity[m], bootstrap=bootstrap)
            out[f"{c:.6g}"] = {**fit.to_dict(),
                               "frontier_archs": [rows[i]["arch"] for i in np.flatnonzero(m)[
                                   fit.frontier]]}
        except MadbenchError as exc:
            out[f"{c:.6g}"] = {"problem": str(exc)}
    return out
