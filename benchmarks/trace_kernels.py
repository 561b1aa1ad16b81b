"""Which operator launched each GPU kernel of a profiled step, and on what shapes.

Reads a Chrome trace written by ``profile_step.py --trace DIR`` (``DIR/ARCH.json.gz``: CPU
operators with their input shapes, CUDA runtime launches, kernels) and links each kernel to
its launch (the trace's ``correlation`` id), the launch to the innermost operator that encloses
it on the same thread, and that operator to the outermost one (the autograd node of a backward
kernel, or the forward call). Prints the operators by summed kernel time per step:

    python3 benchmarks/trace_kernels.py traces/hyena-swiglu.json.gz --steps 10 --rows 30
"""
from __future__ import annotations

import argparse
import collections
import gzip
import json
import sys


def load(path: str) -> list[dict]:
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rt") as f:
        data = json.load(f)
    return data["traceEvents"] if isinstance(data, dict) else data


def attribute(events: list[dict]) -> list[tuple[str, str, str, float]]:
    """(kernel, innermost operator with its input shapes, outermost operator, microseconds)
    for every kernel; operators that cannot be found are named ``?``."""
    ops = collections.defaultdict(list)                 # (pid, tid) -> [(ts, end, event)]
    launches = {}
    kernels = []
    for e in events:
        if e.get("ph") != "X":
            continue
        cat = e.get("cat", "")
        if cat == "cpu_op":
            ops[(e["pid"], e["tid"])].append((e["ts"], e["ts"] + e.get("dur", 0), e))
        elif cat == "cuda_runtime" and "correlation" in e.get("args", {}):
            launches[e["args"]["correlation"]] = e
        elif cat == "kernel":
            kernels.append(e)
    # each launch's enclosing operators, by one sweep per thread over the operators in start
    # order with a stack of those still open (operators on one thread nest)
    by_thread = collections.defaultdict(list)
    for launch in launches.values():
        by_thread[(launch["pid"], launch["tid"])].append(launch)
    names = {}                                          # correlation -> (inner, outer)
    for key, thread_launches in by_thread.items():
        spans = sorted(ops.get(key, []), key=lambda s: (s[0], -s[1]))
        stack, j = [], 0
        for launch in sorted(thread_launches, key=lambda e: e["ts"]):
            t = launch["ts"]
            while j < len(spans) and spans[j][0] <= t:
                while stack and stack[-1][1] < spans[j][0]:
                    stack.pop()
                stack.append(spans[j])
                j += 1
            while stack and stack[-1][1] < t:
                stack.pop()
            if stack:
                e = stack[-1][2]
                dims = e.get("args", {}).get("Input Dims")
                names[launch["args"]["correlation"]] = (e["name"] + (f" {dims}" if dims else ""),
                                                        stack[0][2]["name"])
    return [(k["name"], *names.get(k.get("args", {}).get("correlation"), ("?", "?")),
             float(k.get("dur", 0))) for k in kernels]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("trace")
    ap.add_argument("--steps", type=int, default=10, help="steps the trace holds")
    ap.add_argument("--rows", type=int, default=30)
    args = ap.parse_args()
    try:
        rows = attribute(load(args.trace))
    except (OSError, ValueError, KeyError) as exc:
        print(f"error: {args.trace}: {exc}", file=sys.stderr)
        return 2
    if not rows:
        print(f"error: {args.trace} holds no kernels", file=sys.stderr)
        return 2
    by_op = collections.defaultdict(lambda: [0.0, 0, collections.Counter()])
    for kernel, inner, outer, us in rows:
        entry = by_op[(outer, inner)]
        entry[0] += us
        entry[1] += 1
        entry[2][kernel[:60]] += us
    total = sum(r[3] for r in rows)
    print(f"{len(rows) / args.steps:.0f} kernels and {total / args.steps / 1e3:.3f} ms of "
          "kernel time per step\n")
    print("| us/step | % | kernels/step | outermost operator | operator and input shapes | "
          "main kernel |")
    print("| ---: | ---: | ---: | --- | --- | --- |")
    for (outer, inner), (us, n, names) in sorted(by_op.items(), key=lambda kv: -kv[1][0]
                                                 )[:args.rows]:
        print(f"| {us / args.steps:.1f} | {100 * us / total:.1f} | {n / args.steps:g} | "
              f"{outer[:50]} | {inner[:90]} | {names.most_common(1)[0][0]} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
