"""Does one protocol rank architectures as another does, setting by setting? Issue #20's
question (does `quick` predict `paper`) where the second protocol's runs are a sample of
settings (`madbench eval --preset paper --settings baseline ...`), which no board entry can
hold (an entry's tasks are whole).

For each ARCH, FIRST/ARCH and SECOND/ARCH are its run directories (each one architecture's
code under one protocol and one run version: `benchmarks/set_aside_stale.py` moves older
records out). A (task, setting, seed) whose sweep is not complete on a side (not every (lr,
wd) of the protocol's grid trained: a part of a `--group-size` group, or a call stopped at its
deadline) is left out, and named: its best so far is only a lower bound; an architecture
that has no runs of a setting that others have is named too. Per (task, setting)
trained on both sides for at least one architecture: each architecture's best-of-sweep
accuracy (the mean over the seeds both sides hold), then across
the architectures the Spearman rank correlation, the mean absolute difference and the mean
difference (SECOND minus FIRST), by the rule of `madbench leaderboard agree`. Then per task,
over the settings that every architecture has on both sides, the same for the mean over
those settings (a sample's task score). Markdown, or `--json`.

`--first-grid LR:WD,...` scores FIRST by the best of those (lr, weight decay) pairs alone: a
protocol with a smaller grid, simulated from the runs of its own grid's superset (its runs are
the same runs), so FIRST and SECOND may then be the same directories (does a sweep without
weight decay rank as the whole grid does?).

    python3 benchmarks/agree_settings.py runs/boards runs/boards-paper hyena-swiglu mamba
    python3 benchmarks/agree_settings.py runs/boards-paper runs/boards-paper mamba hyena-swiglu \
        --first-grid 0.0001:0,0.0005:0,0.001:0
"""
from __future__ import annotations

import argparse
import json
import sys
from collections import defaultdict
from pathlib import Path

from madbench.errors import UsageError
from madbench.leaderboard.agree import agreement_row, row_line, scores_lines
from madbench.protocol import PRESETS
from madbench.records import of_kind
from madbench.scoring import best_of_sweep
from madbench.store import load_records


class Refused(Exception):
    """A one-line reason the comparison cannot be made (exit 2)."""


def side(directory: Path, only: set[tuple[float, float]] | None = None
         ) -> tuple[dict, dict[tuple[str, str], dict[int, float]], dict[tuple[str, str, int], str]]:
    """The identity of ``directory``'s one group of eval records (architecture hash, protocol,
    run version), its best-of-sweep accuracy per (task, setting) and seed whose sweep is
    complete, and the (task, setting, seed) cells left out as incomplete, each with how much
    of its sweep is stored ("k of n runs"). ``only``: a part of the protocol's grid that is
    the sweep instead (its runs alone count)."""
    if not directory.is_dir():
        raise Refused(f"{directory}: no such run directory")
    try:
        records = of_kind(load_records([directory]), "eval", directory)
    except UsageError as exc:                   # e.g. a directory of scaling records
        raise Refused(str(exc)) from None
    groups = {(r["arch_hash"], r["protocol_hash"], r["madbench_version"]) for r in records}
    if len(groups) != 1:
        found = "no eval records" if not groups else f"{len(groups)} groups (architecture " \
            "hash, protocol, run version): " + "; ".join(map(" ".join, sorted(groups)))
        raise Refused(f"{directory}: {found}; give one architecture's runs of one protocol "
                      "and one run version")
    (arch_hash, protocol, version), = groups
    grid = sweep_grid(records, protocol)
    if only is not None:
        if not only <= grid:
            raise Refused(f"{directory}: --first-grid names {grid_text(only - grid)}, not in "
                          f"its protocol's grid ({grid_text(grid)})")
        grid = only
        records = [r for r in records if (r["lr"], r["weight_decay"]) in only]
    trained: dict[tuple[str, str, int], set] = defaultdict(set)
    for r in records:
        trained[r["task"], r["setting"], int(r["seed"])].add((r["lr"], r["weight_decay"]))
    partial = {cell: len(configs & grid) for cell, configs in trained.items()
               if not grid <= configs}
    best: dict[tuple[str, str], dict[int, float]] = defaultdict(dict)
    for (task, setting, seed), run in best_of_sweep(records).items():
        if (task, setting, seed) not in partial:
            best[task, setting][seed] = run["accuracy"]
    return ({"arch_hash": arch_hash, "protocol": protocol, "version": version}, best,
            {cell: f"{n} of {len(grid)} runs" for cell, n in sorted(partial.items())})


def sweep_grid(records: list[dict], protocol_hash: str) -> set[tuple[float, float]]:
    """The (lr, weight decay) pairs of the records' protocol: the preset's grid when they name
    a preset of that hash, else every pair the records hold (an overridden protocol)."""
    preset = PRESETS.get(records[0].get("protocol_name", ""))
    if preset is not None and preset.hash == protocol_hash:
        return set(preset.configs())
    return {(r["lr"], r["weight_decay"]) for r in records}


def agreement(first: Path, second: Path, archs: list[str],
              first_grid: set[tuple[float, float]] | None = None) -> dict:
    """``{"settings": {"task/setting": row}, "tasks": {task: row}, "sides": {arch: ...},
    "left_out": ["ARCH under DIR: task/setting seed N: k of n runs"], "missing": ["ARCH:
    task/setting, not trained under DIR"]}`` (``missing``: an architecture absent from a
    setting that others have, other than by an incomplete sweep), each row as
    ``madbench.leaderboard.agree.agreement_row`` gives it (plus a task row's ``settings``).
    ``first_grid``: FIRST's sweep restricted to these (lr, wd) pairs (``side``'s ``only``)."""
    scores: dict[tuple[str, str], list[tuple[str, float, float]]] = defaultdict(list)
    sides, left_out, held = {}, [], {}
    for arch in archs:
        (a_id, a, a_part) = side(first / arch, first_grid)
        (b_id, b, b_part) = side(second / arch)
        held[arch] = set(a), set(b), {(t, s) for t, s, _ in [*a_part, *b_part]}
        for directory, part in ((first, a_part), (second, b_part)):
            left_out += [f"{arch} under {directory}: {t}/{s} seed {seed}: {runs}"
                         for (t, s, seed), runs in part.items()]
        if a_id["arch_hash"] != b_id["arch_hash"]:
            raise Refused(f"{arch}: the two directories hold different code of the architecture "
                          f"({a_id['arch_hash'][:8]} and {b_id['arch_hash'][:8]})")
        if a_id["protocol"] == b_id["protocol"] and first_grid is None:
            raise Refused(f"{arch}: both directories hold the same protocol "
                          f"({a_id['protocol'][:8]}): nothing to compare")
        sides[arch] = [a_id, b_id]
        for cell in sorted(set(a) & set(b)):
            seeds = sorted(set(a[cell]) & set(b[cell]))
            if seeds:
                scores[cell].append((arch, sum(a[cell][s] for s in seeds) / len(seeds),
                                     sum(b[cell][s] for s in seeds) / len(seeds)))
    settings = {f"{task}/{setting}": agreement_row(pairs)
                for (task, setting), pairs in sorted(scores.items())}
    tasks = {}
    for task in sorted({t for t, _ in scores}):
        shared = [c for c in sorted(scores) if c[0] == task and len(scores[c]) == len(archs)]
        if not shared:
            continue
        cells = [{name: (x, y) for name, x, y in scores[c]} for c in shared]
        means = [(arch, sum(c[arch][0] for c in cells) / len(cells),
                  sum(c[arch][1] for c in cells) / len(cells)) for arch in archs]
        tasks[task] = {**agreement_row(means), "settings": [s for _, s in shared]}
    missing = []
    for (task, setting), pairs in sorted(scores.items()):
        present = {name for name, _, _ in pairs}
        for arch in [a for a in archs if a not in present]:
            in_first, in_second, partial = held[arch]
            if (task, setting) in partial:
                continue                                    # named in left_out
            lacking = [str(d) for d, cells in ((first, in_first), (second, in_second))
                       if (task, setting) not in cells]
            missing.append(f"{arch}: {task}/{setting}, " + (
                f"not trained under {' or '.join(lacking)}" if lacking
                else "no seed trained on both sides"))
    label = str(first) if first_grid is None else f"{first} ({grid_text(first_grid)} only)"
    return {"first": label, "second": str(second), "settings": settings, "tasks": tasks,
            "sides": sides, "left_out": left_out, "missing": missing}


def grid_text(grid: set[tuple[float, float]]) -> str:
    """``LR:WD,...`` in grid order, as ``--first-grid`` takes it."""
    return ",".join(f"{lr:g}:{wd:g}" for lr, wd in sorted(grid))


def parse_grid(text: str) -> set[tuple[float, float]]:
    """``--first-grid``'s ``LR:WD,...`` as a set of (lr, weight decay) pairs."""
    pairs = set()
    for item in filter(None, (part.strip() for part in text.split(","))):
        try:
            lr, wd = (float(x) for x in item.split(":"))
        except ValueError:
            raise argparse.ArgumentTypeError(f"{item!r} is not LR:WD (e.g. 0.001:0)") from None
        pairs.add((lr, wd))
    if not pairs:
        raise argparse.ArgumentTypeError("give at least one LR:WD pair")
    return pairs


def table(result: dict) -> str:
    """Markdown: one row per setting, then one per task (its shared settings' mean), each
    setting's scores per architecture with their ranks, then the cells left out as incomplete
    and the architectures missing from a setting."""
    head = (f"| {{}} | architectures | Spearman | mean abs. difference | mean difference "
            f"(`{result['second']}` - `{result['first']}`) |")
    lines = [head.format("task/setting"), "| --- | ---: | ---: | ---: | ---: |"]
    lines += [row_line(name, r) for name, r in result["settings"].items()]
    lines += ["", head.format("task (mean over the settings every architecture has)"),
              "| --- | ---: | ---: | ---: | ---: |"]
    lines += [row_line(f"{task} ({len(r['settings'])})", r) for task, r in result["tasks"].items()]
    for name, row in result["settings"].items():
        lines += ["", f"{name}:", "", *scores_lines(row, result["first"], result["second"])]
    if result["left_out"]:
        lines += ["", "Left out, their sweeps not complete: " + "; ".join(result["left_out"]) + "."]
    if result["missing"]:
        lines += ["", "Missing from a setting others have: " + "; ".join(result["missing"]) + "."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("first", type=Path)
    parser.add_argument("second", type=Path)
    parser.add_argument("archs", nargs="+")
    parser.add_argument("--json", action="store_true", help="print JSON")
    parser.add_argument("--first-grid", type=parse_grid, metavar="LR:WD,...",
                        help="score FIRST by the best of these (lr, weight decay) pairs only")
    args = parser.parse_args(argv)
    try:
        result = agreement(args.first, args.second, list(dict.fromkeys(args.archs)),
                           args.first_grid)
    except Refused as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if not result["settings"]:
        out = result["left_out"]
        why = f" ({len(out)} left out, their sweeps not complete: {out[0]}" \
            f"{', ...' if len(out) > 1 else ''})" if out else ""
        print(f"error: no setting is trained whole on both sides{why}", file=sys.stderr)
        return 2
    print(json.dumps(result, indent=2) if args.json else table(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
