"""Benchmark: Hyena's gated long convolution, Triton kernel against the FFT reference.

On CUDA, times forward and forward+backward at MAD shapes (batch 128, width 128, seq_len 128 to
1024) for the Hyena form ``x2 * conv(x1 * v, h)`` (H, He) and the multi-head form (mH: 16 heads
of 8, filtered k x v outer products read out with q), with ``triton.testing.do_bench`` (median,
ms); checks the largest relative error against the reference in float32 (output and every
gradient, ``max|a - b| / max|b|``); prints a markdown table and writes it to
``$OUT/long_conv.md`` when OUT is set.

    python benchmarks/bench_kernel_long_conv.py                 # CUDA, bf16 and fp32
    python benchmarks/bench_kernel_long_conv.py --tune          # CUDA, tile-size sweep per kernel
    python benchmarks/bench_kernel_long_conv.py --cpu-smoke     # CPU, Triton interpreter, tiny
"""
from __future__ import annotations

import argparse
import itertools
import os
import sys
import time

CPU_SMOKE = "--cpu-smoke" in sys.argv
if CPU_SMOKE:
    os.environ["TRITON_INTERPRET"] = "1"        # before anything imports triton

import torch  # noqa: E402

from madbench_layers.ops.long_conv import (gated_long_conv, multihead_long_conv,  # noqa: E402
                                           reference)

DTYPES = {"bf16": torch.bfloat16, "fp32": torch.float32}


def make_inputs(case: str, batch: int, width: int, length: int, dtype, device, heads: int = 16):
    """Leaf tensors (requiring grad) of one case: streams in ``dtype``, the filter in float32."""
    def leaf(*shape, dt=dtype, scale=1.0):
        return (torch.randn(*shape, device=device) * scale).to(dt).requires_grad_()
    decay = torch.exp(-torch.arange(length, device=device) / (length / 4))
    if case == "hyena":
        streams = [leaf(batch, width, length) for _ in range(3)]
        h = (torch.randn(width, length, device=device) * decay / length**0.5)
        return streams + [h.requires_grad_()]
    d = width // heads
    streams = [leaf(batch, heads, d, length) for _ in range(3)]           # q, k, v
    h = (torch.randn(heads, d, length, device=device) * decay / length**0.5)
    return streams + [h.requires_grad_()]


def op(case: str, backend: str):
    if case == "hyena":
        if backend == "reference":
            return lambda v, x1, x2, h: reference.gated_long_conv(v, x1, x2, h)
        return lambda v, x1, x2, h: gated_long_conv(v, x1, x2, h, backend=backend)
    if backend == "reference":
        return lambda q, k, v, h: reference.multihead_long_conv(q, k, v, h)
    return lambda q, k, v, h: multihead_long_conv(q, k, v, h, backend=backend)


def timer(fn, device, rep: int = 200) -> float:
    """Median milliseconds: do_bench on CUDA, a few wall-clock runs on CPU."""
    if device.type == "cuda":
        from triton.testing import do_bench
        return do_bench(fn, warmup=10, rep=rep, return_mode="median")
    fn()
    start = time.perf_counter()
    fn()
    return (time.perf_counter() - start) * 1e3


def graph_timer(fn, inputs, device) -> float:
    """Median milliseconds of replaying ``fn(leaves)`` captured in a CUDA graph: GPU time
    without the Python and launch overhead (what a graph-captured training step sees). Fresh
    leaves are made, warmed up and captured on one side stream, so that autograd's streams
    match the capture."""
    if device.type != "cuda":
        return float("nan")
    from triton.testing import do_bench
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):
        leaves = [x.detach().clone().requires_grad_(x.requires_grad) for x in inputs]
        for _ in range(3):
            fn(leaves)
    stream.synchronize()
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph, stream=stream):
        fn(leaves)
    return do_bench(graph.replay, warmup=10, rep=200, return_mode="median")


def relative_error(case, batch, width, length, device, heads) -> float:
    """Largest relative error of the Triton op against the reference, float32, output and
    gradients, on fresh random inputs."""
    inputs = make_inputs(case, batch, width, length, torch.float32, device, heads)
    outs, g = [], None
    for backend in ("reference", "triton"):
        y = op(case, backend)(*inputs)
        g = torch.randn_like(y) if g is None else g
        outs.append((y, torch.autograd.grad(y, inputs, g)))
    (y_r, g_r), (y_t, g_t) = outs
    errors = [(a - b).abs().max() / b.abs().max()
              for a, b in zip((y_t.detach(), *g_t), (y_r.detach(), *g_r))]
    return max(float(e) for e in errors)


def bench_row(case, dtype_name, batch, width, length, device, heads) -> dict:
    inputs = make_inputs(case, batch, width, length, DTYPES[dtype_name], device, heads)
    row = {"case": case, "dtype": dtype_name, "batch": batch, "width": width, "L": length}
    for backend in ("reference", "triton"):
        fn = op(case, backend)
        y = fn(*inputs)
        g = torch.randn_like(y)

        def forward_only(leaves=inputs):
            with torch.no_grad():
                fn(*leaves)

        def forward_backward(leaves=inputs):
            torch.autograd.grad(fn(*leaves), leaves, g)

        row[f"{backend}_fwd"] = graph_timer(forward_only, inputs, device)
        row[f"{backend}_fwdbwd"] = timer(forward_backward, device)
        row[f"{backend}_fwdbwd_graph"] = graph_timer(forward_backward, inputs, device)
    row["speedup"] = row["reference_fwdbwd"] / row["triton_fwdbwd"]
    row["speedup_graph"] = row["reference_fwdbwd_graph"] / row["triton_fwdbwd_graph"]
    return row


def markdown(rows, device_name) -> str:
    head = ("| op | dtype | batch | width | L | fwd ms ref / triton (graph) | "
            "fwd+bwd ms ref / triton (eager) | speedup eager | "
            "fwd+bwd ms ref / triton (graph) | speedup graph | max rel err fp32 |")
    lines = [f"Device: {device_name}. Eager: do_bench of the Python call (launch overhead "
             "included); graph: replay of a CUDA graph of the same call (GPU time).", "",
             head, "|" + " --- |" * 11]
    for r in rows:
        lines.append(
            f"| {r['case']} | {r['dtype']} | {r['batch']} | {r['width']} | {r['L']} | "
            f"{r['reference_fwd']:.3f} / {r['triton_fwd']:.3f} | "
            f"{r['reference_fwdbwd']:.3f} / {r['triton_fwdbwd']:.3f} | {r['speedup']:.2f}x | "
            f"{r['reference_fwdbwd_graph']:.3f} / {r['triton_fwdbwd_graph']:.3f} | "
            f"{r['speedup_graph']:.2f}x | {r['error']:.1e} |")
    return "\n".join(lines)


# -- tile-size sweep -----------------------------------------------------------------------
def tune(case, dtype_name, batch, width, length, device, heads):
    """Time each kernel alone over a grid of tile sizes; print the best few per kernel."""
    from madbench_layers.ops.long_conv import triton_kernel as tk
    a, b, c, h = make_inputs(case, batch, width, length, DTYPES[dtype_name], device, heads)
    with torch.no_grad():
        if case == "hyena":     # a, b, c = v, x1, x2
            canon = [x.reshape(1, batch, width, 1, length) for x in (a, b, c)]
            hk = h.reshape(1, width, 1, length)
        else:                   # a, b, c = q, k, v: the kernel's v, x1, x2 are v, k, q
            heads, d = a.shape[1], a.shape[2]
            canon = [x.reshape(1, batch, heads, d, length) for x in (c, b, a)]
            hk = h.reshape(1, heads, d, length)
        cv, cx1, cx2 = (x.detach() for x in canon)
        taps = tk.padded_taps(hk.detach(), cv.dtype)
        _, c, u = tk.forward(cv, cx1, cx2, taps)
        gy = torch.randn_like(cv)
        gc = tk.backward_inputs(gy, cv, cx1, cx2, taps, c)[3]
        filter_args = ((gc, u, None, None) if case == "hyena" else (gy, cv, cx1, cx2))
    runs = {
        "forward": lambda: tk.forward(cv, cx1, cx2, taps),
        "inputs": lambda: tk.backward_inputs(gy, cv, cx1, cx2, taps, c),
        "filter": lambda: tk.backward_filter(*filter_args, taps.shape[2]),
    }
    original = tk.block_config
    grid = [(128, 128, 8, 2), (128, 64, 4, 2), (128, 64, 8, 2), (64, 64, 4, 2), (64, 64, 4, 3),
            (64, 128, 4, 2), (64, 128, 8, 2), (64, 32, 4, 3), (128, 32, 4, 2)]
    configs = [dict(BM=bm, BT=bt, num_warps=w, num_stages=st) for bm, bt, w, st in grid]
    print(f"== tune {case} {dtype_name} B{batch} W{width} L{length}", flush=True)
    for kernel, run in runs.items():
        results = []
        for cfg in configs:
            if cfg["BT"] > max(32, length):
                continue
            tk.block_config = (lambda kern, *a, _k=kernel, _c=cfg:
                               _c if kern == _k else original(kern, *a))
            try:
                ms = timer(run, device, rep=40)
            except Exception as exc:  # a config that does not compile (resources)
                print(f"  {kernel} {cfg}: {type(exc).__name__}", flush=True)
                continue
            finally:
                tk.block_config = original
            results.append((ms, cfg))
        results.sort(key=lambda x: x[0])
        group = 1 if case == "hyena" else width // heads
        default = original(kernel, length, batch * group, group, cv.element_size())
        print(f"  {kernel}: default {default}", flush=True)
        for ms, cfg in results[:3]:
            print(f"    {ms:.4f} ms {cfg}", flush=True)
        if os.environ.get("OUT"):
            with open(os.path.join(os.environ["OUT"], "long_conv_tune.txt"), "a") as f:
                for ms, cfg in results:
                    f.write(f"{case} {dtype_name} L{length} {kernel} {ms:.4f} {cfg}\n")


def profile(case, dtype_name, batch, width, length, device, heads):
    """Host-side cost of one eager forward+backward of the Triton path (torch.profiler)."""
    from torch.profiler import ProfilerActivity
    inputs = make_inputs(case, batch, width, length, DTYPES[dtype_name], device, heads)
    fn = op(case, "triton")
    g = torch.randn_like(fn(*inputs))
    for _ in range(3):
        torch.autograd.grad(fn(*inputs), inputs, g)
    torch.cuda.synchronize()
    with torch.profiler.profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
        for _ in range(10):
            torch.autograd.grad(fn(*inputs), inputs, g)
        torch.cuda.synchronize()
    print(prof.key_averages().table(sort_by="cpu_time_total", row_limit=25))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cpu-smoke", action="store_true",
                        help="tiny shapes on CPU under the Triton interpreter (a bug check)")
    parser.add_argument("--tune", action="store_true", help="tile-size sweep per kernel")
    parser.add_argument("--profile", action="store_true",
                        help="host-side profile of the Triton path (first case, dtype, L)")
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--width", type=int, default=128)
    parser.add_argument("--heads", type=int, default=16, help="mH heads (head size width/heads)")
    parser.add_argument("--seq-lens", type=int, nargs="+", default=[128, 256, 512, 1024])
    parser.add_argument("--dtypes", nargs="+", default=["bf16", "fp32"], choices=list(DTYPES))
    parser.add_argument("--cases", nargs="+", default=["hyena", "mh"], choices=["hyena", "mh"])
    args = parser.parse_args()
    if args.cpu_smoke:
        device = torch.device("cpu")
        args.batch, args.width, args.heads, args.seq_lens, args.dtypes = 2, 16, 4, [40], ["fp32"]
        device_name = "CPU (Triton interpreter, smoke test only)"
    else:
        if not torch.cuda.is_available():
            sys.exit("CUDA is not available; use --cpu-smoke for a CPU bug check")
        device = torch.device("cuda")
        device_name = torch.cuda.get_device_name()
    torch.manual_seed(0)
    if args.profile:
        profile(args.cases[0], args.dtypes[0], args.batch, args.width, args.seq_lens[0], device,
                args.heads)
        return
    if args.tune:
        for case, dtype_name, length in itertools.product(args.cases, args.dtypes, args.seq_lens):
            tune(case, dtype_name, args.batch, args.width, length, device, args.heads)
        return
    rows = []
    for case, length in itertools.product(args.cases, args.seq_lens):
        error = relative_error(case, args.batch, args.width, length, device, args.heads)
        for dtype_name in args.dtypes:
            row = bench_row(case, dtype_name, args.batch, args.width, length, device,
                            args.heads)
            row["error"] = error
            rows.append(row)
            print(f"{case} {dtype_name} L={length}: eager ref {row['reference_fwdbwd']:.3f} "
                  f"triton {row['triton_fwdbwd']:.3f} ms x{row['speedup']:.2f}; graph ref "
                  f"{row['reference_fwdbwd_graph']:.3f} triton {row['triton_fwdbwd_graph']:.3f}"
                  f" ms x{row['speedup_graph']:.2f}; err {error:.1e}", flush=True)
    table = markdown(rows, device_name)
    print(table)
    if os.environ.get("OUT"):
        with open(os.path.join(os.environ["OUT"], "long_conv.md"), "w") as f:
            f.write(table + "\n")


if __name__ == "__main__":
    main()
