"""Time one step of a scaling run (``madbench scaling run``), captured as the runs do it.

For each family and size, trains ``--steps`` steps of ``madbench.scaling.runs.train_run`` twice
on the embedded corpus (the first call pays for compilation, warm-up and capture; the second is
timed) and prints ms per step, with the validation pass shrunk to one batch. ``--profile``
also lists the top GPU kernels of a few eager steps.

    python3 benchmarks/bench_scaling_step.py --families mamba,hyena --sizes 128x4,256x6
"""
from __future__ import annotations

import argparse
import dataclasses
import time

import torch
from torch.profiler import ProfilerActivity, profile

from madbench.scaling.corpus import load_corpus
from madbench.scaling.plan import Recipe, plan_runs
from madbench.scaling.runs import train_run


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--families", default="mamba,hyena,transformer++")
    ap.add_argument("--sizes", default="128x4")
    ap.add_argument("--steps", type=int, default=100)
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--seq-len", type=int, default=256)
    ap.add_argument("--profile", action="store_true")
    ap.add_argument("--device", default="cuda", help="cpu: a smoke test (fp32, times mean little)")
    args = ap.parse_args()
    dev = torch.device(args.device)
    precision = "bf16" if dev.type == "cuda" else "fp32"
    corpus = load_corpus("kjv")
    train_np, val_np = corpus.splits()
    train, val = torch.from_numpy(train_np).to(dev), torch.from_numpy(val_np).to(dev)
    recipe = Recipe(seq_len=args.seq_len, batch_size=args.batch_size,
                    eval_tokens=args.batch_size * args.seq_len)
    sizes = [tuple(int(v) for v in s.split("x")) for s in args.sizes.split(",")]
    name = torch.cuda.get_device_name() if dev.type == "cuda" else "cpu"
    print(f"{name}, batch {args.batch_size} x {args.seq_len} bytes")
    for family in args.families.split(","):
        for plan in plan_runs(family, [1e12], sizes, recipe, corpus.sha256):
            plan = dataclasses.replace(plan, steps=args.steps)
            start = time.perf_counter()
            train_run(plan, train, val, dev, precision)
            first = time.perf_counter() - start
            result = train_run(plan, train, val, dev, precision)
            ms = 1e3 * result["seconds"] / args.steps
            print(f"{family} {plan.width}x{plan.depth}: {ms:.2f} ms/step "
                  f"({result['non_embedding_params']:,} params; first call {first:.1f} s)",
                  flush=True)
            if args.profile:
                _profile(plan, train, val, dev, precision)


def _profile(plan, train, val, dev, precision, steps: int = 5) -> None:
    cuda = dev.type == "cuda"
    with profile(activities=[ProfilerActivity.CUDA if cuda else ProfilerActivity.CPU]) as prof:
        train_run(dataclasses.replace(plan, steps=steps), train, val, dev, precision,
                  capture=False)
        if cuda:
            torch.cuda.synchronize()
    sort = "cuda_time_total" if cuda else "cpu_time_total"
    print(prof.key_averages().table(sort_by=sort, row_limit=12,
                                    max_name_column_width=60), flush=True)


if __name__ == "__main__":
    main()
