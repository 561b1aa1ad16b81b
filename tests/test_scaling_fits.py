"""Scaling-law fits recover known constants from simulated data."""
import math

import numpy as np
import pytest

from madbench.errors import MadbenchError
from madbench.scaling.fits import approach2, approach3, budget_groups, fit_isoflop_group
from madbench.scaling.state import state_frontier, state_frontier_fit

EPOCH = dict(E=1.8172, A=482.01, B=2085.43, alpha=0.3478, beta=0.3658)
CHINCHILLA = dict(E=1.69337, A=406.401, B=410.723, alpha=0.33917, beta=0.28491)
BUDGETS = [1e18, 1e19, 1e20, 1e21, 1e22]


def simulate(E, A, B, alpha, beta, budgets=BUDGETS, points=9, decades=1.0, offset=0.0):
    """Runs on IsoFLOP grids (C = 6ND) of ``points`` sizes spanning +-``decades`` around the
    closed-form optimum N* = G (C/6)^(beta/(alpha+beta)), shifted by ``offset`` decades."""
    G = (alpha * A / (beta * B)) ** (1 / (alpha + beta))
    rows = []
    for c in budgets:
        n_opt = G * (c / 6) ** (beta / (alpha + beta))
        for n in n_opt * np.logspace(offset - decades, offset + decades, points):
            d = c / (6 * n)
            rows.append((n, d, c, E + A / n ** alpha + B / d ** beta))
    return [np.array(v) for v in zip(*rows)]


def test_approach3_recovers_the_epoch_ai_refit_from_noise_free_data():
    N, D, C, L = simulate(**EPOCH)
    fit = approach3(N, D, L)   # default: L-BFGS-B from the 10 best points of Hoffmann's grid
    for name, value in EPOCH.items():
        assert getattr(fit, name) == pytest.approx(value, rel=1e-4), name
    # allocation exponents follow from alpha and beta: a = beta / (alpha + beta)
    assert fit.a == pytest.approx(0.3658 / (0.3478 + 0.3658), rel=1e-4)
    assert fit.a + fit.b == pytest.approx(1.0)


def test_approach3_bootstrap_interval_covers_the_truth_under_noise():
    N, D, C, L = simulate(**EPOCH)
    rng = np.random.default_rng(1)
    L = L * np.exp(rng.normal(0, 0.002, L.size))
    fit = approach3(N, D, L, top_starts=3, bootstrap=20, seed=0)
    lo, hi = fit.intervals["a"]
    assert lo <= fit.a <= hi
    assert lo - 0.02 <= 0.3658 / (0.3478 + 0.3658) <= hi + 0.02


def test_approach2_on_chinchilla_approach3_data_gives_a_close_to_0_4565():
    N, D, C, L = simulate(**CHINCHILLA)
    expected = CHINCHILLA["beta"] / (CHINCHILLA["alpha"] + CHINCHILLA["beta"])
    assert expected == pytest.approx(0.4565, abs=1e-4)
    fit = approach2(N, D, C, L, bootstrap=0)
    assert all(g.valid for g in fit.groups)
    assert fit.a == pytest.approx(0.4565, abs=0.01)
    assert fit.a + fit.b == pytest.approx(1.0, abs=1e-6)      # D* = C / (6 N*)
    # an off-centre grid (the vertex no longer mid-grid) biases the estimate, but only a little
    off = approach2(*simulate(**CHINCHILLA, offset=0.4), bootstrap=0)
    assert off.a == pytest.approx(0.4565, abs=0.03)


def test_approach2_bootstrap_gives_an_interval_and_a_loss_band_per_budget():
    N, D, C, L = simulate(**CHINCHILLA)
    L = L * np.exp(np.random.default_rng(0).normal(0, 0.003, L.size))
    fit = approach2(N, D, C, L, bootstrap=100, seed=0)
    assert fit.a_interval[0] <= fit.a <= fit.a_interval[1]
    for g in fit.groups:
        lo, hi = fit.loss_bands[g.budget]
        assert lo <= g.loss_opt <= hi


def test_parabola_vertex_matches_the_closed_form():
    x = np.linspace(0, 4, 7)                 # ln N
    loss = 3.0 - 1.2 * x + 0.25 * x ** 2      # vertex at x = 2.4, loss 3 - 1.44
    g = fit_isoflop_group(1e15, np.exp(x), 1e15 / np.exp(x), loss)
    assert g.valid
    assert g.n_opt == pytest.approx(math.exp(2.4))
    assert g.loss_opt == pytest.approx(1.56)
    assert g.d_opt == pytest.approx(1e15 / math.exp(2.4))


def test_parabola_problems_are_named():
    x = np.exp(np.linspace(0, 4, 5))
    assert "needs 3" in fit_isoflop_group(1, x[:2], x[:2], [1, 2]).problem
    concave = fit_isoflop_group(1, x, x, -(np.log(x) - 2) ** 2)
    assert not concave.convex and "not convex" in concave.problem
    edge = fit_isoflop_group(1, x, x, (np.log(x) - 6) ** 2)
    assert edge.convex and "above the largest" in edge.problem


def test_budget_groups_cluster_runs_by_flops():
    flops = np.array([1e15, 1.1e15, 0.95e15, 1e16, 1.05e16, 3e16])
    labels = budget_groups(flops)
    assert labels[0] == labels[1] == labels[2] != labels[3]
    assert labels[3] == labels[4] != labels[5]
    assert np.array_equal(budget_groups(flops, np.ones(6)), np.ones(6))


def _naive_frontier(state, perplexity):
    """A point is on the frontier when no other point has state <= and perplexity <
    (strictly better on perplexity at no more state), ties in state broken by perplexity."""
    keep = []
    for i in range(len(state)):
        dominated = any((state[j] < state[i] and perplexity[j] <= perplexity[i]) or
                        (state[j] == state[i] and perplexity[j] < perplexity[i])
                        for j in range(len(state)) if j != i)
        if not dominated:
            keep.append(i)
    return sorted(keep, key=lambda i: state[i])


def test_state_frontier_agrees_with_a_naive_dominance_check():
    rng = np.random.default_rng(3)
    state = rng.integers(1, 50, 40).astype(float)
    perplexity = rng.uniform(5, 20, 40)
    assert list(state_frontier(state, perplexity)) == _naive_frontier(state, perplexity)


def test_state_frontier_fit_recovers_a_known_exponent():
    """Frontier points on P = 40 M^-0.28, plus models above the frontier (worse at equal
    state): the fit must find c = -0.28."""
    rng = np.random.default_rng(0)
    M = np.geomspace(1e3, 1e7, 12)
    P = 40 * M ** -0.28
    extra_M = rng.choice(M, 30)
    extra_P = 40 * extra_M ** -0.28 * rng.uniform(1.05, 1.5, 30)
    fit = state_frontier_fit(np.r_[M, extra_M], np.r_[P, extra_P], bootstrap=50)
    assert fit.law.exponent == pytest.approx(-0.28, abs=1e-9)
    assert fit.law.coef == pytest.approx(40, rel=1e-9)
    assert set(fit.frontier) == set(range(12))
    lo, hi = fit.exponent_interval
    assert lo <= -0.28 <= hi


def test_fit_input_errors():
    with pytest.raises(MadbenchError, match="at least 5"):
        approach3([1, 2], [1, 2], [1, 2])
    with pytest.raises(MadbenchError, match="positive"):
        state_frontier_fit([0, 1], [1, 2])
    fit = approach2([1, 2, 3], [3, 2, 1], [1, 1, 1], [3, 2, 3], bootstrap=0)
    assert fit.a is None and "need 2" in fit.problem


@pytest.mark.parametrize("loss", [2.5, 2.0, 1e-3])
def test_equal_losses_are_a_flat_group_whatever_their_rounding(loss):
    """polyfit on equal losses gives a curvature of about +-1e-16, whose sign is rounding: the
    group is flat, never 'ok' with an invented vertex (2.5 gave one at N = 3198)."""
    for sizes in ([1000, 2000, 4000], [1000, 3000, 9000]):
        g = fit_isoflop_group(1e9, sizes, [1e6, 5e5, 2.5e5], [loss] * 3)
        assert g.problem.startswith("flat") and g.n_opt is None


def test_a_small_real_bend_is_still_a_parabola():
    g = fit_isoflop_group(1e9, [1000, 2000, 4000], [1e6, 5e5, 2.5e5], [2.0, 2.0 - 1e-5, 2.0])
    assert g.valid and abs(g.n_opt - 2000) < 1


def test_approach2_says_how_many_bootstrap_replicates_gave_a_fit():
    """The interval is over the replicates that gave exponents; a resample that drops a size
    from a group of three leaves no parabola there. Noise-free parabolas: a replicate fits
    when at least two groups keep all three sizes (counted here from the same draws)."""
    sizes, budgets = [1e4, 3e4, 1e5], [1e9, 3e9, 1e10]
    rows = [(n, c / (6 * n), c, 1 + 0.05 * (math.log(n) - math.log(3e4)) ** 2, c)
            for c in budgets for n in sizes]
    params, tokens, flops, losses, labels = (np.array(v) for v in zip(*rows))
    fit = approach2(params, tokens, flops, losses, labels, bootstrap=40, seed=3)
    rng = np.random.default_rng(3)
    groups = [np.flatnonzero(labels == c) for c in np.unique(labels)]
    expected = 0
    for _ in range(40):
        whole = [np.unique(rng.choice(ix, ix.size)).size == 3 for ix in groups]
        expected += sum(whole) >= 2
    assert fit.bootstrap == 40 and fit.bootstrap_used == expected < 40
    from madbench.cli.scaling_cmd import _replicates
    assert _replicates({"bootstrap": 40, "bootstrap_used": 40}) == "bootstrap 40"
    assert _replicates({"bootstrap": 200, "bootstrap_used": 35}) == (
        "bootstrap: 35 of 200 replicates usable; too few for a reliable interval")


def test_approach3_names_parameters_left_at_the_optimisers_bounds():
    """On flat losses the exponents sit at the box's 1e-4: reported as fitted until now."""
    n = np.array([1e4, 3e4, 1e5, 1e4, 3e4, 1e5])
    d = np.array([1e6, 3e5, 1e5, 3e6, 1e6, 3e5])
    flat = approach3(n, d, np.full(6, 2.5))
    assert {"alpha", "beta"} <= set(flat.at_bounds)
    assert flat.to_dict()["at_bounds"] == flat.at_bounds
    law = approach3(n, d, 1.5 + 400 / n ** 0.34 + 410 / d ** 0.28)
    assert law.at_bounds == [] and law.alpha == pytest.approx(0.34, abs=1e-3)


def _noisy_groups(sizes, count, seed=0):
    """``count`` IsoFLOP groups of ``sizes`` sizes around N = 10^4.75, 10% noise on the loss;
    some have no interior vertex (the noise moves it out), most have one."""
    rng = np.random.default_rng(seed)
    n = np.logspace(4, 5.5, sizes)
    for _ in range(count):
        loss = 2 + 0.3 * (np.log(n) - math.log(10 ** 4.75)) ** 2 + 0.1 * rng.standard_normal(sizes)
        yield n, 1e11 / (6 * n), np.full(sizes, 1e11), loss


def test_a_loss_band_holds_its_own_vertex_and_no_group_without_one_has_a_band():
    """With few replicates the percentile band of a group could miss its own vertex (sr1's
    hyena at 4e11: L* 2.077, band [2.223, 2.223] from --bootstrap 5), so that 'scaling
    validate' failed the very runs a frontier was built from; and a group without a vertex got
    a band from the resamples that had one (L* - [2.854, 3.052])."""
    missed = banded = 0
    for sizes in (4, 5, 7):
        for params, tokens, flops, losses in _noisy_groups(sizes, 40, seed=sizes):
            fit = approach2(params, tokens, flops, losses, bootstrap=5, seed=1)
            g = fit.groups[0]
            band = fit.loss_bands.get(g.budget)
            if g.valid:
                missed += band is not None and not band[0] <= g.loss_opt <= band[1]
            else:
                banded += band is not None
                assert fit.to_dict()["groups"][0]["loss_band"] is None
    assert missed == 0 and banded == 0


def test_percentile_interval_is_widened_to_its_estimate_only_where_it_misses_it():
    from madbench.scaling.fits import percentile_interval
    values = [3.0, 4.0, 5.0, 6.0]
    lo, hi = np.percentile(values, [2.5, 97.5])
    assert percentile_interval(values) == [lo, hi]
    assert percentile_interval(values, 4.5) == [lo, hi]            # inside: unchanged
    assert percentile_interval(values, 1.0) == [1.0, hi]
    assert percentile_interval(values, 9.0) == [lo, 9.0]
    assert percentile_interval([2.0], 1.0) is None                  # one replicate: no band


def test_a_vertex_far_outside_the_sizes_is_a_problem_not_an_overflow():
    """A nearly flat, convex parabola puts its vertex at N = e^1000: math.exp overflowed and a
    bootstrap replicate ended the command with OverflowError."""
    x = np.log([1e4, 2e4, 4e4])
    losses = 2 + 1e-7 * (x - 1000) ** 2 - 1e-7 * (x[0] - 1000) ** 2   # vertex at ln N = 1000
    g = fit_isoflop_group(1e9, np.exp(x), [1e5] * 3, losses)
    assert g.problem.startswith("vertex at N=e^1000") and "above the largest" in g.problem


def _shifted_after_first(real, shift):
    """``real``, whose first call (the full-data fit) passes through and whose later calls
    (bootstrap replicates) come back moved by ``shift(result, i)``, i = 1, 2, ...: every
    replicate lies on one side of the full-data estimate."""
    calls = []

    def wrapped(*args, **kwargs):
        out = real(*args, **kwargs)
        calls.append(None)
        return out if len(calls) == 1 else shift(out, len(calls) - 1)
    return wrapped


def test_approach3_intervals_hold_their_own_estimates(monkeypatch):
    """Approach 3's intervals were the raw percentiles of the replicates: with every replicate's
    alpha above the full-data one, the alpha band excluded its own estimate (as do a and b,
    which move with alpha). They follow percentile_interval's rule, as Approach 2's do."""
    import madbench.scaling.fits as fits
    n, d, _c, loss = simulate(**EPOCH, budgets=[1e18, 1e19], points=4)
    monkeypatch.setattr(fits, "_approach3_point", _shifted_after_first(
        fits._approach3_point, lambda out, i: (out[0] + [0, 0, 0, 0.01 * i, 0], out[1])))
    fit = approach3(n, d, loss, top_starts=2, bootstrap=20)
    alphas = fit.alpha + 0.01 * np.arange(1, 21)
    assert np.percentile(alphas, 2.5) > fit.alpha                   # the raw band misses it
    assert fit.intervals["alpha"] == pytest.approx([fit.alpha, np.percentile(alphas, 97.5)])
    for k in ("E", "A", "B", "alpha", "beta", "a", "b"):
        lo, hi = fit.intervals[k]
        assert lo <= getattr(fit, k) <= hi, k


def test_state_frontier_interval_holds_its_own_exponent(monkeypatch):
    """The state frontier's exponent interval was the raw percentiles of the replicates: with
    every replicate steeper than the full-data fit, it excluded its own exponent."""
    import madbench.scaling.state as state
    from madbench.scaling.fits import PowerLaw
    monkeypatch.setattr(state, "fit_power_law", _shifted_after_first(
        state.fit_power_law, lambda law, i: PowerLaw(law.coef, law.exponent - 0.01 * i)))
    m = np.geomspace(1e3, 1e7, 6)
    fit = state_frontier_fit(m, 40 * m ** -0.28, bootstrap=20)
    assert fit.law.exponent == pytest.approx(-0.28)
    exps = fit.law.exponent - 0.01 * np.arange(1, 21)
    assert np.percentile(exps, 97.5) < fit.law.exponent              # the raw band misses it
    assert fit.exponent_interval == pytest.approx([np.percentile(exps, 2.5), fit.law.exponent])
