"""Where does a training step's GPU time go? Profiles eager steps of the plain trainer's step
(same kernels a captured graph replays) on the in-context-recall baseline; prints kernels per
step, summed kernel time per step and the top kernels.

Usage: python benchmarks/profile_step.py [ARCH,...] [--steps 10] [--rows 25] [--trace DIR]
       python benchmarks/profile_step.py hyena-swiglu --lengths 127,128

``--lengths A,B`` profiles each architecture at sequence lengths A and B instead (random tokens
of the baseline's vocabulary, the model built for that length: one difference at a time) and
then lists the kernels whose time per step differs most between them; in-context and noisy
recall train at odd lengths (127, 255, ...), where Hyena's step was measured 1.5-1.7x slower
than at even ones (benchmarks/RESULTS.md, eighteenth and nineteenth sessions).

``--trace DIR`` also records the operators' input shapes and writes each architecture's
Chrome trace to ``DIR/ARCH.json.gz`` (every kernel linked to the operator that launched it:
which tensor a slow kernel works on can then be read off the CPU).
"""
from __future__ import annotations

import argparse
import collections
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
    ap.add_argument("--lengths", default=None, help="A,B: profile at these two lengths and "
                    "list the kernels whose time differs most")
    args = ap.parse_args()
    lengths = [int(n) for n in args.lengths.split(",")] if args.lengths else [None]
    if args.lengths and (len(lengths) != 2 or min(lengths) < 1):
        ap.error("--lengths takes two positive lengths, e.g. 127,128")
    baseline = None if args.lengths else baseline_batch(args.setting)
    for arch in args.archs.split(","):
        per_length = {}
        for length in lengths:
            x, y = baseline if length is None else random_batch(length)
            name = arch if length is None else f"{arch} at L {length}"
            per_length[length] = profile_one(arch, name, x, y, args)
        if args.lengths:
            compare(arch, lengths, per_length, args.rows)


def baseline_batch(setting: str) -> tuple[torch.Tensor, torch.Tensor]:
    """The first 128 training sequences of an in-context-recall setting."""
    task = get_task("in-context-recall")
    tr, _ = generate_splits(task, task.setting(setting), 0)
    return torch.from_numpy(tr.inputs[:128]).cuda(), torch.from_numpy(tr.targets[:128]).cuda()


def random_batch(length: int) -> tuple[torch.Tensor, torch.Tensor]:
    """128 random sequences of ``length`` tokens of the baseline's vocabulary, every position
    scored."""
    g = torch.Generator().manual_seed(0)
    tokens = torch.randint(0, 16, (128, length + 1), generator=g)
    return tokens[:, :-1].contiguous().cuda(), tokens[:, 1:].contiguous().cuda()


def compare(arch: str, lengths: list[int], per_length: dict, rows: int) -> None:
    """The kernels (by name, summed per step) whose time differs most between two lengths."""
    a, b = lengths
    ta, tb = per_length[a], per_length[b]
    print(f"\n## {arch}: L {a} against L {b}, kernel time per step (ms)", flush=True)
    print(f"summed: {sum(ta.values()) / 1e3:.3f} at L {a}, {sum(tb.values()) / 1e3:.3f} at L {b}")
    names = sorted(set(ta) | set(tb), key=lambda k: -abs(ta.get(k, 0.0) - tb.get(k, 0.0)))
    print(f"| kernel | L {a} | L {b} | difference |\n| --- | ---: | ---: | ---: |")
    for k in names[:rows]:
        da, db = ta.get(k, 0.0) / 1e3, tb.get(k, 0.0) / 1e3
        print(f"| {k[:90]} | {da:.3f} | {db:.3f} | {da - db:+.3f} |")
    sys.stdout.flush()


def profile_one(arch: str, name: str, x: torch.Tensor, y: torch.Tensor, args) -> dict:
    """Profile ``args.steps`` eager steps of ``arch`` on (x, y); print the summary and return
    each kernel name's summed device time per step (microseconds)."""
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
    print(f"\n## {name}: {len(events) / args.steps:.0f} kernels/step, "
          f"{total_us / 1e3:.3f} ms summed kernel time/step", flush=True)
    print(prof.key_averages().table(sort_by="cuda_time_total", row_limit=args.rows,
                                    max_name_column_width=70), flush=True)
    if args.trace:
        trace = Path(args.trace) / f"{name.replace(' at L ', '-L')}.json"
        trace.parent.mkdir(parents=True, exist_ok=True)
        prof.export_chrome_trace(str(trace))
        with open(trace, "rb") as src, gzip.open(f"{trace}.gz", "wb") as dst:
            shutil.copyfileobj(src, dst)
        trace.unlink()
    per_kernel: dict = collections.defaultdict(float)
    for e in events:
        per_kernel[e.name] += e.device_time / args.steps
    return per_kernel


if __name__ == "__main__":
    sys.exit(main())
