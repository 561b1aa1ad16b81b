"""``madbench.time_limit``: the duration parser and the fit rule, on a clock driven by hand
(the figures below worked out by hand: margin 1.1, prediction = estimate x measured/estimated
so far)."""
import pytest

from madbench.errors import UsageError
from madbench.time_limit import TimeLimit, parse_duration


@pytest.mark.parametrize("text,seconds", [("500", 500), ("90s", 90), ("8m", 480),
                                          ("8min", 480), ("2.5h", 9000), (" 3 s ", 3),
                                          ("0.5", 0.5), ("1e3", 1000)])
def test_durations(text, seconds):
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["0", "-1", "", "s", "5x", "5 d", "inf", "nan", "1e400",
                                  "1h30m", "0.0s"])
def test_bad_durations_are_one_usage_error(text):
    with pytest.raises(UsageError, match="positive duration"):
        parse_duration(text)


class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


def test_a_group_starts_only_if_its_prediction_with_margin_fits_what_is_left():
    clock = Clock()
    limit = TimeLimit(100, lambda group: group[0], clock=clock)
    assert limit.fits([90]) and not limit.fits([91])      # 99 <= 100 < 100.1
    limit.trained([10], 20)                               # twice its estimate: ratio 2
    clock.now = 20
    assert limit.ratio() == 2 and limit.left() == 80
    assert limit.fits([36]) and not limit.fits([37])      # 79.2 <= 80 < 81.4
    limit.trained([30], 15)                               # 35 s for 40 estimated
    clock.now = 35
    assert limit.ratio() == 35 / 40
    assert limit.fits([67]) and not limit.fits([68])      # 64.5 <= 65 < 65.45


def test_time_outside_training_is_added_per_group_not_scaled():
    """A short group whose wall time is mostly outside training (capture, evaluation) must
    not make a long group look many times longer than it is."""
    clock = Clock()
    limit = TimeLimit(100, lambda group: group[0], clock=clock)
    limit.trained([10], 12, training=2)          # ratio 2/10, 10 s outside training
    clock.now = 12                                # 88 s left
    assert limit.predict([100]) == pytest.approx(30)      # 100 x 0.2 + 10
    assert limit.fits([350]) and not limit.fits([360])    # 1.1 x 80 = 88 <= 88 < 1.1 x 82
    limit.trained([50], 40, training=30)          # ratio 32/60, outside 10 + 10 over 2 groups
    assert limit.predict([90]) == pytest.approx(90 * 32 / 60 + 10)
    limit.trained([1], 1, training=5)             # a record claiming more than the wall time
    assert limit.overhead == 20 and limit.measured == 33


def test_a_dry_run_plans_by_the_estimate_on_each_device():
    limit = TimeLimit(100, lambda group: group[0], clock=Clock())
    # one device: 50 (55 s with margin), 40 (50 + 44), then 10 does not (90 + 11), 0.5 does
    assert limit.planned([[50], [40], [10], [0.5]]) == [[50], [40], [0.5]]
    # two devices: 50 and 40 side by side, then 10 after 40 (40 + 11), 80 nowhere (50 + 88)
    assert limit.planned([[50], [40], [10], [80]], devices=2) == [[50], [40], [10]]


def test_a_dry_run_plans_what_training_then_does():
    """The forty-second session's call on an H100 planned "about 120" runs of a 421 s limit
    and trained 60: the plan added the 10% margin to every group before a long one, judged
    that in-context recall at length 1,024 (186 s) would not fit and counted many short groups
    after it instead, while training (``fits``: the margin on the group starting only) took
    the long group and had no time left. Here training is simulated with ``fits`` and
    ``trained`` on a clock that moves by each group's estimate."""
    groups = [[20.7]] * 4 + [[38.3], [87.5], [186.0], [10.3]] + [[5.2]] * 3 + [[2.0]] * 6
    clock = Clock()
    trained = []
    limit = TimeLimit(421, lambda group: group[0], clock=clock)
    for group in groups:
        if limit.fits(group):
            clock.now += group[0]
            limit.trained(group, group[0])
            trained.append(group)
    assert trained[6:8] == [[186.0], [10.3]] and len(trained) == 12   # 394.6 s, then 4 short
    assert TimeLimit(421, lambda group: group[0], clock=Clock()).planned(groups) == trained
    # 45 s then 50 s (55 with the margin) fill 100 s: two 2 s groups fit after them, not 22
    limit = TimeLimit(100, lambda group: group[0], clock=Clock())
    assert limit.planned([[45], [50]] + [[2]] * 30) == [[45], [50], [2], [2]]


def test_a_stop_with_nothing_fitted_names_the_margin_and_what_was_left():
    """A plan made with 51 s left says the 46 s group fits (50.6 s with the margin); a second
    later it no longer does (the thirty-third session's call 6 on the GPU). The stop then
    gives both figures, so the two lines do not read as a contradiction."""
    clock = Clock()
    limit = TimeLimit(51, lambda group: group[0], clock=clock)
    assert limit.planned([[46]]) == [[46]]
    clock.now = 1                                          # 50 s left < 50.6
    assert not limit.fits([46])
    message = str(limit.stopped([[46]], 6, 396, "group", "runs/x"))
    assert message.endswith("no group fitted: the shortest left needs about 46 s by the "
                            "estimate (51 s with the 10% margin), and 50 s were left")
    clock.now = 60                                         # past the limit: none left
    assert str(limit.stopped([[46]], 6, 396, "group", "runs/x")).endswith(
        "and 0 s were left")


def test_the_library_call_stops_with_the_runs_left_and_resumes(tmp_path):
    import madbench
    from madbench.time_limit import TimeLimitReached
    kwargs = dict(tasks=["memorization", "compression"], protocol="smoke", run_dir=tmp_path,
                  overrides={"epochs": "1", "max_train": "64", "max_test": "32"})
    with pytest.raises(TimeLimitReached, match="2 of 2 runs left untrained"):
        madbench.evaluate("hyena", time_limit=1e-6, **kwargs)
    assert madbench.evaluate("hyena", time_limit=3600, **kwargs).task_scores.keys() == {
        "memorization", "compression"}
    with pytest.raises(UsageError, match="positive number of seconds"):
        madbench.evaluate("hyena", time_limit=float("nan"), **kwargs)
    with pytest.raises(UsageError, match="positive number of seconds"):
        madbench.evaluate("hyena", time_limit="500", **kwargs)     # a string: not seconds


def test_a_group_stored_by_another_process_does_not_teach_the_limit():
    """A worker that found its group stored returns at once (0 trained): before, that return
    counted as the group's training, the ratio fell to 0.003 and groups that cannot finish
    started."""
    from madbench.executors.dispatch import Dispatch
    limit = TimeLimit(500.0, lambda group: 100.0 * len(group), clock=lambda: 0.0)
    dispatch = Dispatch([["a"], ["b"] * 9], limit)
    first, _ = dispatch.next()
    dispatch.finished(first, 0.3, trained=0)
    assert limit.groups == 0 and limit.ratio() == 1.0
    assert dispatch.next() == (None, False)             # 900 s still does not fit 500 s
    dispatch.finished(first, 50.0, trained=1)           # a group trained: the limit learns
    assert limit.groups == 1 and limit.ratio() == 0.5
