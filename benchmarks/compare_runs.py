"""Run directories side by side, per run (setting, lr, weight decay): test accuracy in each,
the largest per-run difference between neighbouring columns, and each directory's best of
sweep per setting, epochs trained and summed run seconds. The first directory is the
reference column; a column's label is its directory's name.

Usage: python benchmarks/compare_runs.py RUN_DIR [RUN_DIR ...]
"""
from __future__ import annotations

import sys
from pathlib import Path

from madbench.store import load_records


def main(dirs: list[str]) -> None:
    labels = [Path(d).name for d in dirs]
    runs = {label: {(r["setting"], r["lr"], r["weight_decay"]): r for r in load_records([d])}
            for label, d in zip(labels, dirs)}
    keys = sorted(set().union(*runs.values()))
    print("| setting | lr, wd | " + " | ".join(labels) + " |")
    print("| --- | --- | " + " | ".join("---:" for _ in labels) + " |")
    for k in keys:
        cells = [f"{runs[l][k]['accuracy']:.4f}" if k in runs[l] else "-" for l in labels]
        print(f"| {k[0]} | {k[1]:g}, {k[2]:g} | " + " | ".join(cells) + " |")
    for a, b in zip(labels, labels[1:]):
        gaps = [abs(runs[a][k]["accuracy"] - runs[b][k]["accuracy"])
                for k in keys if k in runs[a] and k in runs[b]]
        print(f"largest per-run |{a} - {b}|: " + (f"{max(gaps):.4f}" if gaps else "no common runs"))
    for label in labels:
        best: dict[str, float] = {}
        for (setting, _, _), r in runs[label].items():
            best[setting] = max(best.get(setting, 0.0), r["accuracy"])
        mean = sum(best.values()) / max(len(best), 1)
        print(f"{label}: best of sweep "
              + ", ".join(f"{s} {v:.4f}" for s, v in sorted(best.items()))
              + f"; mean over settings {mean:.4f}; epochs trained "
              f"{sum(r['epochs'] for r in runs[label].values())}; summed run seconds "
              f"{sum(r['seconds'] for r in runs[label].values()):.0f}")


if __name__ == "__main__":
    if len(sys.argv) < 2:
        sys.exit(__doc__.strip().splitlines()[-1])
    main(sys.argv[1:])
