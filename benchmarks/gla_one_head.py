"""Why mad-lab's single-head GLA differs from madbench's (docs/fidelity.md), on the CPU: one
difference at a time, with mad-lab's Triton kernels run by Triton's interpreter (madbench's
layer takes its PyTorch path on the CPU; its Triton kernel is tested against the recurrence in
the interpreter by the test suite).

mad-lab's kernels use block pointers, which Triton's interpreter supports up to 3.3, so this
needs Triton 3.3 on the path (not installed into the environment):

    pip install --no-deps --target /tmp/triton33 triton==3.3.1
    PYTHONPATH=/tmp/triton33 python3 benchmarks/gla_one_head.py

The reference tree (``--ref``, default ``.ref/madlab``) is copied to a temporary folder and the
copy patched so that the interpreter can run it, without touching its arithmetic: the sequence
length becomes a compile-time constant, autotuning is dropped (one launch configuration), and
allocations and device guards written for CUDA follow the input's device. Prints a markdown
table of maximum absolute differences.
"""
from __future__ import annotations

import argparse
import os
import re
import shutil
import sys
import tempfile
import types
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def patched_copy(ref: Path, into: Path) -> Path:
    """A copy of mad-lab's ``mad`` package that Triton's interpreter can run on the CPU."""
    target = into / "mad"
    shutil.copytree(ref / "mad", target)
    for path in target.rglob("*.py"):
        text = original = path.read_text()
        if path.parent.name == "gla":   # T as a constant: the interpreter's loop bounds
            text = re.sub(r"(\n\s*)T,(\s*#[^\n]*)?\n",
                          lambda m: f"{m.group(1)}T: tl.constexpr,{m.group(2) or ''}\n", text)
        text = re.sub(r"@triton\.autotune\(\s*configs=\[.*?\],\s*key=\[.*?\],?\s*\)\n", "", text,
                      flags=re.S)
        text = text.replace('device="cuda"', "device=x.device")
        text = text.replace("with torch.cuda.device(x.device.index):", "if True:")
        if text != original:
            path.write_text(text)
    return into


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ref", default=".ref/madlab")
    args = parser.parse_args(argv)
    os.environ["TRITON_INTERPRET"] = "1"
    os.environ["TRITON_ALLOW_NON_CONSTEXPR_GLOBALS"] = "1"
    import triton
    if tuple(int(p) for p in triton.__version__.split(".")[:2]) > (3, 3):
        sys.exit(f"error: Triton {triton.__version__} cannot interpret mad-lab's block pointers; "
                 "put Triton 3.3 on PYTHONPATH (see this script's docstring)")
    if not (Path(args.ref) / "mad").is_dir():
        sys.exit(f"error: no reference tree in {args.ref} (docs/fidelity.md)")
    import torch
    import torch.nn.functional as F
    tmp = Path(tempfile.mkdtemp(prefix="madlab-interp-"))
    try:
        sys.path[:0] = [str(patched_copy(Path(args.ref), tmp)), str(ROOT / "benchmarks" /
                        "reference_shims"), str(ROOT / "plugins")]
        for name in ("transformers", "transformers.activations"):   # GLA's only use of it
            module = types.ModuleType(name)
            module.ACT2FN = {"swish": torch.nn.SiLU()}
            sys.modules.setdefault(name, module)
        # mad-lab's package __init__s import its training stack (Lightning...): bypass them
        for name in ("mad", "mad.model", "mad.model.layers", "mad.model.layers.ops"):
            module = types.ModuleType(name)
            module.__path__ = [str(tmp.joinpath(*name.split(".")))]
            sys.modules[name] = module
        from mad.model.layers.attention_gated_linear import GatedLinearAttention as Reference
        from mad.model.layers.ops.gla import chunk_gla as reference_op
        from madbench_layers.gla import GatedLinearAttention
        from madbench_layers.ops.gla import gla_recurrent
        from madlab_gla import GatedLinearAttention as StandardStrides
        rows = []

        def op_row(heads: int) -> None:
            torch.manual_seed(0)
            d = 128 // heads
            q, k, v = (torch.randn(1, heads, 64, d) for _ in range(3))
            gk = F.logsigmoid(torch.randn(1, heads, 64, d)) / 16
            exact = gla_recurrent(q * d ** -0.5, k, v, gk)
            theirs = reference_op(q, k, v, gk)
            theirs = theirs[0] if isinstance(theirs, tuple) else theirs
            rows.append(f"| mad-lab's chunk_gla op against the recurrence, one sequence, "
                        f"{heads} head(s) of {d} | {_max(theirs - exact)} |")

        def layer_row(cls, label: str, heads: int, batch: int) -> None:
            torch.manual_seed(0)
            kw = dict(expand_v=1, expand_k=1, gate_fn="swish", layernorm_eps=1e-5,
                      gate_logit_normalizer=16, gate_low_rank_dim=16, mode="chunk",
                      fuse_norm=False)
            ref = cls(dim=128, num_heads=heads, **kw)
            ours = GatedLinearAttention(128, num_heads=heads)
            ours.load_state_dict({k.replace("g_norm.weight", "norm_weight"): v
                                  for k, v in ref.state_dict().items()})
            x = torch.randn(batch, 64, 128)
            with torch.no_grad():
                diff = (ref(x) - ours(x)).abs().amax(dim=(1, 2))
            rows.append(f"| {label}, {heads} head(s), batch of {batch}, per sequence | "
                        + ", ".join(f"{float(d):.1e}" for d in diff) + " |")

        op_row(1)
        op_row(8)
        layer_row(Reference, "the layers with copied weights", 8, 3)
        layer_row(Reference, "the layers with copied weights", 1, 1)
        layer_row(Reference, "the layers with copied weights", 1, 3)
        layer_row(StandardStrides, "the same, mad-lab's kernels given standard strides", 1, 3)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print("| what is compared | max abs difference |\n| --- | ---: |\n" + "\n".join(rows))
    return 0


def _max(t) -> str:
    return f"{float(t.abs().max()):.1e}"


if __name__ == "__main__":
    sys.exit(main())
