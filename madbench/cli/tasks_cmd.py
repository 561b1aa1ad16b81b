"""``madbench tasks``: list the task settings, show decoded examples, export generated data."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable, Mapping

import click
import numpy as np
from tabulate import tabulate

from .preflight import writable_file
from ..tasks import (IGNORE, SPLITS, all_tasks, generate, get_task, suite_hash,
                     vocabulary_layout)

#: short labels of single special tokens in ``tasks show``
SPECIAL_LABELS = {"pad": "_", "blank": ".", "insert": "?", "copy": "!", "compression": "#"}


@click.group("tasks")
def tasks_group() -> None:
    """The MAD tasks: list their settings, show decoded examples, export data."""


@tasks_group.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def list_command(as_json: bool) -> None:
    """Every setting of every registered task: sizes and content hash."""
    tasks = all_tasks()
    rows = [{"task": t.name, "setting": s.name, "seq_len": s.seq_len,
             "vocab_size": s.vocab_size, "num_train": s.num_train, "num_test": s.num_test,
             "hash": s.hash} for t in tasks for s in t.settings()]
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    click.echo(tabulate([list(r.values()) for r in rows],
                        headers=["task", "setting", "seq_len", "vocab", "train", "test", "hash"]))
    click.echo(f"\n{len(tasks)} tasks, {len(rows)} settings, suite hash {suite_hash(tasks)}")


def token_labels(layout: Mapping[str, Any]) -> Callable[[int], str]:
    """A function naming token ids by the vocabulary layout: ``k3`` is the key with index 3 in
    its range, ``_`` the pad token and so on; ids outside the layout print as numbers."""
    names: dict[int, str] = {}
    for kind, where in layout.items():
        if isinstance(where, (list, tuple)):
            for token in range(int(where[0]), int(where[1])):
                names[token] = f"{kind[0]}{token - int(where[0])}"
        else:
            names[int(where)] = SPECIAL_LABELS.get(kind, f"<{kind}>")
    return lambda token: names.get(int(token), str(int(token)))


def describe_layout(layout: Mapping[str, Any]) -> str:
    parts = []
    for kind, where in layout.items():
        if isinstance(where, (list, tuple)):
            parts.append(f"{kind} {kind[0]}0..{kind[0]}{where[1] - where[0] - 1} "
                         f"(ids {where[0]}-{where[1] - 1})")
        else:
            parts.append(f"{kind} {SPECIAL_LABELS.get(kind, f'<{kind}>')} (id {where})")
    return "; ".join(parts)


@tasks_group.command("show")
@click.argument("task_name", metavar="TASK")
@click.option("--setting", "setting_name", default="baseline", show_default=True,
              help="Setting name: baseline or <variable>=<value>.")
@click.option("-n", "count", type=click.IntRange(min=1), default=3, show_default=True,
              help="Number of examples.")
@click.option("--split", type=click.Choice(SPLITS), default="train", show_default=True)
@click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True)
def show_command(task_name: str, setting_name: str, count: int, split: str, seed: int) -> None:
    """Print decoded examples of TASK; scored positions read input→target (highlighted)."""
    from rich.console import Console
    from rich.text import Text

    task = get_task(task_name)
    setting = task.setting(setting_name)
    data = generate(task, setting, split, seed)
    layout = vocabulary_layout(task, setting)
    label = token_labels(layout)
    console = Console(highlight=False)
    console.soft_wrap = not console.is_terminal     # piped: whole lines, not cut at 80 columns
    console.print(Text(f"{task.name} / {setting.name} / {split} split, seed {seed}: "
                       f"{len(data.inputs)} sequences of {data.inputs.shape[1]} tokens",
                       style="bold"))
    console.print(Text(f"tokens: {describe_layout(layout)}"))
    console.print(Text("scored positions are shown as input→target", style="dim"))
    for i in range(min(count, len(data.inputs))):
        scored = int((data.targets[i] != IGNORE).sum())
        line = Text(f"[{i}] {scored} scored: ", style="bold")
        for x, y in zip(data.inputs[i], data.targets[i]):
            if y == IGNORE:
                line.append(label(x))
            else:
                line.append(f"{label(x)}→{label(y)}", style="bold green")
            line.append(" ")
        console.print(line)


@tasks_group.command("export")
@click.argument("task_name", metavar="TASK")
@click.option("--setting", "setting_name", required=True,
              help="Setting name: baseline or <variable>=<value>.")
@click.option("--split", type=click.Choice(SPLITS), required=True)
@click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True)
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), required=True,
              help="Output .npz file.")
def export_command(task_name: str, setting_name: str, split: str, seed: int, out: Path) -> None:
    """Write one split of TASK as FILE.npz: arrays inputs, targets and a JSON string meta."""
    task = get_task(task_name)
    setting = task.setting(setting_name)
    writable_file(out, "--out")
    data = generate(task, setting, split, seed)
    meta = {"task": task.name, "version": task.version, "setting": setting.name,
            "split": split, "seed": seed, "hash": setting.hash, "data_hash": data.hash,
            "params": dict(setting.params), "model": task.model,
            "vocabulary": vocabulary_layout(task, setting),
            "shape": list(data.inputs.shape), "ignore_index": IGNORE}
    with open(out, "wb") as f:   # a file object: numpy would append .npz to a bare name
        np.savez_compressed(f, inputs=data.inputs, targets=data.targets,
                            meta=np.array(json.dumps(meta)))
    click.echo(f"wrote {out}: {data.inputs.shape[0]} sequences of {data.inputs.shape[1]} "
               f"tokens ({task.name} / {setting.name} / {split}, seed {seed})")


COMMANDS = [tasks_group]
