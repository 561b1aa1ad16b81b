"""Do two versions of the bundled layers compute the same numbers? (An edit that should change
only how a kernel is called, e.g. registering it as a torch custom operator, changes the
layers' code identity and so their board entries' architecture hashes; this shows whether the
numbers moved.)

``save FILE`` builds each architecture (seed 0, in-context-recall baseline shapes: vocab 16,
length 128, or ``--length``: the recall tasks train at odd ones, 127, ...), runs one training
step's forward and backward on a fixed batch (bf16 autocast on CUDA, fp32 on a CPU), then
evaluates it in eval mode without gradients, and saves the logits, the loss, every gradient
and the evaluation logits. Run it once per version (with the other
version's ``plugins`` first on ``PYTHONPATH``), then ``compare A B`` prints, per architecture,
the largest difference of each kind and whether all are bitwise equal.

    python3 benchmarks/same_numbers.py save /tmp/new.pt
    PYTHONPATH=.wt-old/plugins python3 benchmarks/same_numbers.py save /tmp/old.pt
    python3 benchmarks/same_numbers.py compare /tmp/old.pt /tmp/new.pt
"""
from __future__ import annotations

import argparse
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
        out[arch] = {"logits": logits.detach().float().cpu(), "loss": loss.detach().cpu(),
                     "eval": evaluated.float().cpu(),
                     "grads": {n: p.grad.float().cpu() for n, p in model.named_parameters()
                               if p.grad is not None}}
    torch.save(out, path)
    print(f"saved {len(archs)} architectures ({device}, {precision}) to {path}")


def compare(a_path: str, b_path: str) -> int:
    a, b = torch.load(a_path), torch.load(b_path)
    print(f"{a_path} against {b_path} ({a['device']}, {a['precision']}, "
          f"L {a.get('length', 128)})")
    print("| architecture | logits | eval logits | loss | largest gradient difference | "
          "relative to that gradient's largest entry | bitwise equal |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | --- |")
    differ = 0
    for arch in (k for k in a if k not in ("device", "precision", "length")):
        x, y = a[arch], b[arch]
        diffs = [(x[k] - y[k]).abs().max().item() for k in ("logits", "eval", "loss")]
        grad, name = max(((x["grads"][n] - y["grads"][n]).abs().max().item(), n)
                         for n in x["grads"])
        rel = grad / max(x["grads"][name].abs().max().item(), 1e-30)
        same = (all(torch.equal(x[k], y[k]) for k in ("logits", "eval", "loss"))
                and x["grads"].keys() == y["grads"].keys()
                and all(torch.equal(x["grads"][n], y["grads"][n]) for n in x["grads"]))
        differ += not same
        print(f"| {arch} | {diffs[0]:.3g} | {diffs[1]:.3g} | {diffs[2]:.3g} | {grad:.3g} "
              f"({name}) | {rel:.3g} | {'yes' if same else 'no'} |")
    return 1 if differ else 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("save")
    s.add_argument("file")
    s.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    s.add_argument("--archs", default=",".join(ARCHS))
    s.add_argument("--length", type=int, default=128)
    c = sub.add_parser("compare")
    c.add_argument("a")
    c.add_argument("b")
    args = ap.parse_args()
    if args.cmd == "save":
        save(args.file, torch.device(args.device), args.archs.split(","), args.length)
        return 0
    return compare(args.a, args.b)


if __name__ == "__main__":
    sys.exit(main())
