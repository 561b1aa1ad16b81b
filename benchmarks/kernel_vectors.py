"""Do the Hyena convolution kernels vectorise their memory accesses at a given sequence length?
Runs on the CPU, no GPU needed: the launchers run on CPU tensors laid out as the Hyena layer
lays them out (the short convolution over the transposed input projection, the long
convolution over its output's three split views, then the backward passes), each kernel
launch is captured instead of run, and the kernel is compiled for an H100/H200 (sm_90) with
the argument specialisation Triton would give those arguments (pointers and integers divisible
by 16, integers equal to 1 folded in). Prints, per kernel and length, the global loads and
stores in the PTX by width: vector (``.v2``/``.v4``) or scalar.

    python benchmarks/kernel_vectors.py                       # L 127 and 128
    python benchmarks/kernel_vectors.py --lengths 255,256 --multihead

To compare with another version of the kernels, put its plugin tree first on PYTHONPATH.
"""
from __future__ import annotations

import argparse
import collections
import re

import torch
import triton
from triton.backends.compiler import GPUTarget
from triton.compiler import ASTSource

from madbench_layers.ops.long_conv import triton_kernel as long_conv
from madbench_layers.ops.rows import aligned
from madbench_layers.ops.short_conv import triton_kernel as short_conv

_TYPES = {torch.bfloat16: "*bf16", torch.float16: "*fp16", torch.float32: "*fp32"}


class Capture:
    """Stands in for a JIT kernel: ``kernel[grid](*args, **meta)`` records the call."""

    def __init__(self, kernel, calls: list):
        self.kernel, self.calls = kernel, calls

    def __getitem__(self, grid):
        return lambda *args, **meta: self.calls.append((self.kernel, args, meta))


def ptx_accesses(kernel, args: tuple, meta: dict) -> collections.Counter:
    """Compile one captured launch for sm_90 and count its global accesses by kind."""
    names = kernel.arg_names
    values = dict(zip(names, args)) | meta
    signature, constexprs, attrs = {}, {}, {}
    for i, name in enumerate(names):
        value = values[name]
        if isinstance(value, torch.Tensor):
            signature[name] = _TYPES[value.dtype]
            if value.data_ptr() % 16 == 0:
                attrs[(i,)] = [["tt.divisibility", 16]]
        elif isinstance(value, bool) or not isinstance(value, int) or name in meta \
                or value == 1:
            signature[name] = "constexpr"
            constexprs[name] = value
        else:
            signature[name] = "i64" if abs(value) >= 2 ** 31 else "i32"
            if value % 16 == 0:
                attrs[(i,)] = [["tt.divisibility", 16]]
    options = {k: meta[k] for k in ("num_warps", "num_stages") if k in meta}
    compiled = triton.compile(ASTSource(kernel, signature, constexprs, attrs),
                              target=GPUTarget("cuda", 90, 32), options=options)
    ptx = compiled.asm["ptx"]
    counts = collections.Counter()
    for op, width in re.findall(r"\b(ld|st)\.global[.\w]*?(\.v[248])?\.[bfsu]\d+", ptx):
        counts[f"{op} {'vector' if width else 'scalar'}"] += 1
    for size in re.findall(r"cp\.async\.c[ag]\.shared\.global[^,]*, \[[^]]*\], (0x[0-9a-f]+|\d+)",
                           ptx):
        counts[f"ld {'vector' if int(size, 0) >= 8 else 'scalar'}"] += 1   # asynchronous copies
    return counts


KERNELS = ((long_conv, ("_forward_kernel", "_backward_inputs_kernel", "_backward_filter_kernel")),
           (short_conv, ("_forward", "_backward")))


def hyena_launches(length: int, multihead: bool, batch: int = 32, channels: int = 16):
    """Every kernel launch of one forward and backward pass of the Hyena convolutions."""
    calls: list = []
    originals = [(m, n, getattr(m, n)) for m, names in KERNELS for n in names]
    for module, name, kernel in originals:
        setattr(module, name, Capture(kernel, calls))
    try:
        run_hyena(length, multihead, batch, channels)
    finally:
        for module, name, kernel in originals:
            setattr(module, name, kernel)
    return calls


def run_hyena(length: int, multihead: bool, batch: int, channels: int) -> None:
    """The launchers as the layer calls them, on CPU tensors laid out as it lays them out."""
    dtype = torch.bfloat16
    proj = torch.randn(batch, length, 3 * channels).to(dtype)          # (B, L, 3C)
    weight = torch.randn(3 * channels, 3).to(dtype)
    u = short_conv.forward(proj.transpose(1, 2), weight, weight[:, 0])   # (B, 3C, L)
    if multihead:                                # 4-wide heads: R = G = 4
        shape, filters = (1, batch, channels // 4, 4, length), (1, channels // 4, 4, length)
    else:
        shape, filters = (1, batch, channels, 1, length), (1, channels, 1, length)
    v, x1, x2 = (t.reshape(shape) for t in u.split(channels, dim=1))
    taps = long_conv.padded_taps(torch.randn(filters), dtype)
    y, c, kept_u = long_conv.forward(v, x1, x2, taps)
    gy = aligned(torch.randn(batch, length, v.shape[2] * v.shape[3]).to(dtype)
                 .transpose(1, 2).reshape(y.shape))
    v, x1, x2 = (aligned(t) for t in (v, x1, x2))
    _, _, _, gc = long_conv.backward_inputs(gy, v, x1, x2, taps, c)
    if kept_u.numel():
        long_conv.backward_filter(gy if gc is None else gc, kept_u, None,
                                  x2 if gc is None else None, taps.shape[2])
    else:
        long_conv.backward_filter(gy, v, x1, x2, taps.shape[2])
    short_conv.backward(torch.randn(batch, 3 * channels, length).to(dtype),
                        proj.transpose(1, 2), weight)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--lengths", default="127,128")
    ap.add_argument("--multihead", action="store_true", help="multi-head Hyena's shapes")
    args = ap.parse_args()
    lengths = [int(x) for x in args.lengths.split(",")]
    print("| kernel | L | loads vector / scalar | stores vector / scalar |")
    print("| --- | ---: | ---: | ---: |")
    for length in lengths:
        for kernel, launch_args, meta in hyena_launches(length, args.multihead):
            n = ptx_accesses(kernel, launch_args, meta)
            print(f"| {kernel.fn.__name__} | {length} | {n['ld vector']} / {n['ld scalar']} | "
                  f"{n['st vector']} / {n['st scalar']} |")

if __name__ == "__main__":
    main()
