"""What the `quick` and `paper` protocols cost one architecture, from its stored `quick` runs.

Reads a run directory (``madbench eval --preset quick`` records, e.g. a board sweep's, whole or
partial; of several seeds, the lowest). A setting whose group is stored counts its measured
seconds (the six configurations side by side, or its parts' under ``--group-size``:
``madbench.sweep.wall_seconds``); a setting not stored is estimated from the measured time per
six-configuration step at its length (interpolated linearly in L between the measured lengths;
outside them, in proportion to L, and said so). `paper` scales each setting by its steps under
`paper` over its steps under `quick` (200 epochs against 20, or against the epochs `quick`'s
500-step floor sets). Evaluation, capture and the process's start are inside a group's seconds
or left out. With ``--flops`` it also prints, per measured setting, the
training FLOPs per second in the paper's convention (``madbench.scaling.flops``: 3 x forward,
attention's L^2 not halved by the causal mask; embedding lookups left out, the output head
counted). With ``--at-paper TASKS`` it also prints the cost of a mixed protocol: `quick`,
with those tasks trained at `paper`'s length (issue #20's proposal).

    python3 benchmarks/project_protocol.py runs/boards/mh-attention-swiglu
    python3 benchmarks/project_protocol.py RUN_DIR --at-paper compression,selective-copying
"""
from __future__ import annotations

import argparse
import collections
import sys

import numpy as np

from madbench.architecture import resolve_architecture
from madbench.errors import UsageError
from madbench.protocol import get_protocol
from madbench.scaling.flops import architecture_flops
from madbench.store import ResultsStore
from madbench.sweep import wall_seconds
from madbench.tasks import all_tasks, model_length

def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run_dir")
    ap.add_argument("--flops", action="store_true", help="per measured setting, TFLOP/s")
    ap.add_argument("--at-paper", metavar="TASKS", default="",
                    help="comma-separated tasks: also the cost of `quick` with these at `paper`'s "
                         "length")
    args = ap.parse_args()
    names = [t.name for t in all_tasks()]
    at_paper = [t for t in args.at_paper.split(",") if t]
    unknown = [t for t in at_paper if t not in names]
    if unknown:
        print(f"error: --at-paper: unknown task {unknown[0]!r} (tasks: {', '.join(names)})",
              file=sys.stderr)
        return 2
    quick, paper = get_protocol("quick"), get_protocol("paper")
    groups: dict[tuple[str, str], list[dict]] = collections.defaultdict(list)
    try:
        records = ResultsStore(args.run_dir, create=False).records()
    except UsageError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    records = [r for r in records if r["protocol_hash"] == quick.hash]
    seed = min((int(r["seed"]) for r in records), default=0)   # one seed's cost
    for r in records:
        if int(r["seed"]) == seed:
            groups[(r["task"], r["setting"])].append(r)
    if not groups:
        print(f"error: no quick-protocol records in {args.run_dir}", file=sys.stderr)
        return 2
    archs = {r["arch_name"] for g in groups.values() for r in g}
    if len(archs) != 1:
        print(f"error: records of several architectures ({', '.join(sorted(archs))})",
              file=sys.stderr)
        return 2
    arch = archs.pop()
    lengths_of = {(task.name, s.name): model_length(task, s)       # what the model reads
                  for task in all_tasks() for s in task.settings()}
    per_step = collections.defaultdict(list)       # L -> seconds per six-configuration step
    for key, g in groups.items():
        per_step[lengths_of[key]].append(wall_seconds(g) / g[0]["steps"])
    lengths = sorted(per_step)
    rates = [float(np.median(per_step[L])) for L in lengths]
    totals = collections.defaultdict(lambda: [0.0, 0.0, 0, 0])
    spec = resolve_architecture(arch) if args.flops else None
    outside: set[int] = set()
    for task in all_tasks():
        for setting in task.settings():
            p = setting.params
            L = lengths_of[(task.name, setting.name)]
            spe = -(-p["num_train_examples"] // quick.batch_size)
            q_steps, p_steps = spe * quick.epochs_for(spe), spe * paper.epochs_for(spe)
            g = groups.get((task.name, setting.name))
            if g:
                seconds = wall_seconds(g)
            elif lengths[0] <= L <= lengths[-1]:
                seconds = float(np.interp(L, lengths, rates)) * q_steps
            else:               # outside the measured lengths: proportional to L
                edge = 0 if L < lengths[0] else -1
                seconds = rates[edge] * L / lengths[edge] * q_steps
                if abs(L - lengths[edge]) > 0.02 * lengths[edge]:
                    outside.add(L)
            t = totals[task.name]
            t[0] += seconds
            t[1] += seconds * p_steps / q_steps
            t[2] += bool(g)
            t[3] += 1
            if g and spec is not None:
                f = architecture_flops(spec, L, p["vocab_size"], embeddings=False)
                per_seq = 3 * (f.forward + 2 * L * spec.dim * p["vocab_size"])
                flop = per_seq * p["num_train_examples"] * quick.epochs_for(spe) * len(g)
                print(f"{task.name} {setting.name} L {L}: {seconds:.1f} s, "
                      f"{flop / seconds / 1e12:.1f} TFLOP/s")
    print(f"\n{arch}: measured seconds per six-configuration step: "
          + ", ".join(f"L {L} {r * 1e3:.2f} ms" for L, r in zip(lengths, rates)))
    print("\n| task | settings measured | quick | paper (projected) |")
    print("| --- | ---: | ---: | ---: |")
    for name, (q, p, m, n) in totals.items():
        print(f"| {name} | {m} of {n} | {q / 60:.1f} min | {p / 3600:.2f} h |")
    q, p = sum(t[0] for t in totals.values()), sum(t[1] for t in totals.values())
    m, n = sum(t[2] for t in totals.values()), sum(t[3] for t in totals.values())
    print(f"| all | {m} of {n} | {q / 60:.1f} min | {p / 3600:.2f} h |")
    if at_paper:
        mixed = sum(t[1] if name in at_paper else t[0] for name, t in totals.items())
        print(f"\n`quick` with {', '.join(at_paper)} at `paper`'s length: {mixed / 60:.1f} min "
              f"({mixed / q:.1f} x `quick`, {mixed / p:.2f} of `paper`)")
    if outside:
        print(f"\nnot measured near L {', '.join(map(str, sorted(outside)))}: those settings are "
              "extrapolated in proportion to L from the nearest measured length")
    return 0


if __name__ == "__main__":
    sys.exit(main())
