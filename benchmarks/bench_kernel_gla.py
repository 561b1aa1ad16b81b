"""Time gated linear attention, forward and forward+backward, at MAD shapes: the PyTorch
reference, the Triton kernel, and fla's ``chunk_gla`` / ``fused_recurrent_gla`` when ``import fla``
works.

On a GPU:      python benchmarks/bench_kernel_gla.py [--seq-lens 128 512 1024] [--batch 128]
CPU check:     python benchmarks/bench_kernel_gla.py --cpu-smoke   (tiny shape, Triton interpreter)

Shapes: ``mh-gla`` is 8 heads of dk = dv = 16, ``gla`` 1 head of 128 (MAD's width 128). Inputs
are laid out as the layer makes them (a (batch, seq_len, heads, d) projection viewed as
(batch, heads, seq_len, d)), log-gates are ``logsigmoid(x) / 16``. Times are medians of
``triton.testing.do_bench`` in ms. The error columns are max |x - x_ref| / max |x_ref| against the
fp32 reference, over the output and the four input gradients. Prints a markdown table, also
written to $OUT/gla.md when OUT is set. ``--sweep`` also times a few block configurations,
``--layer`` the whole layer with each backend, ``--overhead`` the host time per call. fla
autotunes on first use: the full run with fla takes several minutes on an H100.

The op's precision follows torch.get_float32_matmul_precision(): TF32x3 at "highest" (the
default), TF32 at "high" (about 2e-3 relative error, up to 2x faster for the 128-wide head).
"""
from __future__ import annotations

import argparse
import os
import sys
import time

SHAPES = {"mh-gla": (8, 16, 16), "gla": (1, 128, 128)}


def make_inputs(batch, heads, seq_len, dk, dv, device, dtype, seed=0):
    import torch
    g = torch.Generator(device=device).manual_seed(seed)

    def proj(d):  # the layer's layout: tokens major, then heads
        x = torch.randn(batch, seq_len, heads, d, generator=g, device=device, dtype=dtype)
        return x.transpose(1, 2)
    q, k, v = proj(dk) * dk ** -0.5, proj(dk), proj(dv)
    log_alpha = torch.nn.functional.logsigmoid(proj(dk)) / 16
    return q, k, v, log_alpha


def fwd_bwd(fn, inputs, grad_out):
    import torch

    def step():
        leaves = [x.detach().requires_grad_() for x in inputs]
        out = fn(*leaves)
        return torch.autograd.grad(out, leaves, grad_out)
    return step


def fwd(fn, inputs):
    import torch

    def step():
        with torch.no_grad():
            return fn(*inputs)
    return step


def timer(cpu: bool):
    if cpu:
        def bench(step):
            step()
            t0 = time.perf_counter()
            step()
            return (time.perf_counter() - t0) * 1e3
        return bench
    from triton.testing import do_bench
    return lambda step: do_bench(step, warmup=25, rep=100, return_mode="median")


def graph_timer(fn, inputs, grad_out):
    """fwd+bwd captured once in a CUDA graph, replays timed: the GPU time without the host's
    launch overhead (None when capture fails)."""
    import torch
    from triton.testing import do_bench
    try:
        leaves = [x.detach().clone().requires_grad_() for x in inputs]
        stream = torch.cuda.Stream()
        stream.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(stream):
            for _ in range(2):
                torch.autograd.grad(fn(*leaves), leaves, grad_out)
        torch.cuda.current_stream().wait_stream(stream)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            torch.autograd.grad(fn(*leaves), leaves, grad_out)
        return do_bench(graph.replay, warmup=25, rep=100, return_mode="median")
    except Exception as exc:  # noqa: BLE001 - some implementations cannot be captured
        print(f"graph capture failed: {type(exc).__name__}: {exc}", file=sys.stderr)
        return None


def rel_err(got, ref):
    return max(float((a.float() - b.float()).abs().max() / b.float().abs().max().clamp_min(1e-30))
               for a, b in zip(got, ref))


def candidates(with_fla: bool):
    """(name, fn(q, k, v, log_alpha) -> o) for every implementation available here."""
    from madbench_layers.ops.gla import chunk_gla
    impls = [("reference", lambda q, k, v, g: chunk_gla(q, k, v, g, 16, backend="reference")),
             ("triton", lambda q, k, v, g: chunk_gla(q, k, v, g, 16, backend="triton"))]
    if not with_fla:
        return impls
    try:
        from fla.ops.gla import chunk_gla as fla_chunk, fused_recurrent_gla as fla_recurrent
    except Exception as exc:  # noqa: BLE001 - fla is optional; any import failure means absent
        print(f"fla not available ({type(exc).__name__}: {exc}); skipping its rows",
              file=sys.stderr)
        return impls

    def fla_wrap(op, **kw):
        def run(q, k, v, g):  # fla takes (batch, seq_len, heads, d)
            t = lambda x: x.transpose(1, 2)  # noqa: E731
            return t(op(t(q), t(k), t(v), t(g), scale=1.0, **kw)[0])
        return run
    return impls + [("fla chunk_gla", fla_wrap(fla_chunk)),
                    ("fla fused_recurrent_gla", fla_wrap(fla_recurrent))]


def sweep_configs(dk, dv):
    from madbench_layers.ops.gla.triton_kernel import launch_config
    base = launch_config(dk, dv)
    if dk <= 32:
        shapes = [dict(BT=bt, num_warps=w) for bt in (32, 64) for w in (2, 4)]
    else:
        shapes = [dict(BT=16, BV_FWD=64, BK_BWD=32, BV_BWD=32),
                  dict(BT=32, BV_FWD=64, BK_BWD=32, BV_BWD=32),
                  dict(BT=16, BV_FWD=32, BK_BWD=32, BV_BWD=128),
                  dict(BT=32, BV_FWD=32, BK_BWD=32, BV_BWD=128)]
    variants = [dict(precision=p, **v) for p in ("tf32x3", "tf32") for v in shapes]
    return [(", ".join(f"{k}={v}" for k, v in var.items()), {**base, **var}) for var in variants]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cpu-smoke", action="store_true",
                        help="tiny shape on CPU through the Triton interpreter (a bug check)")
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--seq-lens", type=int, nargs="+", default=[128, 512, 1024])
    parser.add_argument("--shapes", nargs="+", default=list(SHAPES), choices=list(SHAPES))
    parser.add_argument("--sweep", action="store_true", help="also time block configurations")
    parser.add_argument("--no-fla", action="store_true", help="leave out fla's kernels")
    parser.add_argument("--layer", action="store_true",
                        help="also time the whole GLA layer with each backend")
    parser.add_argument("--overhead", action="store_true",
                        help="also print the host time per call at a tiny shape (launch cost)")
    args = parser.parse_args()
    if args.cpu_smoke:
        os.environ["TRITON_INTERPRET"] = "1"  # before triton is imported
        args.batch, args.seq_lens = 1, [40]
    import torch
    from madbench_layers.ops.gla.triton_kernel import chunk_gla_triton
    cpu = args.cpu_smoke
    if not cpu and not torch.cuda.is_available():
        raise SystemExit("no CUDA device: run with --cpu-smoke for a CPU check")
    device = "cpu" if cpu else "cuda"
    bench = timer(cpu)
    impls = candidates(not (cpu or args.no_fla))

    lines = [f"GLA forward / forward+backward, batch {args.batch}, fp32, "
             f"{torch.cuda.get_device_name() if not cpu else 'CPU (interpreter smoke)'}; "
             "ms (median); speed-up vs the reference; max rel. error vs the fp32 reference",
             "; graph: fwd+bwd replayed from a CUDA graph (GPU time without launch overhead)",
             "", "| shape | L | impl | fwd ms | fwd+bwd ms | fwd+bwd speed-up | graph ms | "
             "graph speed-up | rel. err |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for shape in args.shapes:
        heads, dk, dv = SHAPES[shape]
        if cpu:
            heads, dk, dv = min(heads, 2), min(dk, 16), min(dv, 16)
        for seq_len in args.seq_lens:
            inputs = make_inputs(args.batch, heads, seq_len, dk, dv, device, torch.float32)
            grad_out = torch.randn_like(inputs[2]).contiguous()
            ref_out, ref_grads = None, None
            ref_time = ref_graph = None
            rows = list(impls)
            if args.sweep and not cpu:
                rows += [(f"triton [{label}]",
                          (lambda c: lambda q, k, v, g: chunk_gla_triton(q, k, v, g, c))(cfg))
                         for label, cfg in sweep_configs(dk, dv)]
            for name, fn in rows:
                try:
                    out = fwd(fn, inputs)()
                    grads = fwd_bwd(fn, inputs, grad_out)()
                    if ref_out is None:
                        ref_out, ref_grads = out, grads
                    err = rel_err([out, *grads], [ref_out, *ref_grads])
                    t_fwd = bench(fwd(fn, inputs))
                    t_all = bench(fwd_bwd(fn, inputs, grad_out))
                    t_graph = None if cpu else graph_timer(fn, inputs, grad_out)
                except Exception as exc:  # noqa: BLE001 - report a failing row, keep going
                    lines.append(f"| {shape} | {seq_len} | {name} | failed: "
                                 f"{type(exc).__name__}: {str(exc).splitlines()[0][:80]} "
                                 "| | | | | |")
                    continue
                ref_time = ref_time or t_all
                ref_graph = ref_graph or t_graph
                graph_cells = (f"{t_graph:.3f} | {ref_graph / t_graph:.2f}x"
                               if t_graph and ref_graph else "n/a | n/a")
                lines.append(f"| {shape} | {seq_len} | {name} | {t_fwd:.3f} | {t_all:.3f} | "
                             f"{ref_time / t_all:.2f}x | {graph_cells} | {err:.1e} |")
                print(lines[-1], flush=True)
            del inputs, ref_out, ref_grads
            if not cpu:
                torch.cuda.empty_cache()
    if args.layer:
        lines += ["", "Whole layer (projections, op, norm, gate), fwd+bwd ms, with each backend",
                  "", "| layer | L | reference op | triton op | speed-up |",
                  "| --- | --- | --- | --- | --- |"]
        from madbench_layers.gla import GatedLinearAttention
        for shape in args.shapes:
            heads = min(SHAPES[shape][0], 2) if cpu else SHAPES[shape][0]
            width = 32 if cpu else 128
            layer = GatedLinearAttention(width, num_heads=heads).to(device)
            for seq_len in args.seq_lens:
                x = torch.randn(args.batch, seq_len, width, device=device)
                times = []
                for backend in ("reference", "auto"):  # auto: triton on CUDA
                    os.environ["MADBENCH_KERNELS"] = backend
                    times.append(bench(lambda: layer(x).square().mean().backward()))
                os.environ.pop("MADBENCH_KERNELS")
                lines.append(f"| {shape} | {seq_len} | {times[0]:.3f} | {times[1]:.3f} | "
                             f"{times[0] / times[1]:.2f}x |")
                print(lines[-1], flush=True)
    if args.overhead and not cpu:
        inputs = make_inputs(1, 1, 16, 16, 16, device, torch.float32)
        grad_out = torch.randn_like(inputs[2])
        for name, fn in impls[1:]:
            for label, step in (("fwd", fwd(fn, inputs)),
                                ("fwd+bwd", fwd_bwd(fn, inputs, grad_out))):
                for _ in range(20):
                    step()
                torch.cuda.synchronize()
                t0 = time.perf_counter()
                for _ in range(200):
                    step()
                host = (time.perf_counter() - t0) / 200 * 1e3
                torch.cuda.synchronize()
                lines.append(f"host time per call, {name} {label}: {host:.3f} ms")
                print(lines[-1], flush=True)
    table = "\n".join(lines)
    print("\n" + table)
    if os.environ.get("OUT"):
        with open(os.path.join(os.environ["OUT"], "gla.md"), "w") as f:
            f.write(table + "\n")


if __name__ == "__main__":
    main()
