"""MAD scores from run records: best of sweep per setting, mean over a task's settings, mean
over tasks; with several seeds, a bootstrap confidence interval over seeds."""
from __future__ import annotations

from collections import defaultdict
from typing import Any, Iterable

import numpy as np


def best_of_sweep(records: Iterable[dict[str, Any]], metric: str = "accuracy"
                  ) -> dict[tuple[str, str, int], dict[str, Any]]:
    """The best run per (task, setting, seed), by highest ``metric`` (ties: lowest loss)."""
    best: dict[tuple[str, str, int], dict[str, Any]] = {}
    for r in records:
        key = (r["task"], r["setting"], int(r["seed"]))
        cur = best.get(key)
        if cur is None or _better(r, cur, metric):
            best[key] = r
    return best


def _better(a: dict, b: dict, metric: str) -> bool:
    if a[metric] != b[metric]:
        return a[metric] > b[metric]
    la, lb = a.get("loss"), b.get("loss")
    la = np.inf if la is None or la != la else la
    lb = np.inf if lb is None or lb != lb else lb
    return la < lb


def task_scores(best: dict[tuple[str, str, int], dict], metric: str = "accuracy"
                ) -> dict[str, float]:
    """Score of each task: mean over its settings (and seeds) of the best run's ``metric``."""
    per_setting: dict[tuple[str, str], list[float]] = defaultdict(list)
    for (task, setting, _seed), r in best.items():
        per_setting[(task, setting)].append(float(r[metric]))
    per_task: dict[str, list[float]] = defaultdict(list)
    for (task, _setting), values in per_setting.items():
        per_task[task].append(float(np.mean(values)))
    return {t: float(np.mean(v)) for t, v in sorted(per_task.items())}


#: the six tasks of the MAD protocol; the MAD score is the mean over exactly these
MAD_TASKS = ("in-context-recall", "noisy-in-context-recall", "fuzzy-in-context-recall",
             "selective-copying", "compression", "memorization")


def score_label(tasks: Iterable[str]) -> str:
    """What the mean of the task scores is called: ``MAD score`` over the six MAD tasks,
    otherwise ``mean of N tasks`` (a subset is never labelled a MAD score)."""
    tasks = set(tasks)
    if tasks == set(MAD_TASKS):
        return "MAD score"
    return f"mean of {len(tasks)} task{'' if len(tasks) == 1 else 's'}"


def mad_score(scores: dict[str, float]) -> float:
    """The unweighted mean of the task scores."""
    return float(np.mean(list(scores.values()))) if scores else float("nan")


def bootstrap_interval(best: dict[tuple[str, str, int], dict], metric: str = "accuracy",
                       samples: int = 2000, level: float = 0.95, seed: int = 0
                       ) -> tuple[float, float] | None:
    """Percentile interval of the MAD score when each setting's seeds are resampled with
    replacement; None with fewer than two seeds. The same for any order of ``best`` (settings
    are drawn in sorted order, each setting's seeds in seed order, so a submission and its
    validator, which read the runs in different orders, draw the same resamples)."""
    per_setting: dict[tuple[str, str], list[float]] = defaultdict(list)
    for (task, setting, _seed), r in sorted(best.items(), key=lambda kv: kv[0]):
        per_setting[(task, setting)].append(float(r[metric]))
    if not per_setting or max(len(v) for v in per_setting.values()) < 2:
        return None
    rng = np.random.default_rng(seed)
    per_task: dict[str, list[np.ndarray]] = defaultdict(list)
    for (task, _setting), values in sorted(per_setting.items()):
        v = np.asarray(values)          # all resamples of this setting at once: samples x seeds
        per_task[task].append(v[rng.integers(0, len(v), size=(samples, len(v)))].mean(axis=1))
    draws = np.mean([np.mean(per_task[t], axis=0) for t in sorted(per_task)], axis=0)
    lo, hi = np.quantile(draws, [(1 - level) / 2, (1 + level) / 2])
    return float(lo), float(hi)


def task_statistics(best: dict[tuple[str, str, int], dict], metric: str = "accuracy"
                    ) -> dict[str, dict[str, Any]]:
    """Per task: ``score`` (as ``task_scores``), ``seeds``, ``stderr`` (standard error of the
    per-seed task scores, None with one seed) and ``confidence_interval`` (the bootstrap
    interval of ``bootstrap_interval`` over this task's settings, None with one seed)."""
    scores = task_scores(best, metric)
    out = {}
    for task, score in scores.items():
        mine = {k: r for k, r in best.items() if k[0] == task}
        per_seed: dict[int, list[float]] = defaultdict(list)
        for (_task, _setting, seed), r in mine.items():
            per_seed[seed].append(float(r[metric]))
        means = [float(np.mean(v)) for _, v in sorted(per_seed.items())]
        stderr = float(np.std(means, ddof=1) / np.sqrt(len(means))) if len(means) > 1 else None
        interval = bootstrap_interval(mine, metric)
        out[task] = {"score": score, "seeds": sorted(per_seed), "stderr": stderr,
                     "confidence_interval": list(interval) if interval else None}
    return out
