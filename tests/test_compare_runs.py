"""benchmarks/compare_runs.py: runs matched by task, setting, seed, lr and weight decay (two
tasks share setting names such as `baseline`), and two directories of the same name (one
architecture under two protocols) labelled by their paths, not merged."""
import subprocess
import sys
from pathlib import Path

from madbench.store import ResultsStore

from helpers import eval_record

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "compare_runs.py"


def test_runs_of_two_tasks_and_two_same_named_directories_stay_apart(tmp_path):
    # (task, accuracy under quick, under paper), all at setting "baseline", lr 1e-3
    runs = [("memorization", 0.5, 0.6), ("compression", 0.2, 0.9)]
    for side, col in (("quick", 1), ("paper", 2)):
        store = ResultsStore(tmp_path / side / "mamba")
        for row in runs:
            store.append(eval_record(run_key=f"{side}{row[0]}".ljust(24, "x"), task=row[0],
                                     setting="baseline", seed=0, lr=1e-3, accuracy=row[col],
                                     loss=1.0, epochs=2, seconds=1.5))
    a, b = str(tmp_path / "quick" / "mamba"), str(tmp_path / "paper" / "mamba")
    out = subprocess.run([sys.executable, str(SCRIPT), a, b], capture_output=True, text=True,
                         timeout=120).stdout.splitlines()
    assert out[0] == f"| setting | seed | lr, wd | {a} | {b} |"
    assert "| compression/baseline | 0 | 0.001, 0 | 0.2000 | 0.9000 |" in out
    assert "| memorization/baseline | 0 | 0.001, 0 | 0.5000 | 0.6000 |" in out
    assert f"largest per-run |{a} - {b}|: 0.7000" in out
    assert out[-1].startswith(f"{b}: best of sweep compression/baseline seed 0 0.9000, "
                              "memorization/baseline seed 0 0.6000; mean over settings 0.7500")


def test_a_directory_that_is_not_a_run_directory_is_one_line_and_help_works(tmp_path):
    (tmp_path / "empty").mkdir()
    bad = subprocess.run([sys.executable, str(SCRIPT), str(tmp_path / "empty")],
                         capture_output=True, text=True, timeout=120)
    assert bad.returncode == 1 and "Traceback" not in bad.stderr
    assert bad.stderr.strip().splitlines() == [
        f"error: {tmp_path / 'empty'}: not a madbench run directory (no records/ folder)"]
    helped = subprocess.run([sys.executable, str(SCRIPT), "--help"], capture_output=True,
                            text=True, timeout=120)
    assert helped.returncode == 0 and "RUN_DIR [RUN_DIR ...]" in helped.stdout


def test_training_seconds_count_a_batched_group_once(tmp_path):
    # compression: one batched group of two runs, each record carrying the group's 10 s;
    # memorization: two plain runs of 3 s and 4 s. Training wall time: 10 + 3 + 4 = 17 s.
    store = ResultsStore(tmp_path / "a")
    rows = [("compression", 1e-3, "batched", 10.0), ("compression", 5e-4, "batched", 10.0),
            ("memorization", 1e-3, "plain", 3.0), ("memorization", 5e-4, "plain", 4.0)]
    for i, (task, lr, engine, seconds) in enumerate(rows):
        store.append(eval_record(run_key=f"run{i}".ljust(24, "x"), task=task, setting="baseline",
                                 seed=0, lr=lr, accuracy=0.5, loss=1.0, epochs=2,
                                 engine=engine, seconds=seconds))
    out = subprocess.run([sys.executable, str(SCRIPT), str(tmp_path / "a")], capture_output=True,
                         text=True, timeout=120).stdout.splitlines()
    assert out[-1].endswith("; epochs trained 8; training seconds 17")
