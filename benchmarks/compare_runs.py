"""Run directories side by side, per run (task/setting, seed, lr, weight decay): test accuracy
in each, the largest per-run difference between neighbouring columns, and each directory's
best of sweep per setting, epochs trained and training seconds (per setting and seed its
group's wall time, ``madbench.sweep.wall_seconds``: a batched group's seconds once, not once
per run). The first directory is the reference column; a column's label is its directory's
name, or its path where two names are the same (e.g. runs/boards/mamba and
runs/boards-paper/mamba).

Usage: python benchmarks/compare_runs.py RUN_DIR [RUN_DIR ...]
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from madbench.errors import MadbenchError
from madbench.scoring import best_of_sweep
from madbench.store import load_records
from madbench.sweep import wall_seconds


def labels_of(dirs: list[str]) -> list[str]:
    """Each directory's name, or its path when another directory has the same name."""
    names = [Path(d).name for d in dirs]
    return [n if names.count(n) == 1 else d for n, d in zip(names, dirs)]


def total_wall_seconds(records) -> float:
    """The records' training wall time, summed over their groups (each setting and seed once)."""
    groups: dict[tuple, list[dict]] = {}
    for r in records:
        groups.setdefault((r["task"], r["setting"], int(r["seed"])), []).append(r)
    return sum(wall_seconds(g) for g in groups.values())


def main(dirs: list[str]) -> None:
    labels = labels_of(dirs)
    runs = [{(f"{r['task']}/{r['setting']}", int(r["seed"]), r["lr"], r["weight_decay"]): r
             for r in load_records([d])} for d in dirs]
    keys = sorted(set().union(*runs))
    print("| setting | seed | lr, wd | " + " | ".join(labels) + " |")
    print("| --- | ---: | --- | " + " | ".join("---:" for _ in labels) + " |")
    for k in keys:
        cells = [f"{side[k]['accuracy']:.4f}" if k in side else "-" for side in runs]
        print(f"| {k[0]} | {k[1]} | {k[2]:g}, {k[3]:g} | " + " | ".join(cells) + " |")
    columns = list(zip(labels, runs))
    for (a, ra), (b, rb) in zip(columns, columns[1:]):
        gaps = [abs(ra[k]["accuracy"] - rb[k]["accuracy"]) for k in keys if k in ra and k in rb]
        print(f"largest per-run |{a} - {b}|: " + (f"{max(gaps):.4f}" if gaps else "no common runs"))
    for label, side in zip(labels, runs):
        best = best_of_sweep(side.values())
        mean = sum(r["accuracy"] for r in best.values()) / max(len(best), 1)
        print(f"{label}: best of sweep "
              + ", ".join(f"{t}/{s} seed {seed} {r['accuracy']:.4f}"
                          for (t, s, seed), r in sorted(best.items()))
              + f"; mean over settings {mean:.4f}; epochs trained "
              f"{sum(r['epochs'] for r in side.values())}; training seconds "
              f"{total_wall_seconds(side.values()):.0f}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run_dirs", nargs="+", metavar="RUN_DIR")
    try:
        main(parser.parse_args().run_dirs)
    except MadbenchError as e:
        sys.exit(f"error: {e}")
