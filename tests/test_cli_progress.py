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
