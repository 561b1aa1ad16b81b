"""``madbench scaling run --time-limit``: runs that would not finish are not started, the
command exits 4 with the runs left and resumes; the step estimate against a run's own
measured training time; ``--no-progress``."""
import threading
import time

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from madbench import claims
from madbench.claims import claim
from madbench.cli import MadbenchGroup
from madbench.cli.scaling_cmd import scaling_group
from madbench.scaling.corpus import file_corpus
from madbench.scaling.estimate import plan_seconds
from madbench.scaling.plan import Recipe, plan_runs
from madbench.scaling.runs import run_plans, train_run
from madbench.scaling.table import read_runs
from madbench.store import ResultsStore
from madbench.time_limit import TimeLimit, TimeLimitReached

torch.set_num_threads(1)
cli = MadbenchGroup(name="madbench", commands={"scaling": scaling_group})


@pytest.fixture
def corpus_file(tmp_path):
    path = tmp_path / "noise.dat"           # 20,000 random bytes: a byte corpus
    path.write_bytes(bytes(np.random.default_rng(0).integers(0, 256, 20000, dtype=np.uint8)))
    return path


def _run(corpus_file, run_dir, *extra):
    return CliRunner().invoke(cli, ["scaling", "run", "--arch", "hyena", "--budgets", "1e9",
                                    "--sizes", "16x1,32x1", "--seq-len", "16",
                                    "--batch-size", "4", "--eval-tokens", "256",
                                    "--corpus", str(corpus_file), "--device", "cpu",
                                    "--run-dir", str(run_dir), *extra])


def _stored(run_dir) -> int:
    return len(list((run_dir / "records").glob("*.parquet")))


def test_the_command_stops_with_the_runs_left_and_the_same_command_resumes(corpus_file,
                                                                           tmp_path):
    run_dir = tmp_path / "runs"
    res = _run(corpus_file, run_dir, "--time-limit", "1h", "--dry-run")
    assert res.exit_code == 0, res.output
    assert "training 2 runs: about" in res.output and "from steps timed on 2 models" in res.output
    assert "by the estimate, all of them fit" in res.output
    assert not run_dir.exists()                          # a dry run writes nothing
    res = _run(corpus_file, run_dir, "--time-limit", "0.001")
    assert res.exit_code == 4, res.output
    last = res.output.strip().splitlines()[-1]
    assert last.startswith("stopped at the time limit (0.001 s): 2 of 2 runs left untrained")
    assert "the same command resumes; no run fitted" in last and "Error" not in res.output
    assert _stored(run_dir) == 0
    res = _run(corpus_file, run_dir, "--time-limit", "1h")
    assert res.exit_code == 0, res.output
    assert _stored(run_dir) == 2
    res = _run(corpus_file, run_dir, "--time-limit", "0.001")  # nothing left: nothing to stop
    assert res.exit_code == 0 and "0 run(s) trained, 2 already stored" in res.output


def test_a_dry_run_with_a_time_limit_leaves_an_unreadable_record_where_it_is(corpus_file,
                                                                              tmp_path):
    """Its estimate reads the run directory without healing it (before, the junk file was
    moved to quarantine/ by a dry run)."""
    run_dir = tmp_path / "runs"
    (run_dir / "records").mkdir(parents=True)
    junk = run_dir / "records" / "0123456789abcdef01234567.parquet"
    junk.write_text("not parquet")
    res = _run(corpus_file, run_dir, "--time-limit", "1h", "--dry-run")
    assert res.exit_code == 0, res.output
    assert "training 2 runs" in res.output
    assert junk.read_text() == "not parquet" and not (run_dir / "quarantine").exists()


@pytest.mark.parametrize("value", ["0", "-1", "soon", "inf"])
def test_a_bad_limit_is_one_usage_line_before_anything_runs(corpus_file, tmp_path, value):
    res = _run(corpus_file, tmp_path / "runs", "--time-limit", value)
    assert res.exit_code == 2
    assert res.output.strip().splitlines() == [
        f"Error: --time-limit takes a positive duration (500, 90s, 8m, 2.5h), not '{value}'"]
    assert not (tmp_path / "runs").exists()


def test_a_run_that_would_not_fit_is_skipped_and_a_later_one_trains(corpus_file, tmp_path):
    """By hand-set estimates: the middle run needs far more than the limit, the others
    nothing; the store then holds exactly the first and the last."""
    corpus = file_corpus(corpus_file)
    recipe = Recipe(seq_len=16, batch_size=4, eval_tokens=256)
    plans = plan_runs("hyena", [1e9], [(16, 1), (32, 1), (24, 1)], recipe, corpus.sha256)
    assert len(plans) == 3
    need = {plans[0].key: 0.0, plans[1].key: 1e9, plans[2].key: 0.0}
    limit = TimeLimit(3600, lambda plan: need[plan.key])
    store = ResultsStore(tmp_path / "runs")
    with pytest.raises(TimeLimitReached, match="1 of 3 runs left untrained"):
        run_plans(plans, corpus, store, "cpu", "fp32", time_limit=limit)
    assert [store.has(p.key) for p in plans] == [True, False, True]
    assert limit.groups == 2
    records = store.records()         # the limit learns training alone, validation apart
    assert limit.measured == pytest.approx(sum(r["training_seconds"] for r in records))
    assert all(0 < r["training_seconds"] < r["seconds"] for r in records)


@pytest.mark.parametrize("batch,budget", [(8, 3e10), (64, 1.2e11)])
def test_the_estimate_is_near_the_measured_training_time(corpus_file, batch, budget):
    """The probe's estimate of a run against the run itself (training plus a small
    validation), within a factor of three, at a batch the CPU probe takes whole and at one it
    cuts to 2,048 tokens and scales; the probe leaves the global generator as it was."""
    corpus = file_corpus(corpus_file)
    recipe = Recipe(seq_len=64, batch_size=batch, eval_tokens=64)
    (plan,) = plan_runs("hyena", [budget], [(64, 2)], recipe, corpus.sha256, min_steps=1)
    state = torch.random.get_rng_state()
    estimate = plan_seconds([plan], torch.device("cpu"), "fp32")[plan.key]
    assert torch.equal(state, torch.random.get_rng_state())
    train, val = (torch.from_numpy(a.astype(np.int64)) for a in corpus.splits())
    started = time.perf_counter()
    measured = train_run(plan, train, val, torch.device("cpu"))["seconds"]
    assert measured <= time.perf_counter() - started
    assert plan.steps >= 30 and measured / 3 <= estimate <= 3 * measured, (estimate, measured)


def test_no_progress_drops_the_line_per_run(corpus_file, tmp_path):
    logged = _run(corpus_file, tmp_path / "a")
    quiet = _run(corpus_file, tmp_path / "b", "--no-progress")
    assert logged.exit_code == quiet.exit_code == 0
    assert [line[:5] for line in logged.output.splitlines() if line.startswith("[")] == [
        "[1/2]", "[2/2]"]
    assert quiet.output.strip().splitlines() == [logged.output.strip().splitlines()[-1].replace(
        str(tmp_path / "a"), str(tmp_path / "b"))]


def _two_plans(corpus_file):
    corpus = file_corpus(corpus_file)
    plans = plan_runs("hyena", [1e9], [(16, 1), (24, 1)],
                      Recipe(seq_len=16, batch_size=4, eval_tokens=256), corpus.sha256)
    assert len(plans) == 2
    return corpus, plans


def _held(store, plan, release_after: float | None):
    """Hold ``plan``'s claim from another thread (a lock of its own, as another process has)
    until released (``release_after`` seconds, or by the caller: the event returned)."""
    release, taken = threading.Event(), threading.Event()

    def hold():
        with claim(store.root, f"scaling-{plan.key}"):
            taken.set()
            release.wait(release_after or 60)

    thread = threading.Thread(target=hold)
    thread.start()
    taken.wait()
    return release, thread


def test_a_run_another_process_holds_is_waited_for_while_time_is_left(corpus_file, tmp_path,
                                                                     monkeypatch):
    monkeypatch.setattr(claims, "HELD_POLL_SECONDS", 0.05)
    corpus, plans = _two_plans(corpus_file)
    store = ResultsStore(tmp_path / "held")           # held past the limit: named in the stop
    release, thread = _held(store, plans[0], None)
    limit = TimeLimit(1.5, lambda p: 0.0)
    with pytest.raises(TimeLimitReached, match=r"1 of 2 runs left untrained .*; 1 of them held "
                       "by another process"):
        run_plans(plans, corpus, store, "cpu", "fp32", time_limit=limit)
    assert not limit.fits(plans[0])                   # it waited while the run would fit
    assert [store.has(p.key) for p in plans] == [False, True]
    release.set()
    thread.join()
    store = ResultsStore(tmp_path / "freed")          # released unstored: trained here
    _, thread = _held(store, plans[0], 0.5)
    assert run_plans(plans, corpus, store, "cpu", "fp32",
                     time_limit=TimeLimit(3600, lambda p: 0.0)) == 2
    thread.join()
    assert all(store.has(p.key) for p in plans)


def test_a_scaling_run_directory_heals_before_planning(corpus_file, tmp_path):
    """A truncated record is moved aside and its run trained again; a temporary file whose
    writer is gone is removed (as for a sweep)."""
    from madbench.store import _HOST
    corpus, plans = _two_plans(corpus_file)
    store = ResultsStore(tmp_path / "r")
    run_plans(plans, corpus, store, "cpu", "fp32")
    broken = store.path(plans[0].key)
    broken.write_bytes(broken.read_bytes()[:100])
    stale = store.dir / f".tmp-{_HOST}-999999999-abc.parquet"     # no such process
    stale.write_bytes(b"half a table")
    assert run_plans(plans, corpus, store, "cpu", "fp32") == 1
    assert not stale.exists() and len(list((tmp_path / "r" / "quarantine").iterdir())) == 1
    assert len(read_runs(tmp_path / "r" / "isoflop.parquet")) == 2
