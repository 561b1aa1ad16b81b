"""Do two versions of the bundled layers compute the same numbers? (An edit that should change
only how a kernel is called, e.g. registering it as a torch custom operator, changes the
layers' code identity and so their board entries' architecture hashes; this shows whether the
numbers moved.)

``save FILE`` builds each architecture (seed 0, in-context-recall baseline shapes: vocab 16,
length 128, or ``--length``: the recall tasks train at odd ones, 127, ...), runs one training
step's forward and backward on a fixed batch (bf16 autocast on CUDA, fp32 on a CPU), then
evaluates it in eval mode without gradients, and saves the logits, the loss, every gradient
and the evaluation logits. ``save FILE --kernels`` saves the Hyena family's three Triton
operators alone instead (tiny shapes; on a CPU under ``TRITON_INTERPRET=1``, where L 1,023
takes about 8 minutes; ``--gpu-tiles`` uses the tiles a GPU launches with, about 40 s). Run it
once per version (with the other version's ``plugins`` first on ``PYTHONPATH``), then
``compare A B`` prints, per architecture or operator, the largest output and gradient
differences and whether all are bitwise equal.

    python3 benchmarks/same_numbers.py save /tmp/new.pt
    PYTHONPATH=.wt-old/plugins python3 benchmarks/same_numbers.py save /tmp/old.pt
    python3 benchmarks/same_numbers.py compare /tmp/old.pt /tmp/new.pt
    TRITON_INTERPRET=1 python3 benchmarks/same_numbers.py save /tmp/k.pt --kernels --length 1023
"""
from __future__ import annotations

import argparse
import os
import sys

import torch

from madbench.architecture import resolve_architecture
from madbench.model import build_model
from madbench.trainer import autocast

ARCHS = ("hyena-swiglu", "mh-hyena-swiglu", "mamba", "mh-gla-swiglu", "mh-attention-swiglu")


def save(path: str, device: torch.device, archs: list[str], length: int = 128) -> None:
    precision = "bf16" if device.type == "cuda" else "fp32"
    out = {"device": str(device), "precision": precision, "length": length}
    gen = torch.Generator().manual_seed(1)
    x = torch.randint(0, 16, (8, length), generator=gen).to(device)
    y = torch.randint(0, 16, (8, length), generator=gen).to(device)
    for arch in archs:
        torch.manual_seed(0)
        model = build_model(resolve_architecture(arch), 16, length).to(device).train()
        with autocast(device, precision):
            logits = model(x)
        loss = torch.nn.functional.cross_entropy(logits.float().reshape(-1, 16), y.reshape(-1))
        loss.backward()
        model.eval()
        with torch.no_grad(), autocast(device, precision):
            evaluated = model(x)
        out[arch] = {"outputs": {"logits": logits.detach(), "loss": loss.detach(),
                                 "eval logits": evaluated},
                     "grads": {n: p.grad for n, p in model.named_parameters()
                               if p.grad is not None}}
    torch.save(_to_cpu(out), path)
    print(f"saved {len(archs)} architectures ({device}, {precision}) to {path}")


def save_kernels(path: str, device: torch.device, length: int, gpu_tiles: bool = False) -> None:
    """The Hyena family's three Triton operators alone, at tiny shapes, in float32 and bf16
    (float32 only under the interpreter, which does not support bf16):
    the multi-head and the gated long convolution and the short convolution over a transposed
    input (as the layers call them), output and every input's gradient. On a CPU run it under
    ``TRITON_INTERPRET=1``: a deterministic executor, so only the kernels' arithmetic counts.
    The interpreter gives the long convolution one small tile (16 time steps); ``gpu_tiles``
    makes it use the tiles a GPU launches with (``block_config`` as on a GPU)."""
    from madbench_layers.ops.long_conv import gated_long_conv, multihead_long_conv
    from madbench_layers.ops.long_conv import triton_kernel
    from madbench_layers.ops.short_conv import short_causal_conv
    if gpu_tiles:
        as_built = triton_kernel.block_config

        def block_config(*args, **kwargs):
            interpret, triton_kernel.INTERPRET = triton_kernel.INTERPRET, False  # while it runs
            try:
                return as_built(*args, **kwargs)
            finally:
                triton_kernel.INTERPRET = interpret
        triton_kernel.block_config = block_config
    gen = torch.Generator().manual_seed(0)

    def rand(*shape, scale=1.0):
        return torch.randn(*shape, generator=gen) * scale

    dtypes = [(torch.float32, "fp32"), (torch.bfloat16, "bf16")]
    if os.environ.get("TRITON_INTERPRET") == "1":
        # the interpreter does not support bf16: its tl.dot multiplies the raw bit patterns
        # (triton-lang/triton#11584), so both versions would give the same wrong numbers
        dtypes = dtypes[:1]
        print("bf16 left out: the Triton interpreter does not compute it", file=sys.stderr)
    out = {"device": str(device), "precision": " and ".join(tag for _, tag in dtypes),
           "length": length}
    for dtype, tag in dtypes:
        cases = {
            "multihead_long_conv": (multihead_long_conv, [
                rand(2, 2, 4, length), rand(2, 2, 4, length), rand(2, 2, 4, length),
                rand(2, 4, length, scale=length ** -0.5)], ("q", "k", "v", "h")),
            "gated_long_conv": (gated_long_conv, [
                rand(2, 8, length), rand(2, 8, length), rand(2, 8, length),
                rand(8, length, scale=length ** -0.5)], ("v", "x1", "x2", "h")),
            "short_causal_conv": (short_causal_conv, [
                rand(2, length, 8).transpose(1, 2), rand(24, 3), rand(24)], ("x", "w", "b")),
        }
        for name, (op, inputs, names) in cases.items():
            leaves = [t.to(device, dtype).requires_grad_() for t in inputs]
            result = op(*leaves, backend="triton")
            result.backward(rand(*result.shape).to(device, dtype))
            out[f"{name} {tag}"] = {"outputs": {"output": result.detach()},
                                    "grads": dict(zip(names, (t.grad for t in leaves)))}
    torch.save(_to_cpu(out), path)
    print(f"saved the Hyena kernels ({device}, L {length}) to {path}")


def _to_cpu(out: dict) -> dict:
    return {k: v if not isinstance(v, dict) else
            {part: {n: t.float().cpu() for n, t in tensors.items()} for part, tensors in v.items()}
            for k, v in out.items()}


def _largest(x: dict, y: dict) -> tuple[float, str]:
    return max(((x[n] - y[n]).abs().max().item(), n) for n in x)


def compare(a_path: str, b_path: str) -> int:
    a, b = torch.load(a_path), torch.load(b_path)
    print(f"{a_path} against {b_path} ({a['device']}, {a['precision']}, "
          f"L {a.get('length', 128)})")
    print("| case | largest output difference | largest gradient difference | "
          "relative to that gradient's largest entry | bitwise equal |")
    print("| --- | ---: | ---: | ---: | --- |")
    differ = 0
    for case in (k for k in a if k not in ("device", "precision", "length")):
        x, y = a[case], b[case]
        out_diff, out_name = _largest(x["outputs"], y["outputs"])
        grad, name = _largest(x["grads"], y["grads"])
        rel = grad / max(x["grads"][name].abs().max().item(), 1e-30)
        same = all(x[part].keys() == y[part].keys()
                   and all(torch.equal(x[part][n], y[part][n]) for n in x[part])
                   for part in ("outputs", "grads"))
        differ += not same
        print(f"| {case} | {out_diff:.3g} ({out_name}) | {grad:.3g} ({name}) | {rel:.3g} | "
              f"{'yes' if same else 'no'} |")
    return 1 if differ else 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("save")
    s.add_argument("file")
    s.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    s.add_argument("--archs", default=",".join(ARCHS))
    s.add_argument("--length", type=int, default=128)
    s.add_argument("--kernels", action="store_true",
                   help="the Hyena family's Triton operators alone, not the architectures")
    s.add_argument("--gpu-tiles", action="store_true",
                   help="with --kernels under the interpreter: the long convolution's GPU tiles")
    c = sub.add_parser("compare")
    c.add_argument("a")
    c.add_argument("b")
    args = ap.parse_args()
    if args.cmd == "save" and args.kernels:
        save_kernels(args.file, torch.device(args.device), args.length, args.gpu_tiles)
        return 0
    if args.cmd == "save":
        save(args.file, torch.device(args.device), args.archs.split(","), args.length)
        return 0
    return compare(args.a, args.b)


if __name__ == "__main__":
    sys.exit(main())
