"""benchmarks/fidelity.py's table logic: per setting only the newest training code's records
count, a sweep cut short (fewer configurations than its protocol's grid) is left out, and two
arms are compared on the seeds both have (best of the sweep per seed, then the mean)."""
import importlib.util
from argparse import Namespace
from pathlib import Path

import pytest
from helpers import eval_record

from madbench.store import ResultsStore

ROOT = Path(__file__).resolve().parents[1]
GRID = {"lrs": [1e-4, 1e-3], "weight_decays": [0.0]}       # two configurations


@pytest.fixture(autouse=True)
def keep_torch_threads():
    """``fidelity.worker`` sets torch's thread count for its process; here that process is
    pytest's, and later tests compare losses with other processes to the last digits."""
    import torch
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


def load_fidelity():
    spec = importlib.util.spec_from_file_location("fidelity", ROOT / "benchmarks" / "fidelity.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def store(path, rows, arch_hash="a1"):
    s = ResultsStore(path)
    for n, (version, created, seed, lr, accuracy) in enumerate(rows):
        s.append(eval_record(
            run_key=f"{path.name}{arch_hash}{n}", task="in-context-recall",
            setting="num_train_examples=800", seed=seed, lr=lr, weight_decay=0.0,
            accuracy=accuracy, loss=1.0 - accuracy, madbench_version=version,
            created_at=created, protocol=GRID, arch_hash=arch_hash))


def test_newest_version_wins_and_incomplete_sweeps_are_left_out(tmp_path):
    store(tmp_path / "arm", [("old", "2026-01-01", 0, 1e-3, 0.99),     # older code: ignored
                             ("old", "2026-01-01", 0, 1e-4, 0.98),
                             ("new", "2026-02-01", 0, 1e-3, 0.50),
                             ("new", "2026-02-01", 0, 1e-4, 0.70),     # seed 0's best
                             ("new", "2026-02-02", 1, 1e-3, 0.90)])    # seed 1: 1 of 2 configs
    best, notes = load_fidelity().best_per_setting(tmp_path / "arm")
    (only,) = best.values()
    assert list(only) == [0] and only[0]["madbench_version"] == "new"
    assert only[0]["accuracy"] == 0.70 and only[0]["lr"] == 1e-4
    assert len(notes) == 1 and "seed 1, 1 of 2 configurations" in notes[0]


def test_records_of_older_layer_code_do_not_mix_with_the_newest(tmp_path):
    """The same training code (run version) but the arm's layer code changed (a new
    ``arch_hash``): the older layer's sweep, though complete and better, does not count, and
    a sweep of the new layer is judged complete on its own records only."""
    store(tmp_path / "arm", [("v", "2026-01-01", 0, 1e-3, 0.99),
                             ("v", "2026-01-01", 0, 1e-4, 0.98)], arch_hash="old-layer")
    store(tmp_path / "arm", [("v", "2026-02-01", 0, 1e-3, 0.10)], arch_hash="new-layer")
    best, notes = load_fidelity().best_per_setting(tmp_path / "arm")
    assert best == {} and "seed 0, 1 of 2 configurations" in notes[0]
    ResultsStore(tmp_path / "arm").append(eval_record(
        run_key="n2", task="in-context-recall", setting="num_train_examples=800", seed=0,
        lr=1e-4, weight_decay=0.0, accuracy=0.2, loss=0.8, madbench_version="v",
        created_at="2026-02-02", protocol=GRID, arch_hash="new-layer"))
    best, _ = load_fidelity().best_per_setting(tmp_path / "arm")
    (only,) = best.values()
    assert only[0]["accuracy"] == 0.2 and only[0]["arch_hash"] == "new-layer"


def test_pairs_are_compared_on_common_seeds(tmp_path, monkeypatch):
    fidelity = load_fidelity()
    store(tmp_path / "mine", [("v", "2026-02-01", seed, lr, acc) for seed, lr, acc in
                              [(0, 1e-4, 0.6), (0, 1e-3, 0.2), (1, 1e-4, 0.8), (1, 1e-3, 0.1)]])
    store(tmp_path / "theirs", [("v", "2026-02-01", 0, 1e-4, 0.5), ("v", "2026-02-01", 0, 1e-3, 0.4)])
    monkeypatch.setattr(fidelity, "PAIRS", [("p", "mine", "theirs")])
    monkeypatch.setattr(fidelity, "panel_settings",
                        lambda which: [("in-context-recall", "num_train_examples=800")])
    text = fidelity.table(Namespace(run_dir=str(tmp_path), out=None))
    row = next(line for line in text.splitlines() if line.startswith("| in-context-recall"))
    assert "| 0.600 | 0.500 | +0.100 **x** |" in row   # seed 0 only: the reference has no seed 1


def test_missing_run_directory_gives_nothing(tmp_path):
    assert load_fidelity().best_per_setting(tmp_path / "absent") == ({}, [])


def test_a_sweep_that_would_end_after_the_deadline_is_not_started(tmp_path, monkeypatch, capsys):
    """A worker with a deadline skips a setting whose stored sweep took longer than the time
    left (a sweep cut by the deadline is lost whole), trains the others, and exits 3 (work
    left, as a deadline stop)."""
    import time
    import madbench.sweep
    fidelity = load_fidelity()
    icr = ("in-context-recall", "num_train_examples=800")
    comp = ("compression", "num_train_examples=800")
    monkeypatch.setattr(fidelity, "panel_settings", lambda which: [icr, comp])
    ResultsStore(tmp_path / "mh-attention").append(eval_record(
        run_key="old", task=icr[0], setting=icr[1], seconds=900.0, protocol_name="paper",
        engine="graphed"))
    trained = []
    monkeypatch.setattr(madbench.sweep, "run_sweep", lambda spec, group, *a: trained.append(
        (group[0].task.name, group[0].setting.name)) or len(group))
    with pytest.raises(SystemExit) as stop:
        fidelity.worker("mh-attention", "x", str(tmp_path), "paper", "skip", "0",
                        str(time.time() + 300))
    assert stop.value.code == 3 and trained == [comp]
    assert "not started, would end after the deadline: in-context-recall" in capsys.readouterr().out
    trained.clear()
    fidelity.worker("mh-attention", "x", str(tmp_path), "paper", "skip", "0", "")
    assert trained == [icr, comp]                    # no deadline: everything is started
    trained.clear()                                  # another preset's records do not count
    fidelity.worker("mh-attention", "x", str(tmp_path), "mad-lab", "skip", "0",
                    str(time.time() + 300))
    assert trained == [icr, comp]


def test_sweep_estimate_prefers_stored_times_then_this_workers():
    estimate = load_fidelity().sweep_estimate
    rows = [{"task": "t", "setting": "s", "seconds": 40.0}, {"task": "t", "setting": "s",
            "seconds": 55.0}, {"task": "t", "setting": "other", "seconds": 999.0}]
    rows = [{**r, "protocol_name": "paper", "engine": "graphed"} for r in rows]
    assert estimate(rows, "t", "s", "paper", 6, [10.0]) == 55.0
    assert estimate(rows, "t", "s", "quick", 6, [10.0]) == 10.0      # another preset's times
    assert estimate(rows, "t", "new", "paper", 6, [10.0, 30.0]) == 30.0
    assert estimate(rows, "t", "new", "paper", 6, []) is None
    plain = [{"task": "t", "setting": "s", "seconds": s, "engine": "plain",
              "protocol_name": "paper"} for s in (20.0, 25.0, 22.0)]
    assert estimate(plain, "t", "s", "paper", 2, []) == 50.0   # stored one run at a time


@pytest.mark.parametrize("argv,message", [
    (["--arms", "nope"], "unknown arm nope"),
    (["--arms", "mlp", "--task", "nope"], "nope"),
    (["--arms", "mlp", "--setting", "vocab_size=3"], "has no setting 'vocab_size=3'"),
    (["--arms", "mlp", "--epochs", "-1"], "--epochs must be 0"),
])
def test_repeat_refuses_bad_arguments_before_training(argv, message, capsys):
    """`fidelity.py repeat` checks every argument before it trains anything: one line, exit."""
    with pytest.raises(SystemExit) as exc:
        load_fidelity().main(["repeat", *argv])
    assert message in str(exc.value) and str(exc.value).startswith("error:")


@pytest.mark.parametrize("diffs,text,mark", [
    ([0.02, 0.05], "+0.035", "x"),                    # two seeds: the mean as it is
    ([0.01, -0.01], "+0.000", ""),
    ([0.01, 0.02, 0.03], "+0.020 ± 0.025", "?"),      # t(0.975, 2) = 4.3027; sd 0.01
    ([0.10, 0.11, 0.12], "+0.110 ± 0.025", "x"),      # all of the interval beyond 0.03
    ([0.0, 0.001, -0.001], "+0.000 ± 0.002", ""),
])
def test_paired_verdict_uses_a_t_interval_from_three_seeds(diffs, text, mark):
    assert load_fidelity().paired_verdict(diffs, 0.03) == (text, mark)


def test_a_pair_whose_interval_straddles_the_tolerance_is_undecided(tmp_path, monkeypatch):
    fidelity = load_fidelity()
    ours = [(0, 0.60), (1, 0.70), (2, 0.50)]
    theirs = [(0, 0.58), (1, 0.71), (2, 0.45)]         # diffs +0.02, -0.01, +0.05
    for arm, rows in (("mine", ours), ("theirs", theirs)):
        store(tmp_path / arm, [("v", "2026-02-01", seed, lr, acc if lr == 1e-4 else 0.0)
                               for seed, acc in rows for lr in (1e-4, 1e-3)])
    monkeypatch.setattr(fidelity, "PAIRS", [("p", "mine", "theirs")])
    monkeypatch.setattr(fidelity, "panel_settings",
                        lambda which: [("in-context-recall", "num_train_examples=800")])
    text = fidelity.table(Namespace(run_dir=str(tmp_path), out=None))
    half = 4.302653 * 0.03 / 3 ** 0.5                  # sd of (0.02, -0.01, 0.05) is 0.03
    assert f"| +0.020 ± {half:.3f} **?** |" in text
    assert text.splitlines()[2].endswith("| undecided |")


def test_reruns_pair_each_arm_with_itself_and_pool_both_runs(tmp_path, monkeypatch):
    """Two run directories, the same arms and seeds trained twice: each arm's second run
    against its first (paired over seeds), and the pair's difference with both runs averaged
    per seed and side; computed here by hand."""
    fidelity = load_fidelity()
    first = {"mine": [0.60, 0.70, 0.50], "theirs": [0.58, 0.71, 0.45]}
    again = {"mine": [0.60, 0.74, 0.44], "theirs": [0.60, 0.66, 0.45]}
    for root, values in (("first", first), ("again", again)):
        for arm, accs in values.items():
            store(tmp_path / root / arm, [("v", "2026-02-01", seed, lr, acc if lr == 1e-4 else 0.0)
                                          for seed, acc in enumerate(accs) for lr in (1e-4, 1e-3)])
    monkeypatch.setattr(fidelity, "PAIRS", [("p", "mine", "theirs")])
    monkeypatch.setattr(fidelity, "panel_settings",
                        lambda which: [("in-context-recall", "num_train_examples=800")])
    text = fidelity.reruns(Namespace(run_dir=str(tmp_path / "first"),
                                     again=str(tmp_path / "again"), out=None))
    t2 = 4.302653                                       # Student's t, 0.975, 2 d.o.f.

    def interval(values):
        mean = sum(values) / 3
        sd = (sum((v - mean) ** 2 for v in values) / 2) ** 0.5
        return f"{mean:+.3f} ± {t2 * sd / 3 ** 0.5:.3f}"
    mine = next(line for line in text.splitlines() if line.startswith("| mine |"))
    assert f"| 3 | 1 | {interval([0.0, 0.04, -0.06])} **?** | -0.060 |" in mine
    theirs = next(line for line in text.splitlines() if line.startswith("| theirs |"))
    assert "| 3 | 1 |" in theirs and theirs.endswith("| -0.050 |")
    pooled = [(a + b) / 2 - (c + d) / 2 for a, b, c, d in
              zip(first["mine"], again["mine"], first["theirs"], again["theirs"])]
    assert f"| p | in-context-recall | num_train_examples=800 | 3 | {interval(pooled)}" in text


def test_the_nudged_reference_moves_every_weight_by_one_ulp(monkeypatch):
    """The control arm's shim: every parameter moves to the next float32 towards +inf (checked
    with numpy's nextafter), and nothing else about the module changes."""
    import sys
    import types

    import numpy as np
    import torch
    fake = types.ModuleType("mad.model.layers.attention_gated_linear")
    fake.GatedLinearAttention = torch.nn.Linear       # stands in for mad-lab's layer
    for name in ("mad", "mad.model", "mad.model.layers"):
        monkeypatch.setitem(sys.modules, name, types.ModuleType(name))
    monkeypatch.setitem(sys.modules, fake.__name__, fake)
    spec = importlib.util.spec_from_file_location(
        "madlab_nudged", ROOT / "benchmarks" / "reference_shims" / "madlab_nudged.py")
    shim = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(shim)
    torch.manual_seed(0)
    plain = torch.nn.Linear(4, 3)
    torch.manual_seed(0)
    nudged = shim.GatedLinearAttention(4, 3)
    for a, b in zip(plain.parameters(), nudged.parameters()):
        expected = np.nextafter(a.detach().numpy(), np.float32(np.inf))
        assert np.array_equal(b.detach().numpy(), expected)
        assert not torch.equal(a, b)
