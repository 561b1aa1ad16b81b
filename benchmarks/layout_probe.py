"""Does an odd sequence length slow the (B, C, L)-layout kernels down? In-context and noisy
recall train at L = seq_len - 1 (127, 255, ...), so rows of L bf16 values start at addresses
Triton cannot assume 16-byte aligned; the kernel benchmarks ran at L = 128.

Times, on CUDA (``triton.testing.do_bench``, median ms, L2 flushed), forward and
forward+backward of the Hyena layer's two convolutions at the faithful Hyena's shapes (batch
128, 512 long-convolution channels, 1,536 short-convolution channels from a 384-channel
projection), the streams laid out as the layer lays them out (split views of one
``(B, 3C, L)`` tensor; the output gradients likewise), at three layouts: L = 128; L = 127
(rows at stride 127); L = 127 in rows of a 128-wide buffer (stride 128, the last column
unused). Also the multi-head form. Written for the kernels of the fourteenth session, whose
outputs were contiguous; since the odd-length fix (twentieth session, benchmarks/RESULTS.md) the
ops write rows at strides rounded up to 16 and copy inputs that are not so laid out, so the
stride-127 layout now times that copy.

    python benchmarks/layout_probe.py            # CUDA
    python benchmarks/layout_probe.py --cpu-smoke   # the Triton interpreter, tiny shapes
"""
from __future__ import annotations

import argparse
import os
import sys

CPU_SMOKE = "--cpu-smoke" in sys.argv
if CPU_SMOKE:
    os.environ["TRITON_INTERPRET"] = "1"

import torch  # noqa: E402

BACKEND = "triton" if CPU_SMOKE else "auto"    # on the CPU, the kernels under the interpreter

from madbench_layers.ops.long_conv import gated_long_conv, multihead_long_conv  # noqa: E402
from madbench_layers.ops.short_conv import short_causal_conv  # noqa: E402


def streams(batch, channels, length, width, dtype, device):
    """Three (batch, channels, length) views of one (batch, 3 channels, width) leaf."""
    base = torch.randn(batch, 3 * channels, width, device=device).to(dtype)
    base.requires_grad_()
    return base, base[..., :length].split(channels, dim=1)


def like(y, width):
    """A random gradient for ``y`` (..., L), in rows of ``width`` (the layout's row stride)."""
    return torch.randn(*y.shape[:-1], width, device=y.device).to(y.dtype)[..., :y.shape[-1]]


def time_it(fn, device):
    if device.type != "cuda":
        fn()
        return float("nan")
    import triton
    return triton.testing.do_bench(fn, warmup=5, rep=30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cpu-smoke", action="store_true",
                        help="tiny shapes on the CPU, the kernels under the Triton interpreter")
    parser.parse_args()
    if not CPU_SMOKE and not torch.cuda.is_available():
        sys.exit("error: needs a CUDA device (or --cpu-smoke)")
    device = torch.device("cpu" if CPU_SMOKE else "cuda")
    dtype = torch.float32 if CPU_SMOKE else torch.bfloat16
    batch, channels, proj = (4, 16, 8) if CPU_SMOKE else (128, 512, 384)
    heads, d = (2, 4) if CPU_SMOKE else (16, 8)
    layouts = [("L 128", 32 if CPU_SMOKE else 128, 32 if CPU_SMOKE else 128),
               ("L 127", 31 if CPU_SMOKE else 127, 31 if CPU_SMOKE else 127),
               ("L 127 in rows of 128", 31 if CPU_SMOKE else 127, 32 if CPU_SMOKE else 128)]
    print("| op | layout | forward ms | forward+backward ms |")
    print("| --- | --- | ---: | ---: |")
    for name, length, width in layouts:
        h = (torch.randn(channels, length, device=device) / length).requires_grad_()
        base, (x0, x1, v) = streams(batch, channels, length, width, dtype, device)

        def hyena():
            return gated_long_conv(v, x1, x0, h, backend=BACKEND)
        y = hyena()
        gy = like(y, width)

        def hyena_bwd():
            torch.autograd.grad(hyena(), (base, h), gy)
        print(f"| long conv (Hyena, {channels} ch) | {name} | {time_it(hyena, device):.3f} | "
              f"{time_it(hyena_bwd, device):.3f} |", flush=True)

        hh = (torch.randn(heads, length, device=device) / length)[:, None, :] \
            .expand(heads, d, length).contiguous().requires_grad_()
        mbase, (q, vv, k) = streams(batch, heads * d, length, width, dtype, device)
        q, vv, k = (s.reshape(batch, heads, d, length) for s in (q, vv, k))

        def mh():
            return multihead_long_conv(q, k, vv, hh, backend=BACKEND)
        gm = like(mh(), width)

        def mh_bwd():
            torch.autograd.grad(mh(), (mbase, hh), gm)
        print(f"| long conv (mH, {heads} x {d}) | {name} | {time_it(mh, device):.3f} | "
              f"{time_it(mh_bwd, device):.3f} |", flush=True)

        xp = torch.randn(batch, width, proj, device=device).to(dtype)[:, :length]
        xp.requires_grad_()
        w = torch.randn(3 * channels, 3, device=device, requires_grad=True)
        b = torch.randn(3 * channels, device=device, requires_grad=True)

        def short():
            return short_causal_conv(xp.transpose(1, 2), w.to(dtype), b.to(dtype),
                                     backend=BACKEND)
        gs = like(short(), width)

        def short_bwd():
            torch.autograd.grad(short(), (xp, w, b), gs)
        print(f"| short conv ({3 * channels} ch, 4 tied) | {name} | "
              f"{time_it(short, device):.3f} | {time_it(short_bwd, device):.3f} |", flush=True)


if __name__ == "__main__":
    main()
