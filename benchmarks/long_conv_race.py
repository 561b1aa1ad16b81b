"""Are the long-convolution kernels deterministic under load? The kernels use no atomics and
a fixed reduction order, so the same inputs must give bitwise the same outputs every call. This
runs Hyena's gated long convolution (forward and backward, with the layer's strided stream
views) many times on fixed inputs and counts, per output, the calls whose result differs from
the first call's or is not finite. Run several copies at once (under MPS or not) to see whether
load from other processes changes the results -- the sign of a race inside a kernel.

    python3 benchmarks/long_conv_race.py --lengths 127,128,256 --iters 300
"""
from __future__ import annotations

import argparse
import os
import sys
import time


def inputs(n: int, channels: int, length: int, seed: int):
    """Hyena's streams: three views of one short-convolution output of length L + 2, a filter
    (channels, L) in float32 and an output gradient."""
    import torch
    g = torch.Generator(device="cuda").manual_seed(seed)
    base = torch.randn(n, 3 * channels, length + 2, device="cuda", generator=g)
    base = base.to(torch.bfloat16).requires_grad_()
    h = (torch.randn(channels, length, device="cuda", generator=g) / length ** 0.5)
    h.requires_grad_()
    gy = torch.randn(n, channels, length, device="cuda", generator=g).to(torch.bfloat16)
    return base, h, gy


def one_call(base, h, gy, channels: int, length: int, backend: str):
    import torch
    from madbench_layers.ops.long_conv import gated_long_conv
    base.grad = h.grad = None
    x0, x1, v = base[..., :length].split(channels, dim=1)
    y = gated_long_conv(v, x1, x0, h, backend)
    y.backward(gy)
    torch.cuda.synchronize()
    return {"y": y.detach().clone(), "g_streams": base.grad.clone(), "g_filter": h.grad.clone()}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--lengths", default="127,128,256")
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--channels", type=int, default=512)
    p.add_argument("--iters", type=int, default=300)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    import torch
    tag = f"[pid {os.getpid()}, MPS {'on' if os.environ.get('CUDA_MPS_PIPE_DIRECTORY') else 'off'}]"
    bad = 0
    for length in (int(x) for x in args.lengths.split(",")):
        base, h, gy = inputs(args.batch, args.channels, length, args.seed)
        ref = one_call(base.double().detach().requires_grad_(), h.double().detach()
                       .requires_grad_(), gy.double(), args.channels, length, "reference")
        first = one_call(base, h, gy, args.channels, length, "triton")
        err = {k: ((first[k].double() - ref[k]).abs().max() / ref[k].abs().max()).item()
               for k in first}
        differ = {k: 0 for k in first}
        nonfinite = {k: 0 for k in first}
        start = time.perf_counter()
        for _ in range(args.iters):
            out = one_call(base, h, gy, args.channels, length, "triton")
            for k, x in out.items():
                differ[k] += not torch.equal(x, first[k])
                nonfinite[k] += not torch.isfinite(x).all().item()
        bad += sum(differ.values()) + sum(nonfinite.values())
        print(f"{tag} L {length}: {args.iters} calls in {time.perf_counter() - start:.1f} s; "
              + "; ".join(f"{k}: {differ[k]} differ, {nonfinite[k]} not finite, "
                          f"first vs float64 {err[k]:.1e}" for k in first), flush=True)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
