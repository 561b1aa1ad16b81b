"""Issue #15's `mad-lab`-preset target, on a GPU: the same settings under the `paper` preset
and under `mad-lab` (evaluation at every epoch, best-loss epoch), with the graphed engine's
evaluations captured (the default) and, in the same call, eager (as before captured
evaluation). Target: `mad-lab` no more than 1.5x `paper`. `mad-lab` stops a run once its test
accuracy reaches 0.999, so on settings that converge it trains fewer epochs than `paper`;
`mad-lab-no-early-stop` trains every epoch (the same steps as `paper`, plus an evaluation per
epoch), which is the comparison of equal work. The best-of-sweep accuracies of the
two `mad-lab` variants must agree (the captured evaluation reports what the eager one does).

    python3 benchmarks/bench_presets.py --arch hyena-swiglu --task memorization \
        --settings baseline,vocab_size=8192

Each variant trains into a fresh run directory, one after the other, on one GPU (nothing else
should use it). Prints a markdown table; writes it to $OUT/bench_presets.md when set.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import torch


def eager_evaluations():
    """Graphed engines built from now on evaluate eagerly (the behaviour before captured
    evaluation); returns a function that undoes it."""
    from madbench import graphed
    original = graphed.Graphed.__init__

    def init(self, *args, **kwargs):
        kwargs["capture_evaluation"] = False
        original(self, *args, **kwargs)
    graphed.Graphed.__init__ = init
    return lambda: setattr(graphed.Graphed, "__init__", original)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--arch", default="hyena-swiglu")
    parser.add_argument("--task", default="memorization")
    parser.add_argument("--settings", default="baseline",
                        help="comma-separated setting names of the task")
    parser.add_argument("--variants", default="paper,mad-lab,mad-lab-no-early-stop,"
                        "mad-lab-eager-evaluation")
    parser.add_argument("--epochs", default=None,
                        help="override every preset's epochs (a quick check of this script)")
    args = parser.parse_args(argv)
    known = ("paper", "mad-lab", "mad-lab-no-early-stop", "mad-lab-eager-evaluation")
    variants = [v for v in args.variants.split(",") if v]
    if not variants or any(v not in known for v in variants):
        sys.exit(f"error: --variants takes a comma-separated subset of {', '.join(known)}")
    if torch.cuda.device_count() > 1:      # workers in other processes would not see the patch
        sys.exit("error: run on one GPU (CUDA_VISIBLE_DEVICES=0): with several, the sweep runs "
                 "in worker processes and the eager-evaluation variant would not apply")
    from madbench import evaluate
    device = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu"
    rows, seconds = [], {}
    for variant in variants:
        undo = eager_evaluations() if variant.endswith("eager-evaluation") else (lambda: None)
        try:
            with tempfile.TemporaryDirectory() as run_dir:
                start = time.perf_counter()
                overrides = {**({"epochs": args.epochs} if args.epochs else {}),
                             **({"early_stop_accuracy": "none"}
                                if variant.endswith("no-early-stop") else {})}
                results = evaluate(args.arch, tasks=[args.task],
                                   protocol="paper" if variant == "paper" else "mad-lab",
                                   run_dir=run_dir, settings=args.settings.split(","),
                                   **({"overrides": overrides} if overrides else {}))
                seconds[variant] = time.perf_counter() - start
        finally:
            undo()
        accuracies = ", ".join(f"{row['setting']} {row['best']['accuracy']:.3f}"
                               for row in results.settings)
        ratio = seconds[variant] / seconds["paper"] if "paper" in seconds else float("nan")
        rows.append(f"| {variant} | {seconds[variant]:.1f} | {ratio:.2f} | {accuracies} |")
    text = "\n".join([f"{args.arch}, {args.task} ({args.settings}), {device}:", "",
                      "| preset | seconds | x paper | best of sweep per setting |",
                      "| --- | ---: | ---: | --- |", *rows])
    print(text)
    if os.environ.get("OUT"):
        Path(os.environ["OUT"], "bench_presets.md").write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
