"""Time Mamba's selective scan, forward + backward, Triton kernel against the PyTorch reference.

On a CUDA GPU, at MAD shapes (batch 128, d_inner 256, d_state 4; seq_len 128 to 1,024):

    python benchmarks/bench_kernel_selective_scan.py [--seq-lens 128 512 1024] [--sweep]

Times are medians of ``triton.testing.do_bench`` (ms). The error columns are the largest
``max|kernel - reference| / max|reference|`` over y and the six gradients, both in fp32.
Prints a markdown table and writes it to ``$OUT/selective_scan.md`` when OUT is set.
``--sweep`` also times every launch config in ``SWEEP`` (for tuning ``kernel_config``).

Without a GPU, ``--cpu-smoke`` runs the same code once at a tiny shape under
``TRITON_INTERPRET=1`` (a correctness smoke test; its times mean nothing).
"""
from __future__ import annotations

import argparse
import os
import sys
import time

if "--cpu-smoke" in sys.argv:  # must precede the first triton import
    os.environ["TRITON_INTERPRET"] = "1"

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "plugins"))

from madbench_layers.ops.selective_scan import selective_scan  # noqa: E402

SWEEP_BLOCK_T = (4, 8, 16)
SWEEP_BLOCKS = [(32, 1), (32, 2), (32, 4), (32, 8), (64, 1), (64, 2), (64, 4), (64, 8),
                (128, 2), (128, 4), (128, 8), (256, 8)]


def make_inputs(batch, seq_len, d_inner, d_state, device, seed=0):
    """Inputs as at Mamba's initialisation: steps log-uniform-ish in [1e-3, 0.1] (softplus of a
    shifted normal), S4D-real A = -(1..d_state), B and C standard normal, D near one."""
    g = torch.Generator(device="cpu").manual_seed(seed)
    u = torch.randn(batch, seq_len, d_inner, generator=g)
    delta = F.softplus(torch.randn(batch, seq_len, d_inner, generator=g) - 4.0)
    A = -torch.arange(1, d_state + 1, dtype=torch.float32).repeat(d_inner, 1)
    B, C = torch.randn(2, batch, seq_len, d_state, generator=g)
    D = 1 + 0.1 * torch.randn(d_inner, generator=g)
    return [x.to(device).requires_grad_() for x in (u, delta, A, B, C, D)]


def forward_backward(fn, args, dy):
    y = fn(*args)
    return (y, *torch.autograd.grad(y, args, dy))


def rel_error(a, b):
    return ((a.float() - b.float()).abs().max() / b.float().abs().max().clamp(min=1e-30)).item()


def timer(smoke):
    if smoke:
        def bench(fn):
            fn()
            start = time.perf_counter()
            fn()
            return 1e3 * (time.perf_counter() - start)
        return bench
    import triton.testing

    return lambda fn: triton.testing.do_bench(fn, warmup=25, rep=200, return_mode="median")


def sweep(args, dy, bench):
    """Time each (channels per program, warps) of SWEEP_BLOCKS for the forward kernel (with
    checkpoints) and the backward kernel separately, at each chunk length of SWEEP_BLOCK_T."""
    from madbench_layers.ops.selective_scan import triton_kernel as tk

    u, delta, A, B, C, D = (x.detach() for x in args)
    A3, D2 = A.unsqueeze(0), D.unsqueeze(0)
    best = []
    for block_t in SWEEP_BLOCK_T:
        times = {}
        for kind in ("fwd", "bwd"):
            for blocks in SWEEP_BLOCKS:
                config = {"block_t": block_t, "fwd": blocks, "bwd": blocks}
                _, states = tk.scan_forward(u, delta, A3, B, C, D2, True, config)
                if kind == "fwd":
                    run = lambda: tk.scan_forward(u, delta, A3, B, C, D2, True, config)  # noqa
                else:
                    run = lambda: tk.scan_backward(u, delta, A3, B, C, D2, states, dy, config)  # noqa
                try:
                    run()
                    times[kind, blocks] = bench(run)
                except Exception as exc:  # noqa: BLE001  (a config the compiler refuses)
                    print(f"  {kind} {block_t} {blocks} failed: {type(exc).__name__}")
        for kind in ("fwd", "bwd"):
            ranked = sorted((ms, blocks) for (k, blocks), ms in times.items() if k == kind)
            print(f"  block_t {block_t} {kind}: " + ", ".join(
                f"{blocks} {ms:.3f}" for ms, blocks in ranked[:5]))
        fwd = min((ms, b) for (k, b), ms in times.items() if k == "fwd")
        bwd = min((ms, b) for (k, b), ms in times.items() if k == "bwd")
        best.append((fwd[0] + bwd[0], block_t, fwd[1], bwd[1]))
    best.sort()
    print(f"  best: {best[0][0]:.3f} ms, block_t {best[0][1]}, fwd {best[0][2]}, bwd {best[0][3]}")
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cpu-smoke", action="store_true", help="tiny shape, interpreter, CPU")
    parser.add_argument("--seq-lens", type=int, nargs="+", default=[128, 256, 512, 1024])
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--d-inner", type=int, default=256)
    parser.add_argument("--d-state", type=int, default=4)
    parser.add_argument("--sweep", action="store_true", help="time every config in SWEEP")
    args = parser.parse_args()

    if args.cpu_smoke:
        device, shapes = "cpu", [(2, 24, 16, args.d_state)]
    else:
        if not torch.cuda.is_available():
            sys.exit("no CUDA device: run with --cpu-smoke for a smoke test on CPU")
        device = "cuda"
        shapes = [(args.batch, L, args.d_inner, args.d_state) for L in args.seq_lens]
    bench = timer(args.cpu_smoke)
    gpu = torch.cuda.get_device_name() if device == "cuda" else "cpu (interpreter)"

    rows = []
    for batch, seq_len, d_inner, d_state in shapes:
        inputs = make_inputs(batch, seq_len, d_inner, d_state, device)
        dy = torch.randn(batch, seq_len, d_inner, device=device)
        reference = lambda *a: selective_scan(*a, backend="reference")  # noqa: E731
        kernel = lambda *a: selective_scan(*a, backend="triton")  # noqa: E731
        ref_out = forward_backward(reference, inputs, dy)
        ker_out = forward_backward(kernel, inputs, dy)
        err_y = rel_error(ker_out[0], ref_out[0])
        err_grad = max(rel_error(k, r) for k, r in zip(ker_out[1:], ref_out[1:]))
        with torch.no_grad():
            t_ref_fwd = bench(lambda: reference(*inputs))
            t_ker_fwd = bench(lambda: kernel(*inputs))
        t_ref = bench(lambda: forward_backward(reference, inputs, dy))
        t_ker = bench(lambda: forward_backward(kernel, inputs, dy))
        rows.append((batch, seq_len, d_inner, d_state, t_ref_fwd, t_ker_fwd, t_ref, t_ker,
                     err_y, err_grad))
        print(f"L={seq_len}: reference {t_ref:.3f} ms, triton {t_ker:.3f} ms "
              f"({t_ref / t_ker:.1f}x), fwd {t_ref_fwd:.3f} / {t_ker_fwd:.3f} ms, "
              f"err y {err_y:.1e} grads {err_grad:.1e}", flush=True)
        if args.sweep and not args.cpu_smoke:
            sweep(inputs, dy, bench)
        del inputs, dy, ref_out, ker_out
        if device == "cuda":
            torch.cuda.empty_cache()

    lines = [f"Selective scan, fp32, on {gpu}; times in ms (median of do_bench).", "",
             "| batch | seq_len | d_inner | d_state | ref fwd | triton fwd | ref fwd+bwd "
             "| triton fwd+bwd | speed-up fwd+bwd | max rel err y | max rel err grads |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for b, L, d, n, rf, kf, r, k, ey, eg in rows:
        lines.append(f"| {b} | {L} | {d} | {n} | {rf:.3f} | {kf:.3f} | {r:.3f} | {k:.3f} "
                     f"| {r / k:.1f}x | {ey:.1e} | {eg:.1e} |")
    table = "\n".join(lines)
    print(table)
    if os.environ.get("OUT"):
        with open(os.path.join(os.environ["OUT"], "selective_scan.md"), "w") as f:
            f.write(table + "\n")


if __name__ == "__main__":
    main()
