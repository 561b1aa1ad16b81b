"""The progress bar in a narrow terminal: the counts and times keep their place; only the run's
description is cut (with an ellipsis)."""
import io

import pytest
from rich.console import Console

from madbench.cli.progress import RunProgress


@pytest.mark.parametrize("width", [50, 80, 120])
def test_the_counts_survive_a_narrow_terminal(width):
    buf = io.StringIO()
    console = Console(file=buf, width=width, force_terminal=True, color_system=None)
    progress = RunProgress(True, console=console)
    progress.start(6, 2)
    progress.describe("selective-copying num_train_examples=800 lr=0.001 wd=0.1 " * 3)
    console.print(progress.progress.make_tasks_table(progress.progress.tasks))
    line = buf.getvalue().rstrip("\n").splitlines()[-1]
    assert len(line) <= width
    assert " 2/6 " in line and "ETA" in line and line.startswith("runs ")
    assert line.endswith("…")


def test_the_bar_writes_hyper_parameters_as_the_log_does():
    from madbench.cli.eval_cmd import _Progress
    progress = _Progress(enabled=True)
    progress("start", {"total": 2, "done": 0})
    progress("run", {"task": "memorization", "setting": "baseline", "lr": 0.001, "wd": 0.0,
                     "seed": 0})
    assert progress.current == "memorization baseline lr=1e-3 wd=0 seed=0"
    progress("run", {"task": "memorization", "setting": "baseline", "lr": "sweep",
                     "wd": "6 configs", "seed": 0})
    assert "lr=sweep wd=6 configs" in progress.current


def test_nothing_to_train_reads_well_for_one_run_and_for_many():
    from madbench.cli.progress import all_stored
    assert all_stored(1, "runs/x") == "nothing to train: the 1 run is stored in runs/x"
    assert all_stored(1234, "d") == "nothing to train: all 1,234 runs are stored in d"
