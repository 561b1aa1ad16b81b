"""benchmarks/project_protocol.py (what quick and paper cost, from stored quick groups) and
benchmarks/trace_kernels.py (a profiled step's kernels by launching operator), against sums
computed here; bad input stops them in one line."""
import gzip
import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import eval_record

from madbench.protocol import get_protocol
from madbench.store import ResultsStore
from madbench.tasks import get_task

ROOT = Path(__file__).resolve().parents[1]


def load(name):
    spec = importlib.util.spec_from_file_location(name, ROOT / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def record(task, setting, seconds, steps, lr):
    params = dict(get_task(task).setting(setting).params)
    return eval_record(run_key=f"{task}-{setting}-{lr}", arch_name="a", task=task,
                       setting=setting, setting_params=params, seconds=seconds, steps=steps,
                       protocol_hash=get_protocol("quick").hash, lr=lr)


def test_projection_sums_stored_groups_and_scales_them_to_paper(tmp_path, capsys, monkeypatch):
    store = ResultsStore(tmp_path / "run")
    # two quick groups of in-context recall: L 127 (2,000 steps, 20 s) and L 255 (2,000, 40 s)
    for lr in (1e-3, 1e-4):
        store.append(record("in-context-recall", "baseline", 20.0, 2000, lr))
        store.append(record("in-context-recall", "seq_len=256", 40.0, 2000, lr))
    monkeypatch.setattr(sys, "argv", ["project_protocol.py", str(tmp_path / "run")])
    assert load("project_protocol").main() == 0
    out = capsys.readouterr().out
    assert "L 127 10.00 ms, L 255 20.00 ms" in out          # seconds per six-config step
    # in-context recall: 11 settings. Stored: 20 + 40 s. The others by their length and steps
    # under quick (20 epochs, at least 500 steps): 10 ms per step at L 127, 20 at 255, linear
    # between, proportional to L beyond 255; paper scales each by its steps over quick's.
    quick, paper = get_protocol("quick"), get_protocol("paper")
    q_total = p_total = 0.0
    for s in get_task("in-context-recall").settings():
        L = s.params["seq_len"] - 1
        spe = -(-s.params["num_train_examples"] // 128)
        qs, ps = spe * quick.epochs_for(spe), spe * paper.epochs_for(spe)
        if s.name == "baseline":
            sec = 20.0
        elif s.name == "seq_len=256":
            sec = 40.0
        else:
            sec = (0.010 + (L - 127) / 128 * 0.010 if L <= 255 else 0.020 * L / 255) * qs
        q_total += sec
        p_total += sec * ps / qs
    row = next(line for line in out.splitlines() if line.startswith("| in-context-recall |"))
    assert row == (f"| in-context-recall | 2 of 11 | {q_total / 60:.1f} min | "
                   f"{p_total / 3600:.2f} h |")
    assert "extrapolated in proportion to L" in out


def test_at_paper_prices_quick_with_those_tasks_at_paper_s_length(tmp_path, capsys,
                                                                 monkeypatch):
    """``--at-paper TASKS``: every other task at `quick`'s cost, those at `paper`'s."""
    from madbench.tasks import all_tasks, model_length
    store = ResultsStore(tmp_path / "run")
    for lr in (1e-3, 1e-4):                      # 10 ms per six-config step at L 127
        store.append(record("in-context-recall", "baseline", 20.0, 2000, lr))
    monkeypatch.setattr(sys, "argv", ["project_protocol.py", str(tmp_path / "run"),
                                      "--at-paper", "compression,memorization"])
    assert load("project_protocol").main() == 0
    out = capsys.readouterr().out
    quick, paper = get_protocol("quick"), get_protocol("paper")
    q_total = p_total = mixed = 0.0
    for task in all_tasks():
        for s in task.settings():
            spe = -(-s.params["num_train_examples"] // 128)
            qs, ps = spe * quick.epochs_for(spe), spe * paper.epochs_for(spe)
            # one measured length: every other setting in proportion to L from it
            sec = 20.0 if (task.name, s.name) == ("in-context-recall", "baseline") \
                else 0.010 * model_length(task, s) / 127 * qs
            q_total += sec
            p_total += sec * ps / qs
            mixed += sec * ps / qs if task.name in ("compression", "memorization") else sec
    assert next(line for line in out.splitlines() if line.startswith("`quick` with")) == (
        f"`quick` with compression, memorization at `paper`'s length: {mixed / 60:.1f} min "
        f"({mixed / q_total:.1f} x `quick`, {mixed / p_total:.2f} of `paper`)")


def test_projection_refuses_a_directory_without_quick_records(tmp_path):
    empty = tmp_path / "run"
    ResultsStore(empty)
    for args in ([str(empty)], [str(tmp_path / "missing")],
                 [str(empty), "--at-paper", "compresion"]):
        r = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "project_protocol.py"),
                            *args], capture_output=True, text=True)
        assert r.returncode == 2 and r.stderr.count("\n") == 1 and "Traceback" not in r.stderr


def test_trace_kernels_attributes_each_kernel_to_the_innermost_enclosing_operator(tmp_path):
    ev = [
        {"ph": "X", "cat": "cpu_op", "name": "autograd: MulBackward0", "pid": 1, "tid": 2,
         "ts": 100, "dur": 50},
        {"ph": "X", "cat": "cpu_op", "name": "aten::empty", "pid": 1, "tid": 2, "ts": 101,
         "dur": 5},                                      # ended before the launch: a sibling
        {"ph": "X", "cat": "cpu_op", "name": "aten::mul", "pid": 1, "tid": 2, "ts": 110,
         "dur": 20, "args": {"Input Dims": [[4, 127], [4, 127]]}},
        {"ph": "X", "cat": "cuda_runtime", "name": "cudaLaunchKernel", "pid": 1, "tid": 2,
         "ts": 115, "dur": 3, "args": {"correlation": 7}},
        {"ph": "X", "cat": "kernel", "name": "mul_kernel", "pid": 0, "tid": 7, "ts": 200,
         "dur": 30, "args": {"correlation": 7}},
        {"ph": "X", "cat": "cpu_op", "name": "aten::add", "pid": 1, "tid": 3, "ts": 112,
         "dur": 50},                                     # another thread: never the parent
        {"ph": "X", "cat": "kernel", "name": "lost", "pid": 0, "tid": 7, "ts": 300, "dur": 10,
         "args": {"correlation": 99}},
    ]
    path = tmp_path / "t.json.gz"
    with gzip.open(path, "wt") as f:
        json.dump({"traceEvents": ev}, f)
    rows = load("trace_kernels").attribute(load("trace_kernels").load(str(path)))
    assert sorted(rows) == sorted([
        ("mul_kernel", "aten::mul [[4, 127], [4, 127]]", "autograd: MulBackward0", 30.0),
        ("lost", "?", "?", 10.0)])
    r = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "trace_kernels.py"),
                        str(tmp_path / "none.json")], capture_output=True, text=True)
    assert r.returncode == 2 and r.stderr.startswith("error:") and "Traceback" not in r.stderr
