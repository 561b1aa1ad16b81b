"""Where does a training step's GPU time go? Profiles eager steps of the plain trainer's step
(same kernels a captured graph replays) on the in-context-recall baseline; prints kernels per
step, summed kernel time per step and the top kernels.

Usage: python benchmarks/profile_step.py [ARCH,...] [--steps 10] [--rows 25] [--trace DIR]

``--trace DIR`` also records the operators' input shapes and writes each architecture's
Chrome trace to ``DIR/ARCH.json.gz`` (every kernel linked to the operator that launched it:
which tensor a slow kernel works on can then be read off the CPU).
"""
from __future__ import annotations

import argparse
import gzip
import shutil
import sys
from pathlib import Path

import torch
from torch import nn
from torch.profiler import ProfilerActivity, profile

from madbench.architecture import resolve_architecture
from madbench.model import build_model
from madbench.tasks import generate_splits, get_task
from madbench.trainer import autocast


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("archs", nargs="?", default="hyena,mH-Sg-mA-Sg")
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--rows", type=int, default=25)
    ap.add_argument("--setting", default="baseline")
    ap.add_argument("--precision", default="bf16")
    ap.add_argument("--trace", default=None, help="write ARCH.json.gz Chrome traces here")
    args = ap.parse_args()
    task = get_task("in-context-recall")
    tr, _ = generate_splits(task, task.setting(args.setting), 0)
    x = torch.from_numpy(tr.inputs[:128]).cuda()
    y = torch.from_numpy(tr.targets[:128]).cuda()
    for arch in args.archs.split(","):
        torch.manual_seed(0)
        model = build_model(resolve_architecture(arch), 16, x.shape[1]).cuda()
        opt = torch.optim.AdamW(model.parameters(), lr=1e-3, fused=True)

        def step():
            with autocast(x.device, args.precision):
                logits = model(x)
            loss = nn.functional.cross_entropy(logits.float().reshape(-1, 16), y.reshape(-1),
                                               ignore_index=-100)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()

        for _ in range(5):
            step()
        torch.cuda.synchronize()
        activities = [ProfilerActivity.CUDA] + ([ProfilerActivity.CPU] if args.trace else [])
        with profile(activities=activities, record_shapes=bool(args.trace)) as prof:
            for _ in range(args.steps):
                step()
            torch.cuda.synchronize()
        events = [e for e in prof.events() if e.device_type == torch.autograd.DeviceType.CUDA]
        total_us = sum(e.device_time for e in events) / args.steps
        print(f"\n## {arch}: {len(events) / args.steps:.0f} kernels/step, "
              f"{total_us / 1e3:.3f} ms summed kernel time/step", flush=True)
        print(prof.key_averages().table(sort_by="cuda_time_total", row_limit=args.rows,
                                        max_name_column_width=70), flush=True)
        if args.trace:
            trace = Path(args.trace) / f"{arch}.json"
            trace.parent.mkdir(parents=True, exist_ok=True)
            prof.export_chrome_trace(str(trace))
            with open(trace, "rb") as src, gzip.open(f"{trace}.gz", "wb") as dst:
                shutil.copyfileobj(src, dst)
            trace.unlink()


if __name__ == "__main__":
    sys.exit(main())
