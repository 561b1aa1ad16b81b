"""Scaling-law fits of stored runs, per architecture: what ``madbench scaling fit`` reports."""
from __future__ import annotations

from ..errors import MadbenchError, UsageError
from .fits import approach2, approach3
from .table import budgets_of, by_arch, columns, require_numbers


def fit_runs(rows, approach: str, bootstrap: int, params_column: str) -> dict:
    """Per architecture of ``rows``: its number of runs and its Approach 2 and/or 3 fits
    (``approach``: ``2``, ``3`` or ``both``) with ``params_column`` as N."""
    out = {}
    for arch, arch_rows in sorted(by_arch(rows).items()):
        if params_column not in arch_rows[0]:
            raise UsageError(f"no column {params_column!r} in the runs")
        require_numbers(arch_rows, params_column, f"--params-column {params_column}")
        params, tokens, flops, losses = columns(arch_rows, params_column, "tokens", "flops",
                                                "loss")
        budgets = budgets_of(arch_rows)
        entry = {"runs": len(arch_rows)}
        if approach in ("2", "both"):
            entry["approach2"] = approach2(params, tokens, flops, losses, budgets,
                                           bootstrap=bootstrap).to_dict()
        if approach in ("3", "both"):
            try:
                entry["approach3"] = approach3(params, tokens, losses,
                                               bootstrap=min(bootstrap, 100)).to_dict()
            except MadbenchError as exc:
                entry["approach3"] = {"problem": str(exc)}
        out[arch] = entry
    return out
