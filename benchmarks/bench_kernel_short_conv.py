"""Benchmark: the short causal depthwise convolution, Triton kernel against the layers' path.

The layers' path is the projection repeated over its tied groups (Hyena: 384 channels 4
times), then ``nn.Conv1d(groups=C, padding=K - 1)`` on the transposed copy, its first ``L``
outputs (what Hyena and Mamba run today, PyTorch's depthwise kernels); the kernel reads the
projection in place. On CUDA it
times forward and forward+backward under bf16 autocast at the MAD shapes (batch 128, L 128 to
1,024; Hyena's 3 x 512 channels of width 3, Mamba's 256 of width 4) with
``triton.testing.do_bench`` (median, ms), and checks the kernel's output and gradients against
the float32 reference (``max|a - b| / max|b|``). Prints a markdown table; with OUT set, writes
``$OUT/short_conv.md``.

    python benchmarks/bench_kernel_short_conv.py
    python benchmarks/bench_kernel_short_conv.py --cpu-smoke    # CPU, Triton interpreter, tiny
"""
from __future__ import annotations

import os
import sys

CPU_SMOKE = "--cpu-smoke" in sys.argv
if CPU_SMOKE:
    os.environ["TRITON_INTERPRET"] = "1"        # before anything imports triton

import torch  # noqa: E402

from madbench_layers.ops.short_conv import reference, short_causal_conv  # noqa: E402

CASES = [("hyena", 1536, 3, 4), ("mamba", 256, 4, 1)]     # channels, width, tied groups


def run(fn, x, w, b, backward: bool):
    y = fn(x, w, b)
    if backward:
        y.float().sum().backward()
    return y


def rel_err(a, b):
    return ((a.float() - b.float()).abs().max() / b.float().abs().max().clamp_min(1e-12)).item()


def main() -> None:
    device = "cpu" if CPU_SMOKE else "cuda"
    if device == "cuda" and not torch.cuda.is_available():
        sys.exit("error: needs a CUDA device (or --cpu-smoke)")
    batch, lengths = (2, [16]) if CPU_SMOKE else (128, [128, 256, 512, 1024])
    rows = ["| layer | channels x width (tied groups) | L | layers' path fwd / fwd+bwd (ms) | kernel fwd / "
            "fwd+bwd (ms) | speed-up fwd+bwd | largest relative error (y, gx, gw, gb) |",
            "| --- | --- | ---: | ---: | ---: | ---: | --- |"]
    for name, channels, width, groups in CASES:
        if CPU_SMOKE:
            channels = 8
        for length in lengths:
            g = torch.Generator(device="cpu").manual_seed(length)
            u = torch.randn(batch, length, channels // groups, generator=g).to(device)
            w = (torch.randn(channels, width, generator=g) / width).to(device).requires_grad_()
            b = torch.randn(channels, generator=g).to(device).requires_grad_()
            x = u.transpose(1, 2).requires_grad_()       # the transposed projection

            def kernel(x, w, b):
                return short_causal_conv(x, w, b, backend="triton")

            errs = []
            outs = {}
            for label, fn in (("ref", reference), ("kernel", kernel)):
                for t in (x, w, b):
                    t.grad = None
                y = run(fn, x, w, b, True)
                outs[label] = [y.detach(), x.grad.clone(), w.grad.clone(), b.grad.clone()]
            errs = [rel_err(a, e) for a, e in zip(outs["kernel"], outs["ref"])]
            times = []
            for fn in (reference, kernel):
                for backward in (False, True):
                    def step():
                        with torch.autocast(device, dtype=torch.bfloat16, enabled=not CPU_SMOKE):
                            run(fn, x, w, b, backward)
                    if CPU_SMOKE:
                        step()
                        times.append(float("nan"))
                    else:
                        from triton.testing import do_bench
                        times.append(do_bench(step, warmup=25, rep=200))
            rows.append(f"| {name} | {channels} x {width} ({groups}) | {length} | {times[0]:.3f} / {times[1]:.3f} "
                        f"| {times[2]:.3f} / {times[3]:.3f} | {times[1] / times[3]:.1f}x | "
                        + ", ".join(f"{e:.1e}" for e in errs) + " |")
            print(rows[-1], flush=True)
    table = "\n".join(rows)
    print(("\n" + torch.cuda.get_device_name() + "\n" if device == "cuda" else "\n") + table)
    if os.environ.get("OUT"):
        with open(os.path.join(os.environ["OUT"], "short_conv.md"), "w") as f:
            f.write(table + "\n")


if __name__ == "__main__":
    main()
