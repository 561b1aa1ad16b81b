"""The paper's difficulty curves (its Figs. B.2-B.7): for each task and each variable its
settings vary (sequence length, vocabulary, training-set size, noise, ...), the best-of-sweep
score of every architecture against the variable's value, the baseline setting included as
the point where every curve meets. Pure data from run records; ``madbench.figures`` draws it.
"""
from __future__ import annotations

from collections import defaultdict
from typing import Any, Sequence

import numpy as np

from .errors import UsageError
from .records import series_labels
from .scoring import best_of_sweep
from .tasks import get_task

BASELINE = "baseline"


def split_setting(name: str) -> tuple[str, str] | None:
    """``vocab_size=512`` -> (``vocab_size``, ``512``); None for ``baseline``."""
    variable, sep, value = name.partition("=")
    return (variable, value) if sep else None


def _number(text: Any) -> float | None:
    try:
        return float(text)
    except (TypeError, ValueError):
        return None


def _baseline_value(task: str, variable: str, records: Sequence[dict]) -> float | None:
    """The variable's value at the task's baseline: from the task's definition when its plugin
    is installed (a stored setting may be capped by the protocol), else from a stored
    baseline record."""
    try:
        return _number(get_task(task).baseline.get(variable))
    except UsageError:
        pass
    for r in records:
        if r["task"] == task and r["setting"] == BASELINE:
            return _number((r.get("setting_params") or {}).get(variable))
    return None


def difficulty_curves(groups: Sequence[Sequence[dict[str, Any]]]
                      ) -> dict[str, dict[str, dict[str, list[tuple[float, float]]]]]:
    """``{task: {variable: {series label: [(value, score), ...] sorted by value}}}`` for the
    record groups of several architectures (one group per architecture and protocol, as
    ``madbench.records.group_records`` makes them). A score is the best run of the setting's
    sweep on the group's selection metric, averaged over seeds. Only variables with at least
    one non-baseline setting stored appear."""
    curves: dict[str, dict[str, dict[str, list[tuple[float, float]]]]] = defaultdict(
        lambda: defaultdict(dict))
    for records, label in zip(groups, series_labels(groups)):
        if not records:
            continue
        metric = records[0].get("selection") or "accuracy"
        per_setting: dict[tuple[str, str], list[float]] = defaultdict(list)
        for (task, setting, _seed), r in best_of_sweep(records, metric).items():
            per_setting[(task, setting)].append(float(r[metric]))
        score = {k: float(np.mean(v)) for k, v in per_setting.items()}
        for task in sorted({t for t, _ in score}):
            variables = sorted({split_setting(s)[0] for t, s in score
                                if t == task and split_setting(s)})
            for variable in variables:
                points = []
                for (t, s), value in score.items():
                    parts = split_setting(s)
                    if t == task and parts and parts[0] == variable:
                        x = _number(parts[1])
                        if x is not None:
                            points.append((x, value))
                if (task, BASELINE) in score:
                    x = _baseline_value(task, variable, records)
                    if x is not None:
                        points.append((x, score[(task, BASELINE)]))
                if points:
                    curves[task][variable][label] = sorted(points)
    return {t: dict(v) for t, v in sorted(curves.items())}
