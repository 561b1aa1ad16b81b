"""The scoring math on hand-made records: best of sweep, task means, MAD score, bootstrap."""
import math

import pytest

from madbench.scoring import best_of_sweep, bootstrap_interval, mad_score, task_scores


def rec(task, setting, seed, lr, acc, loss=1.0, macro=None):
    return {"task": task, "setting": setting, "seed": seed, "lr": lr, "accuracy": acc,
            "macro_accuracy": acc if macro is None else macro, "loss": loss}


RECORDS = [
    # task a: two settings; best 0.9 and 0.5 -> 0.7
    rec("a", "baseline", 0, 1e-3, 0.9), rec("a", "baseline", 0, 1e-4, 0.2),
    rec("a", "seq_len=256", 0, 1e-3, 0.1), rec("a", "seq_len=256", 0, 1e-4, 0.5),
    # task b: one setting; tie broken by lower loss
    rec("b", "baseline", 0, 1e-3, 0.4, loss=2.0), rec("b", "baseline", 0, 1e-4, 0.4, loss=1.0),
]


def test_best_of_sweep_picks_max_accuracy_and_breaks_ties_by_loss():
    best = best_of_sweep(RECORDS)
    assert best[("a", "baseline", 0)]["lr"] == 1e-3
    assert best[("a", "seq_len=256", 0)]["lr"] == 1e-4
    assert best[("b", "baseline", 0)]["lr"] == 1e-4


def test_task_and_mad_scores_are_unweighted_means():
    scores = task_scores(best_of_sweep(RECORDS))
    assert scores == {"a": pytest.approx(0.7), "b": pytest.approx(0.4)}
    # unweighted over tasks, not over settings: (0.7 + 0.4) / 2, not (0.9 + 0.5 + 0.4) / 3
    assert mad_score(scores) == pytest.approx(0.55)


def test_selection_metric_changes_the_best_run():
    records = [rec("a", "baseline", 0, 1e-3, 0.9, macro=0.1),
               rec("a", "baseline", 0, 1e-4, 0.8, macro=0.7)]
    assert best_of_sweep(records, "macro_accuracy")[("a", "baseline", 0)]["lr"] == 1e-4
    assert task_scores(best_of_sweep(records, "macro_accuracy"), "macro_accuracy")["a"] == 0.7


def test_bootstrap_needs_two_seeds_and_brackets_the_mean():
    assert bootstrap_interval(best_of_sweep(RECORDS)) is None
    records = [rec("a", "baseline", s, 1e-3, acc) for s, acc in enumerate([0.2, 0.4, 0.6, 0.8])]
    lo, hi = bootstrap_interval(best_of_sweep(records), samples=500)
    assert 0.2 <= lo < 0.5 < hi <= 0.8
    assert math.isnan(mad_score({}))


def test_bootstrap_interval_does_not_depend_on_the_order_of_the_runs():
    """A submission reads its runs from the store, its validator from the file, in other
    orders (seven seeds 1-7 made the two disagree); the interval must be the same."""
    import random
    accs = [0.31, 0.52, 0.47, 0.66, 0.29, 0.58, 0.44]
    records = [rec(t, s, seed, 1e-3, a + 0.01 * i)
               for i, (t, s) in enumerate([("a", "baseline"), ("a", "x=1"), ("b", "baseline")])
               for seed, a in zip(range(1, 8), accs)]
    best = best_of_sweep(records)
    items = list(best.items())
    want = bootstrap_interval(dict(sorted(items)), samples=300)
    for k in range(3):
        random.Random(k).shuffle(items)
        assert bootstrap_interval(dict(items), samples=300) == want


def test_bootstrap_interval_matches_the_exact_bootstrap_distribution():
    """Two settings of one task, 3 and 2 seeds: all 3**3 * 2**2 = 108 resamples are equally
    likely, so their means' quantiles are the exact bootstrap interval; 20,000 draws land
    within 0.01 of it."""
    import itertools

    import numpy as np
    a, b = [0.1, 0.5, 0.6], [0.3, 0.9]
    records = [rec("t", "baseline", s, 1e-3, x) for s, x in enumerate(a)] + \
        [rec("t", "x=1", s, 1e-3, x) for s, x in enumerate(b)]
    exact = sorted((np.mean(ra) + np.mean(rb)) / 2
                   for ra in itertools.product(a, repeat=3)
                   for rb in itertools.product(b, repeat=2))
    want = np.quantile(exact, [0.025, 0.975])
    lo, hi = bootstrap_interval(best_of_sweep(records), samples=20000)
    assert abs(lo - want[0]) < 0.01 and abs(hi - want[1]) < 0.01


def test_bootstrap_interval_of_a_whole_suite_with_seeds_is_quick():
    """66 settings x 3 seeds took 20 s on a 2-core CPU (a Python loop per resample and
    setting), and report computes it seven times (the MAD score and each task)."""
    import time
    records = [rec(f"t{t}", f"s{s}", seed, 1e-3, ((t * 11 + s) * 7 + seed) % 10 / 10)
               for t in range(6) for s in range(11) for seed in range(3)]
    best = best_of_sweep(records)
    start = time.perf_counter()
    assert bootstrap_interval(best) is not None
    assert time.perf_counter() - start < 2
