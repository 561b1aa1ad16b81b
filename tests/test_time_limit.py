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


def test_a_dry_run_plans_by_the_estimate_on_each_device():
    limit = TimeLimit(100, lambda group: group[0], clock=Clock())
    # one device: 50 (55 s with margin), 40 (44: 99 in all), then 10 does not fit, 0.5 does
    assert limit.planned([[50], [40], [10], [0.5]]) == [[50], [40], [0.5]]
    # two devices: 50 and 40 side by side, then 10 after 40 (44 + 11), 80 nowhere
    assert limit.planned([[50], [40], [10], [80]], devices=2) == [[50], [40], [10]]


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
