"""MAD scores against compute-optimal loss (the paper's Fig. 4.1 and Finding 9): rank and
linear correlation across architectures, and the loss a new architecture's MAD score predicts
from the line ``loss = intercept + slope * score``.

Compute-optimal loss per architecture: the Approach 2 vertex at one budget (given, or the
largest budget at which every architecture has a convex group with an interior vertex).
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
from scipy import stats

from ..errors import UsageError
from ..limits import finite_number
from .fits import fit_isoflop_group
from .table import arch_budget_groups, columns, first_bad, read_table


def vertices(rows: Sequence[dict[str, Any]]) -> dict[str, dict[float, float]]:
    """Per architecture, the compute-optimal loss at each budget with a valid vertex."""
    out: dict[str, dict[float, float]] = {}
    for arch, by_budget in arch_budget_groups(rows).items():
        out[arch] = {}
        for c, idx in by_budget.items():
            params, tokens, losses = columns([rows[i] for i in idx], "params", "tokens", "loss")
            g = fit_isoflop_group(c, params, tokens, losses)
            if g.valid:
                out[arch][c] = g.loss_opt
    return out


def _match(budgets: Mapping[float, float], budget: float, factor: float = 1.25):
    near = [c for c in budgets if max(c, budget) / min(c, budget) <= factor]
    return budgets[min(near, key=lambda c: abs(math.log(c / budget)))] if near else None


def compute_optimal_losses(rows, archs: Sequence[str],
                           budget: float | None = None) -> tuple[float, dict[str, float]]:
    """(budget, {arch: compute-optimal loss}) for the architectures ``archs``."""
    verts = vertices(rows)
    missing = [a for a in archs if a not in verts]
    if missing:
        raise UsageError(f"no runs for architecture(s) {', '.join(missing)}")
    if budget is None:
        shared = None
        for a in archs:
            found = set(verts[a])
            shared = found if shared is None else {c for c in shared if _match(verts[a], c)}
        if not shared:
            raise UsageError("no budget at which every architecture has an IsoFLOP vertex; "
                             "give --budget")
        budget = max(shared)
    losses = {a: _match(verts[a], budget) for a in archs}
    lacking = [a for a, v in losses.items() if v is None]
    if lacking:
        raise UsageError(f"no IsoFLOP vertex near C={budget:.3g} for {', '.join(lacking)}")
    return budget, losses


@dataclass
class Correlation:
    archs: list[str]
    scores: list[float]
    losses: list[float]
    budget: float
    spearman: float
    spearman_p: float
    pearson: float
    pearson_p: float
    slope: float
    intercept: float

    def predict(self, score: float) -> float:
        """Compute-optimal loss predicted for a MAD score."""
        return self.intercept + self.slope * score

    def to_dict(self) -> dict:
        return {"budget": self.budget, "archs": self.archs, "mad_scores": self.scores,
                "losses": self.losses, "spearman": self.spearman, "spearman_p": self.spearman_p,
                "pearson": self.pearson, "pearson_p": self.pearson_p,
                "fit": {"slope": self.slope, "intercept": self.intercept}}


EXACT_N = 8     #: up to this many architectures, Spearman's p over all n! orderings


def spearman_exact_p(x: np.ndarray, y: np.ndarray) -> float:
    """Two-sided p of Spearman's rho by enumeration: the share of the orderings of ``y``'s
    ranks whose |rho| with ``x``'s ranks is at least the observed one (ties: mid-ranks)."""
    from itertools import permutations
    rx, ry = stats.rankdata(x), stats.rankdata(y)
    rx, ry = rx - rx.mean(), ry - ry.mean()
    orders = np.array(list(permutations(ry)))
    rhos = orders @ rx / (np.linalg.norm(rx) * np.linalg.norm(ry))
    observed = abs(float(rx @ ry)) / (np.linalg.norm(rx) * np.linalg.norm(ry))
    return float(np.mean(np.abs(rhos) >= observed - 1e-12))


def correlate(mad_scores: Mapping[str, float], losses: Mapping[str, float],
              budget: float) -> Correlation:
    archs = sorted(a for a in mad_scores if a in losses)
    if len(archs) < 3:
        raise UsageError(f"correlation needs at least 3 architectures with both a MAD score "
                         f"and runs, got {len(archs)}")
    x = np.array([float(mad_scores[a]) for a in archs])
    y = np.array([float(losses[a]) for a in archs])
    if np.ptp(x) == 0 or np.ptp(y) == 0:
        raise UsageError("MAD scores or losses are all equal: no correlation to measure")
    rho, rho_p = stats.spearmanr(x, y)
    if len(archs) <= EXACT_N:        # the t approximation says p = 0 for 4 points in order
        rho_p = spearman_exact_p(x, y)
    r, r_p = stats.pearsonr(x, y)
    slope, intercept = np.polyfit(x, y, 1)
    return Correlation(archs, x.tolist(), y.tolist(), budget, float(rho), float(rho_p),
                       float(r), float(r_p), float(slope), float(intercept))


def read_mad_scores(path: str | Path) -> dict[str, float]:
    """MAD scores: a CSV with columns ``arch`` and ``mad_score``; a JSON object
    ``{arch: score}``; or a JSON list of ``madbench report --format json`` documents (or of
    ``{"arch", "mad_score"}`` objects). Every score must be a finite number (UsageError)."""
    path = Path(path)
    if not path.is_file():
        raise UsageError(f"{path}: no such file")
    if path.suffix.lower() == ".csv":
        rows = read_table(path)
        if not rows or not {"arch", "mad_score"} <= set(rows[0]):
            raise UsageError(f"{path}: needs columns arch and mad_score")
        bad = first_bad([(r["arch"], r["mad_score"]) for r in rows], finite_number)
        if bad:     # a column that one cell made text names that cell, not the first
            _score(bad[1], bad[0], path)
        return _unique([(r["arch"], _score(r["mad_score"], r["arch"], path)) for r in rows],
                       path)
    try:
        doc = json.loads(path.read_text(), object_pairs_hook=_object)
    except UsageError as exc:         # a duplicate key (_object)
        raise UsageError(f"{path}: {exc}") from None
    except ValueError as exc:         # not JSON, not UTF-8, an integer of 5,000 digits
        raise UsageError(f"{path}: not valid JSON: {str(exc).splitlines()[0]}") from None
    except RecursionError:
        raise UsageError(f"{path}: not valid JSON: nested too deeply") from None
    if isinstance(doc, dict) and "mad_score" not in doc:
        return _unique([(k, _score(v, k, path)) for k, v in doc.items()], path)
    items = doc if isinstance(doc, list) else [doc]
    out = []
    for item in items:
        if not isinstance(item, dict):
            raise UsageError(f"{path}: every entry needs an architecture name and a mad_score")
        spec = item.get("architecture")
        name = item.get("arch") or (spec.get("name") if isinstance(spec, dict) else None)
        if name is None or item.get("mad_score") is None:
            raise UsageError(f"{path}: every entry needs an architecture name and a mad_score")
        out.append((name, _score(item["mad_score"], name, path)))
    return _unique(out, path)


def _object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """A JSON object; a key given twice is a UsageError (JSON would keep one silently)."""
    out = dict(pairs)
    if len(out) < len(pairs):
        dup = next(k for k, _ in pairs if sum(k == j for j, _ in pairs) > 1)
        raise UsageError(f"a JSON object holds the key {dup[:60]!r} twice")
    return out


def _unique(scores: list[tuple[Any, float]], path: Path) -> dict[str, float]:
    """``{arch: score}``; an architecture given two scores is a UsageError (one would be lost)."""
    out: dict[str, float] = {}
    for arch, score in scores:
        if str(arch) in out:
            raise UsageError(f"{path}: {str(arch)[:60]!r} has more than one MAD score")
        out[str(arch)] = score
    return out


def _score(value: Any, arch: Any, path: Path) -> float:
    """A MAD score as a float (``finite_number``, else a UsageError)."""
    if not finite_number(value):
        raise UsageError(f"{path}: the MAD score of {str(arch)[:60]!r} is {repr(value)[:60]}; a "
                         "score must be a finite number")
    return float(value)
