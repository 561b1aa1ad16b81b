"""The runs progress bar on stderr: runs done/total with elapsed time and ETA, and a line for
the run in flight. Commands subclass it and map their events to ``describe``/``advance``."""
from __future__ import annotations


class RunProgress:
    def __init__(self, enabled: bool = True):
        from rich.console import Console
        from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn,
                                   TimeElapsedColumn, TimeRemainingColumn)
        self.console = Console(stderr=True)
        self.progress = Progress(TextColumn("[bold]runs"), BarColumn(), MofNCompleteColumn(),
                                 TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(),
                                 TextColumn("{task.fields[current]}"), console=self.console,
                                 disable=not enabled)
        self.task = None
        self.current = ""

    def __enter__(self):
        self.progress.__enter__()
        return self

    def __exit__(self, *exc):
        return self.progress.__exit__(*exc)

    def start(self, total: int, done: int) -> None:
        self.task = self.progress.add_task("runs", total=total, completed=done, current="")

    def describe(self, text: str) -> None:
        self.progress.update(self.task, current=text)

    def advance(self) -> None:
        self.progress.advance(self.task)
