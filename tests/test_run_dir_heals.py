"""Issue #14, item 4: a run directory heals (unreadable or foreign record files are moved aside
and their runs retrained, stale temporary files removed) and two processes on one run directory
share its work (each run trained once, nothing lost or duplicated)."""
import os
import subprocess
import sys
import threading
import time

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from click.testing import CliRunner

from madbench import sweep
from madbench.architecture import resolve_architecture
from madbench.claims import claim, claim_all
from madbench.cli import main
from madbench.sweep import plan, run_sweep
from madbench.protocol import get_protocol
from madbench.store import QUARANTINE, ResultsStore, _HOST
from madbench.tasks import get_task

TINY = ["--preset", "smoke", "--set", "epochs=1", "--set", "lrs=0.001,0.0005", "--set",
        "max_train=32", "--set", "max_test=16", "--device", "cpu", "--engine", "plain",
        "--no-progress"]


def cli(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def dead_pid():
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_bad_record_files_are_moved_aside_and_their_runs_retrained(tmp_path):
    run_dir = tmp_path / "run"
    args = ["eval", "--arch", "mh-attention", "--tasks", "memorization", "--run-dir", run_dir,
            *TINY]
    assert cli(*args).exit_code == 0
    store = ResultsStore(run_dir)
    files = sorted(store.dir.glob("*.parquet"))
    assert len(files) == 2
    truncated, kept = files
    original = pq.read_table(truncated).to_pylist()[0]
    data = truncated.read_bytes()
    truncated.write_bytes(data[:len(data) // 2])                      # killed mid-copy
    (store.dir / ("e" * 24 + ".parquet")).write_bytes(b"")            # emptied
    (store.dir / ("f" * 24 + ".parquet")).write_bytes(b"junk " * 50)  # junk
    pq.write_table(pa.table({"x": [1]}), store.dir / ("a" * 24 + ".parquet"))   # foreign
    pq.write_table(pq.read_table(kept), store.dir / ("b" * 24 + ".parquet"))    # wrong key
    (store.dir / "notes.txt").write_text("not a record")
    stale = store.dir / f".tmp-{_HOST}-{dead_pid()}-abc.parquet"
    stale.write_bytes(b"half")
    live = store.dir / f".tmp-{_HOST}-{os.getpid()}-abc.parquet"        # a writer in flight
    live.write_bytes(b"half")

    report = cli("report", run_dir)                   # reading skips, moves nothing
    assert report.exit_code == 0, report.output
    assert "Traceback" not in report.output and "Warning:" in report.output
    result = cli(*args)                               # eval retrains the truncated run
    assert result.exit_code == 0, result.output
    names = sorted(p.name for p in store.dir.iterdir() if not p.name.startswith(".tmp"))
    assert names == sorted(p.name for p in files)     # exactly the two real records
    assert not stale.exists() and live.exists()
    moved = sorted(p.name for p in (run_dir / QUARANTINE).iterdir())
    assert moved == sorted([truncated.name, "e" * 24 + ".parquet", "f" * 24 + ".parquet",
                            "a" * 24 + ".parquet", "b" * 24 + ".parquet", "notes.txt"])
    again = pq.read_table(truncated).to_pylist()[0]
    assert again["run_key"] == original["run_key"]
    assert (again["accuracy"], again["loss"]) == (original["accuracy"], original["loss"])
    assert len(store.records()) == 2


def test_a_dry_run_changes_nothing_and_counts_an_unreadable_record_as_not_stored(tmp_path):
    """--dry-run moved corrupt records to quarantine (and removed stale temporary files); now
    the run directory is left byte for byte, the plan counts such a run as pending and says
    how many files eval would set aside."""
    run_dir = tmp_path / "run"
    args = ["eval", "--arch", "mh-attention", "--tasks", "memorization", "--run-dir", run_dir,
            *TINY]
    assert cli(*args).exit_code == 0
    store = ResultsStore(run_dir)
    truncated = sorted(store.dir.glob("*.parquet"))[0]
    truncated.write_bytes(truncated.read_bytes()[:100])
    (store.dir / "notes.txt").write_text("not a record")
    (store.dir / f".tmp-{_HOST}-{dead_pid()}-abc.parquet").write_bytes(b"half")

    def snapshot():
        return {p.relative_to(run_dir): p.read_bytes() if p.is_file() else None
                for p in run_dir.rglob("*")}

    before = snapshot()
    dry = cli(*args, "--dry-run")
    assert dry.exit_code == 0, dry.output
    assert snapshot() == before and not (run_dir / QUARANTINE).exists()
    assert "1 of 2 runs already stored" in dry.output and "training 1 run " in dry.output
    assert "2 files under" in dry.output and "would move them" in dry.output


def test_a_read_only_store_reads_around_a_bad_file(tmp_path, capsys):
    store = ResultsStore(tmp_path)
    (store.dir / ("c" * 24 + ".parquet")).write_bytes(b"junk")
    os.chmod(store.root, 0o555)
    try:
        if os.access(store.root, os.W_OK):
            pytest.skip("running as a user who can write anywhere")
        assert store.records() == []
        assert "skipped" in capsys.readouterr().err
    finally:
        os.chmod(store.root, 0o755)


def test_a_claim_is_exclusive_and_dies_with_its_holder(tmp_path):
    with claim(tmp_path, "g") as held:
        assert held
        with claim(tmp_path, "g", wait=False) as other:
            assert other is False
        with claim(tmp_path, "h", wait=False) as unrelated:
            assert unrelated
    holder = subprocess.Popen([sys.executable, "-c", (
        "import fcntl, os, sys, time\n"
        f"fd = os.open({str(tmp_path / '.claims' / 'g.lock')!r}, os.O_RDWR)\n"
        "fcntl.flock(fd, fcntl.LOCK_EX); print('held', flush=True); time.sleep(60)")],
        stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "held"
    with claim(tmp_path, "g", wait=False) as held:
        assert held is False
    holder.kill()                                     # kill -9: the kernel drops the lock
    holder.wait()
    with claim(tmp_path, "g", wait=False) as held:
        assert held



def test_a_group_holds_its_runs_claims_so_split_parts_train_in_parallel(tmp_path):
    """A group trained whole holds every run's claim; a part of a split group (the plain
    engine's single runs, handed to several workers) only its own. Before, every part of a
    group took the group's one claim, so the workers queued on it one after another."""
    from madbench.executors.payload import handout_groups
    from madbench.sweep import group_jobs
    ev = _tiny_evaluation(tmp_path / "r")
    ev.run_dir.mkdir(parents=True)
    group = group_jobs(ev.jobs)[0]
    parts = [p for p in handout_groups([group], ev.protocol, "plain", "cpu")]
    assert sorted(len(p) for p in parts) == [1, 1]              # split: one run each
    first, second = ([job.key for job in part] for part in parts)
    with claim_all(ev.run_dir, first):
        with claim_all(ev.run_dir, second, wait=False) as other_part:
            assert other_part                                 # in parallel
        with claim_all(ev.run_dir, first + second, wait=False) as whole:
            assert whole is False                             # a whole group waits for it
        with claim_all(ev.run_dir, second, wait=False) as after:
            assert after                                      # nothing left held by the try
    with claim_all(ev.run_dir, first + second):
        with claim_all(ev.run_dir, second, wait=False) as part:
            assert part is False

def twice_at_once(monkeypatch, module, name: str, pause: float, work):
    """Run ``work()`` in two threads at once, ``module.name`` (what trains) wrapped to note
    the calling thread and pause first so that the two overlap; returns the threads of the
    calls and what each ``work()`` returned."""
    trained, counts, errors = [], [], []
    real = getattr(module, name)

    def counting(*args, **kwargs):
        trained.append(threading.get_ident())
        time.sleep(pause)
        return real(*args, **kwargs)

    def one():
        try:
            counts.append(work())
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    monkeypatch.setattr(module, name, counting)
    threads = [threading.Thread(target=one) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    assert not errors, errors
    return trained, counts


def test_two_concurrent_sweeps_on_one_run_directory_train_each_run_once(tmp_path,
                                                                        monkeypatch):
    spec = resolve_architecture("mh-attention")
    protocol = get_protocol("smoke", {"epochs": "1", "lrs": "0.001,0.0005", "max_train": "32",
                                      "max_test": "16"})
    tasks = [get_task("memorization"), get_task("in-context-recall")]
    jobs = plan(spec, tasks, protocol, [0, 1])          # 4 groups of 2 runs
    trained, counts = twice_at_once(monkeypatch, sweep, "train", 0.05, lambda: run_sweep(
        spec, jobs, protocol, ResultsStore(tmp_path), "cpu", engine="plain"))
    assert len(trained) == len(jobs) == 8 == sum(counts)
    assert len(set(trained)) == 2                       # the work was shared
    records = ResultsStore(tmp_path).records()
    assert sorted(r["run_key"] for r in records) == sorted(j.key for j in jobs)


def test_two_concurrent_scaling_runs_on_one_run_directory_train_each_run_once(tmp_path,
                                                                              monkeypatch):
    """As for sweeps: two ``run_plans`` on one run directory split its runs (claims), every
    run stored once, the table beside them whole."""
    import numpy as np
    from madbench.scaling import runs
    from madbench.scaling.corpus import file_corpus
    from madbench.scaling.plan import Recipe, plan_runs
    from madbench.scaling.table import read_runs
    path = tmp_path / "noise.dat"
    path.write_bytes(bytes(np.random.default_rng(0).integers(0, 256, 20000, dtype=np.uint8)))
    corpus = file_corpus(path)
    plans = plan_runs("hyena", [1e9, 2e9], [(16, 1), (24, 1)],
                      Recipe(seq_len=16, batch_size=4, eval_tokens=256), corpus.sha256)
    assert len(plans) == 4
    trained, counts = twice_at_once(monkeypatch, runs, "train_run", 0.2, lambda: runs.run_plans(
        plans, corpus, ResultsStore(tmp_path / "r"), "cpu"))
    assert len(trained) == 4 == sum(counts) and len(set(trained)) == 2
    keys = sorted(p.key for p in plans)
    assert sorted(r["run_key"] for r in ResultsStore(tmp_path / "r").records()) == keys
    assert sorted(read_runs(tmp_path / "r" / "isoflop.parquet")[i]["run_key"]
                  for i in range(4)) == keys


def _tiny_evaluation(run_dir, **options):
    """The sweep of ``TINY`` (two tasks: two groups of two runs), as the library plans it."""
    from madbench.evaluator import prepare
    return prepare("mh-attention", tasks=["memorization", "in-context-recall"],
                   protocol="smoke", overrides={"epochs": "1", "lrs": "0.001,0.0005",
                                                "max_train": "32", "max_test": "16"},
                   run_dir=run_dir, device="cpu", engine="plain", **options)


def _hold_group(ev, group, release_after, store_it=False):
    """Hold ``group``'s claim from another thread (a lock of its own, as another process has),
    training and storing it there first when ``store_it``, until ``release_after`` seconds or
    the event returned is set."""
    release, taken = threading.Event(), threading.Event()
    ev.run_dir.mkdir(parents=True, exist_ok=True)      # as the other process made it

    def hold():
        with claim_all(ev.run_dir, [job.key for job in group]):
            taken.set()
            if store_it:          # once this process has trained the other group
                keys = [j.key for j in ev.jobs if j not in group]
                deadline = time.monotonic() + 120
                while (not all(map(ResultsStore(ev.run_dir).has, keys))
                       and time.monotonic() < deadline):
                    time.sleep(0.05)
                sweep.run_group(ev.spec, group, ev.protocol, ResultsStore(ev.run_dir),
                                torch.device("cpu"), "fp32", ev.checks, "plain")
            release.wait(release_after or 60)

    thread = threading.Thread(target=hold)
    thread.start()
    taken.wait()
    return release, thread


def test_eval_under_a_time_limit_waits_for_a_group_another_process_holds(tmp_path,
                                                                         monkeypatch):
    """Held past the limit: polled while it would fit, then the stop names the held runs
    (before, eval stopped at once and said nothing of them); released unstored within the
    limit: trained here."""
    from madbench import claims
    from madbench.sweep import group_jobs
    from madbench.time_limit import TimeLimit, TimeLimitReached
    monkeypatch.setattr(claims, "HELD_POLL_SECONDS", 0.05)
    ev = _tiny_evaluation(tmp_path / "held")
    first, second = group_jobs(ev.jobs)
    release, thread = _hold_group(ev, first, None)
    limit = TimeLimit(2.0, lambda group: 0.0)
    with pytest.raises(TimeLimitReached, match=r"2 of 4 runs left untrained .*; 2 of them held "
                       "by another process"):
        ev.run(time_limit=limit)
    assert not limit.fits(first) and limit.held == [first]    # polled while it would fit
    store = ResultsStore(ev.run_dir)
    assert [store.has(j.key) for j in first + second] == [False, False, True, True]
    release.set()
    thread.join()
    ev = _tiny_evaluation(tmp_path / "freed")
    _, thread = _hold_group(ev, first, 0.5)
    results = ev.run(time_limit=TimeLimit(3600, lambda group: 0.0))
    thread.join()
    assert set(results.task_scores) == {"memorization", "in-context-recall"}


def test_worker_processes_under_a_time_limit_hand_back_a_group_another_process_holds(
        tmp_path, monkeypatch):
    """Several worker processes (the plain engine hands out each run of a group alone): a
    held run is handed back and retried while it would fit, so the command stops near its limit and
    names the held runs (before, its worker waited for the holder however long it took);
    released unstored, it is trained."""
    from madbench import claims
    from madbench.executors import group_cost
    from madbench.executors.local import LocalExecutor
    from madbench.sweep import group_jobs
    from madbench.time_limit import TimeLimit, TimeLimitReached
    monkeypatch.setattr(claims, "HELD_POLL_SECONDS", 0.2)

    def pool():
        return LocalExecutor(devices=["cpu", "cpu"], threads_per_worker=1)

    ev = _tiny_evaluation(tmp_path / "held", executor=pool())
    # the group handed out first (longest first): held from the start, not left untried when
    # a loaded machine's first runs take most of the limit
    first = max(group_jobs(ev.jobs), key=lambda group: group_cost(group, ev.protocol))
    release, thread = _hold_group(ev, first, 90)
    started = time.monotonic()
    with pytest.raises(TimeLimitReached, match=r"2 of 4 runs left untrained .*; 2 of them held "
                       "by another process"):
        ev.run(time_limit=TimeLimit(10.0, lambda group: 0.0))
    assert time.monotonic() - started < 20                  # not the holder's 90 s
    release.set()
    thread.join()
    ev = _tiny_evaluation(tmp_path / "freed", executor=pool())
    _, thread = _hold_group(ev, first, 1.0)
    results = ev.run(time_limit=TimeLimit(3600, lambda group: 0.0))
    thread.join()
    assert set(results.task_scores) == {"memorization", "in-context-recall"}


def test_eval_counts_runs_another_process_stored_as_stored_not_trained(tmp_path):
    """The summary and the log line of a group that another process trained while this one
    waited for it (before: "trained 4 runs")."""
    from madbench.sweep import group_jobs
    run_dir = tmp_path / "shared"
    ev = _tiny_evaluation(run_dir)
    first, _ = group_jobs(ev.jobs)
    _, thread = _hold_group(ev, first, 0.1, store_it=True)
    args = ["eval", "--arch", "mh-attention", "--tasks", "memorization,in-context-recall",
            "--run-dir", run_dir, *[a for a in TINY if a != "--no-progress"]]
    result = cli(*args)
    thread.join()
    assert result.exit_code == 0, result.output
    assert "a run stored by another process" in result.output
    assert "trained 2 runs in" in result.output and "2 already stored" in result.output
    assert len(ResultsStore(run_dir).records()) == 4
