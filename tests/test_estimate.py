"""The sweep's time estimate: the probe times the engine the sweep will use, at up to three of
the pending lengths (shortest, middle, longest), by the difference of two step counts (so
fixed costs drop out), per run, and divides by distinct devices, not by workers sharing
one."""
import math

import pytest

from madbench import estimate as est
from madbench.architecture import resolve_architecture
from madbench.evaluator import select_tasks
from madbench.loop import RunResult
from madbench.protocol import get_protocol
from madbench.sweep import plan


def result(seconds: float) -> RunResult:
    return RunResult(1.0, 1.0, 0.0, 0.0, False, 1, 1, seconds, 1)


def fake_engine(fixed: float, per_step: float, calls: list):
    """A trainer whose loop takes ``fixed + per_step * steps * configurations`` seconds."""
    def trainer(make_model, train_data, test_data, num_classes, configs, protocol, seed,
                precision):
        steps = -(-train_data[0].shape[0] // protocol.batch_size)
        calls.append((len(configs), steps))
        return [result(fixed + per_step * steps * len(configs)) for _ in configs]
    return trainer


@pytest.fixture
def sweep():
    spec = resolve_architecture("mh-attention")
    protocol = get_protocol("smoke", {"lrs": "1e-3,5e-4,1e-4", "weight_decays": "0,0.1"})
    return spec, protocol, plan(spec, select_tasks("memorization"), protocol, [0], "baseline")


def test_the_probe_times_the_batched_group_by_difference(sweep, monkeypatch):
    spec, protocol, jobs = sweep
    calls = []
    monkeypatch.setattr("madbench.batched.train_batched", fake_engine(0.3, 0.02, calls))
    import torch
    seconds = est.step_seconds(spec, jobs, protocol, torch.device("cpu"), "fp32", "batched")
    # six configurations at once: 0.02 s per configuration-step, whatever the fixed 0.3 s
    assert seconds == pytest.approx(0.02 * protocol.batch_size / min(
        protocol.batch_size, est.PROBE_TOKENS // jobs[0].effective.seq_len))
    assert {c for c, _ in calls} == {6} and sorted({s for _, s in calls}) == [1, 1 + est.PROBE_STEPS]


def test_an_engine_that_cannot_train_the_probe_is_timed_plain(sweep, monkeypatch):
    spec, protocol, jobs = sweep

    def refuse(*args, **kwargs):
        raise RuntimeError("no batching rule")
    plain = []

    def fake_train(model, train_data, test_data, num_classes, lr, wd, protocol, seed,
                   precision):
        steps = -(-train_data[0].shape[0] // protocol.batch_size)
        plain.append(steps)
        return result(1.0 + 0.05 * steps)
    monkeypatch.setattr("madbench.batched.train_batched", refuse)
    monkeypatch.setattr(est, "train", fake_train)
    import torch
    seconds = est.step_seconds(spec, jobs, protocol, torch.device("cpu"), "fp32", "batched")
    scale = protocol.batch_size / min(protocol.batch_size,
                                      est.PROBE_TOKENS // jobs[0].effective.seq_len)
    assert seconds == pytest.approx(0.05 * scale) and plain     # one run at a time: not / 6


def test_workers_sharing_a_device_do_not_divide_the_time(sweep, monkeypatch):
    spec, protocol, jobs = sweep
    monkeypatch.setattr(est, "step_seconds", lambda *a, **k: 0.01)
    one = est.estimate_sweep(spec, jobs, jobs, protocol, "cpu", "fp32", workers=1, devices=1)
    shared = est.estimate_sweep(spec, jobs, jobs, protocol, "cpu", "fp32", workers=4, devices=1)
    two = est.estimate_sweep(spec, jobs, jobs, protocol, "cpu", "fp32", workers=4, devices=2)
    tokens = sum(est.run_tokens(j, protocol) for j in jobs)
    assert one.seconds == pytest.approx(tokens * 0.01 / (protocol.batch_size *
                                                         jobs[0].effective.seq_len))
    assert shared.seconds == one.seconds and two.seconds == pytest.approx(one.seconds / 2)


@pytest.mark.parametrize("task,length", [("in-context-recall", 127), ("memorization", 32)])
def test_the_probe_trains_at_the_length_the_model_reads(task, length, monkeypatch):
    """In-context and noisy recall give the model seq_len - 1 tokens (127 of 128): the probe
    trains at that length, as the sweep will (an odd length is slower for some kernels), and
    the estimate names it."""
    import torch
    from madbench.tasks import generate, get_task
    spec = resolve_architecture("mh-attention")
    protocol = get_protocol("smoke")
    jobs = plan(spec, select_tasks(task), protocol, [0], "baseline")
    data = generate(get_task(task), "baseline", "test", 0)       # what training reads
    assert data.inputs.shape[1] == length
    lengths = []

    def trainer(make_model, train_data, *args):
        lengths.append(train_data[0].shape[1])
        return [result(0.1 * train_data[0].shape[0]) for _ in args[2]]
    monkeypatch.setattr("madbench.batched.train_batched", trainer)
    est.step_seconds(spec, jobs, protocol, torch.device("cpu"), "fp32", "batched")
    assert lengths and set(lengths) == {length}
    monkeypatch.setattr(est, "step_seconds", lambda *a, **k: 0.01)
    estimate = est.estimate_sweep(spec, jobs, jobs, protocol, "cpu", "fp32")
    assert estimate.probes == ((length, 0.01),)


def test_runs_of_several_lengths_are_timed_at_three_lengths_and_linear_between(monkeypatch):
    """A step is not linear in tokens (fixed costs dominate short sequences): the pending
    runs' shortest, middle and longest lengths are probed and each run's steps are charged the
    broken line through them, computed here by hand from the settings' sizes; the plan names
    the probes."""
    from madbench.cli.eval_cmd import describe_plan
    spec = resolve_architecture("mh-attention")
    protocol = get_protocol("quick")
    jobs = plan(spec, select_tasks("compression"), protocol, [0],
                ["seq_len=64", "baseline", "seq_len=256", "seq_len=128"])
    probed = []
    measured = {32: 0.004, 64: 0.5, 128: 0.010, 256: 0.019}   # 64 is never probed

    def step_seconds(spec, group, protocol, device, precision, engine):
        probed.append(group[0].effective.seq_len)
        return measured[group[0].effective.seq_len]
    monkeypatch.setattr(est, "step_seconds", step_seconds)
    estimate = est.estimate_sweep(spec, jobs, jobs, protocol, "cpu", "fp32")
    assert sorted(probed) == [32, 128, 256]
    assert estimate.probes == ((32, 0.004), (128, 0.010), (256, 0.019))
    per_step = {32: 0.004, 64: 0.004 + (0.010 - 0.004) * (64 - 32) / (128 - 32),
                128: 0.010, 256: 0.019}
    expected = 0.0
    for job in jobs:
        eff = job.effective
        per_epoch = math.ceil(eff.num_train / protocol.batch_size)
        steps = per_epoch * max(protocol.epochs, math.ceil(protocol.min_steps / per_epoch))
        expected += steps * per_step[eff.seq_len]
    assert estimate.seconds == pytest.approx(expected)
    line = describe_plan(estimate, protocol, "runs/x", "local", jobs)[0]
    assert ("0.004 s per run-step of 128 x 32 tokens, 0.01 s at 128, 0.019 s at 256 "
            "(linear in length between)") in line


def test_a_convergence_stop_is_flagged_where_evaluation_outweighs_an_epoch():
    """early_stop_accuracy evaluates the test set every epoch: flagged on the settings whose
    test set has at least as many batches as an epoch has steps (memorization under paper:
    256 training sequences, 2 steps; 1,280 test sequences, 10 batches), not on in-context
    recall (100 steps against 10 batches); nothing without the stop, and the plan says so."""
    from madbench.cli.eval_cmd import describe_plan
    spec = resolve_architecture("mh-attention")
    stop = get_protocol("paper", {"early_stop_accuracy": "0.99"})
    jobs = plan(spec, select_tasks("memorization,in-context-recall"), stop, [0], "baseline")
    assert est.costly_stops(jobs, stop) == ["memorization baseline"]
    assert est.costly_stops(jobs, get_protocol("paper")) == []
    estimate = est.SweepEstimate(len(jobs), 0, 10, 1.0, ((32, 0.1),), 128, "cuda:0")
    lines = describe_plan(estimate, stop, "runs/x", "local", jobs)
    assert lines[-1].startswith("Note: early_stop_accuracy evaluates every epoch; on 1 of the "
                                "pending settings (memorization baseline)")
    assert not any(l.startswith("Note:") for l in describe_plan(estimate, get_protocol("paper"),
                                                               "runs/x", "local", jobs))


def test_a_groups_seconds_are_its_runs_steps_at_the_interpolated_step_time(sweep):
    """By hand: the smoke memorization baseline, 6 runs of epochs x ceil(examples / batch)
    steps each, at the step time read off the line through (16, 0.1 s) and (64, 0.4 s) at the
    length the model reads (memorization reads every token)."""
    spec, protocol, jobs = sweep
    setting = jobs[0].effective                    # as trained: the protocol's caps applied
    per_epoch = -(-setting.num_train // protocol.batch_size)
    steps = per_epoch * protocol.epochs_for(per_epoch)
    per_step = 0.1 + (setting.seq_len - 16) * (0.4 - 0.1) / (64 - 16)
    assert est.group_seconds(jobs, protocol, ((16, 0.1), (64, 0.4))) == pytest.approx(
        6 * steps * per_step)
