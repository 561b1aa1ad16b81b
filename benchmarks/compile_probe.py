"""Where does torch.compile change a training step? (issue #15: compiled models trained to wrong
accuracies, cause not found.)

Builds the same model twice from one seed, compiles the second (the whole model, every block,
every mixer, or only the mixers of one kind: ``--scope``), and trains both with madbench's own
step (``trainer.Step``: gather, forward under autocast, cross-entropy, backward, AdamW) on the
same in-context-recall batches, plain (no CUDA graphs). Prints the first step's logits and the
parameters whose gradients differ most, then both losses (every step, or every ``--every``
steps), the first step whose losses differ by more than ``--tol`` (relative), and both
models' test accuracy at the end (the symptom issue #5 saw). Steps past one epoch (100 at
batch 128) go round the training set again in order, so ``--steps 20000`` is a whole
200-epoch run's count of steps. Bisect with ``--scope``: the smallest scope that still
differs holds the cause.

    python3 benchmarks/compile_probe.py --arch mH-Sg-mA-Sg --steps 20 --scope model
    python3 benchmarks/compile_probe.py --arch mH-Sg-mA-Sg --scope mixer:mh-hyena
    python3 benchmarks/compile_probe.py --arch mH-Sg-mA-Sg --steps 2000 --every 100
    python3 benchmarks/compile_probe.py --arch mH-Sg-mA-Sg --whole-runs 30   # the engine
    python3 benchmarks/compile_probe.py --arch mh-attention --device cpu --steps 2   # try-out

``--whole-runs E`` is the next difference: madbench's graphed engine itself (CUDA graphs on a
GPU) trains the in-context-recall baseline's six configurations for E epochs under ``paper``
(its cosine schedule over E epochs), once with eager models and once with compiled ones
(``--scope`` as above), and prints each configuration's test accuracy and wall time (the
compiled one's includes compilation): issue #5 saw wrong accuracies exactly there.
``--train-sequences N`` trains on the first N sequences only (a CPU try-out).

``--variants STEPS`` takes the differences between the two paths one at a time, for one
configuration (``--lr``, weight decay 0.1) over STEPS steps in a fixed batch order: the eager
model with the plain step (the reference); the compiled model with the plain step; with the
capturable optimiser (learning rate in a device tensor) but no graph; captured in a CUDA graph
on a side stream and replayed (as the graphed engine does); and the eager model captured.
Prints each variant's loss at a few steps and its final test accuracy (on a CPU, a try-out
without the captured variants).
"""
from __future__ import annotations

import argparse
import copy
import sys
from dataclasses import replace

import torch

from madbench.architecture import resolve_architecture
from madbench.model import build_model
from madbench.protocol import get_protocol
from madbench.tasks import generate, get_task
from madbench.trainer import Step, evaluate_model


def compile_scope(model: torch.nn.Module, spec, scope: str) -> tuple[torch.nn.Module, int]:
    """``model`` with the parts named by ``scope`` compiled (the returned module trains the
    same parameter tensors), and how many parts that is."""
    if scope == "model":
        return torch.compile(model, dynamic=False), 1
    parts = 0
    for block, layer in zip(model.encoder.blocks, spec.layers):
        if scope == "blocks":
            block.forward = torch.compile(block.forward, dynamic=False)
        elif scope == "mixers" or scope == f"mixer:{layer.mixer}":
            block.mixer = torch.compile(block.mixer, dynamic=False)
        else:
            continue
        parts += 1
    return model, parts


def relative(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a.float() - b.float()).abs().max() / b.float().abs().max().clamp_min(1e-30)).item()


def whole_runs(args, spec, device: torch.device, precision: str) -> int:
    """Eager against compiled models, trained by the graphed engine as a sweep trains them."""
    from madbench.graphed import train_graphed
    from madbench.tasks import generate_splits
    task = get_task("in-context-recall")
    train, test = generate_splits(task, "baseline", 0)
    protocol = get_protocol("paper", {"epochs": str(args.whole_runs)})
    if device.type != "cuda":
        protocol = replace(protocol, batch_size=8)
    n = args.train_sequences or train.inputs.shape[0]
    to = (lambda a: torch.from_numpy(a).to(device))
    train_data = (to(train.inputs[:n]), to(train.targets[:n]))
    test_data = (to(test.inputs), to(test.targets))
    vocab, seq_len = train.setting.params["vocab_size"], train.setting.params["seq_len"]

    def make_model():
        return build_model(spec, vocab, seq_len, task.model)

    configs = protocol.configs()
    print(f"{args.arch}, whole runs: {args.whole_runs} epochs of {n} sequences, "
          f"{len(configs)} configurations, graphed engine, scope {args.scope}, {device}, "
          f"{precision}, torch {torch.__version__}", flush=True)
    results = {}
    for name, build in (("eager", make_model),
                        ("compiled", lambda: compile_scope(make_model(), spec, args.scope)[0])):
        results[name] = train_graphed(build, train_data, test_data, vocab, configs, protocol, 0,
                                      precision)
    print("| lr | wd | accuracy eager | accuracy compiled | seconds eager | seconds compiled |")
    print("| ---: | ---: | ---: | ---: | ---: | ---: |")
    for (lr, wd), a, b in zip(configs, results["eager"], results["compiled"]):
        print(f"| {lr:g} | {wd:g} | {a.accuracy:.4f} | {b.accuracy:.4f} | {a.seconds:.1f} | "
              f"{b.seconds:.1f} |")
    worst = max(abs(a.accuracy - b.accuracy)
                for a, b in zip(results["eager"], results["compiled"]))
    print(f"largest accuracy difference: {worst:.4f}")
    return 0


def variants(args, spec, device: torch.device, precision: str) -> int:
    """One difference at a time between the plain compiled step and the graphed engine's."""
    from madbench.cuda_graphs import capture_step
    task = get_task("in-context-recall")
    data = generate(task, "baseline", "train", 0)
    test = generate(task, "baseline", "test", 0)
    vocab = data.setting.params["vocab_size"]
    train = (torch.from_numpy(data.inputs).to(device), torch.from_numpy(data.targets).to(device))
    protocol = get_protocol("paper")
    batch = 128 if device.type == "cuda" else 8
    per_epoch = train[0].shape[0] // batch
    torch.manual_seed(0)
    base = build_model(spec, vocab, data.setting.params["seq_len"]).to(device)
    marks = sorted(m for m in {1, 10, 50, 100, args.variants // 2, args.variants}
                   if 1 <= m <= args.variants)
    print(f"{args.arch}, variants over {args.variants} steps, lr {args.lr:g}, scope "
          f"{args.scope}, {device}, {precision}, torch {torch.__version__}", flush=True)
    print("| variant | " + " | ".join(f"loss @{m}" for m in marks) + " | accuracy |")
    print("| --- | " + " | ".join("---:" for _ in marks) + " | ---: |")
    for name, compiled, capturable, graph in (
            ("eager, plain step", False, False, False),
            ("compiled, plain step", True, False, False),
            ("compiled, capturable optimiser", True, True, False),
            ("compiled, captured", True, True, True),
            ("eager, captured", False, True, True)):
        if graph and device.type != "cuda":
            continue                            # a CPU try-out: no graphs
        model = copy.deepcopy(base)
        if compiled:
            model = compile_scope(model, spec, args.scope)[0]
        step = Step(model, train, args.lr, 0.1, protocol, args.variants, precision,
                    capturable=capturable)
        idx = torch.zeros(batch, dtype=torch.long, device=device)
        run = (lambda: step(idx))
        if graph:
            stream = torch.cuda.Stream(device)
            g = capture_step(run, [*model.parameters(), step.loss_sum], stream, None, step.opt)
            run = g.replay
        losses = {}
        for i in range(args.variants):
            start = (i % per_epoch) * batch
            idx.copy_(torch.arange(start, start + batch, device=device))
            before = step.loss_sum.clone()
            step.set_lr(step.lrs[i])
            if graph:                           # the batch and lr are written on the main stream
                stream.wait_stream(torch.cuda.current_stream(device))
                with torch.cuda.stream(stream):
                    run()
                torch.cuda.current_stream(device).wait_stream(stream)
            else:
                if capturable:                  # a replay writes the gradients afresh
                    step.opt.zero_grad(set_to_none=True)
                run()
            if i + 1 in marks:
                losses[i + 1] = (step.loss_sum - before).item()
        acc = evaluate_model(model, torch.from_numpy(test.inputs).to(device),
                             torch.from_numpy(test.targets).to(device), vocab, batch,
                             precision)["accuracy"]
        print(f"| {name} | " + " | ".join(f"{losses[m]:.4f}" for m in marks)
              + f" | {acc:.4f} |", flush=True)
    return 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--arch", default="mH-Sg-mA-Sg")
    ap.add_argument("--scope", default="model",
                    help="model, blocks, mixers or mixer:NAME (what is compiled)")
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--tol", type=float, default=0.02)
    ap.add_argument("--every", type=int, default=0,
                    help="print the losses every K steps (default: every step up to 50 "
                         "steps, else 20 lines)")
    ap.add_argument("--whole-runs", type=int, default=0, metavar="EPOCHS",
                    help="train whole runs with the graphed engine instead (see above)")
    ap.add_argument("--variants", type=int, default=0, metavar="STEPS",
                    help="take the differences to the graphed engine one at a time (see above)")
    ap.add_argument("--train-sequences", type=int, default=0,
                    help="with --whole-runs: the first N training sequences only")
    args = ap.parse_args()
    if args.steps < 1 or args.every < 0 or args.whole_runs < 0 or args.train_sequences < 0 or args.variants < 0:
        print("error: --steps must be at least 1, --every, --whole-runs and --train-sequences "
              "at least 0", file=sys.stderr)
        return 2
    every = args.every or (1 if args.steps <= 50 else max(1, args.steps // 20))
    if not (args.scope in ("model", "blocks", "mixers") or args.scope.startswith("mixer:")):
        print(f"error: --scope {args.scope!r} is not model, blocks, mixers or mixer:NAME",
              file=sys.stderr)
        return 2
    device = torch.device(args.device)
    precision = "bf16" if device.type == "cuda" else "fp32"
    spec = resolve_architecture(args.arch)
    if args.whole_runs:
        return whole_runs(args, spec, device, precision)
    if args.variants:
        return variants(args, spec, device, precision)
    task = get_task("in-context-recall")
    data = generate(task, "baseline", "train", 0)
    vocab, length = data.setting.params["vocab_size"], data.inputs.shape[1]
    protocol = get_protocol("paper")
    batch = 128 if device.type == "cuda" else 8
    train = (torch.from_numpy(data.inputs).to(device),
             torch.from_numpy(data.targets).to(device))
    per_epoch = train[0].shape[0] // batch
    torch.manual_seed(0)
    eager = build_model(spec, vocab, data.setting.params["seq_len"]).to(device)
    other = copy.deepcopy(eager)
    compiled, parts = compile_scope(other, spec, args.scope)
    if not parts:
        names = sorted({layer.mixer for layer in spec.layers})
        print(f"error: no mixer {args.scope[6:]!r} in {args.arch} (its mixers: "
              f"{', '.join(names)})", file=sys.stderr)
        return 2
    runs = [Step(m, train, args.lr, 0.1, protocol, args.steps, precision)
            for m in (eager, compiled)]
    print(f"{args.arch}, scope {args.scope} ({parts} compiled), {device}, {precision}, batch "
          f"{batch} x {length}, torch {torch.__version__}", flush=True)
    losses = [[], []]
    first_bad = None
    for step in range(args.steps):
        start = (step % per_epoch) * batch
        idx = torch.arange(start, start + batch, device=device)
        for run, out in zip(runs, losses):
            before = run.loss_sum.item()
            run.set_lr(run.lrs[step])
            run(idx)
            out.append(run.loss_sum.item() - before)
        if step == 0:
            params = dict(eager.named_parameters())
            diffs = sorted(((relative(p.grad, params[name].grad), name)
                            for name, p in ((k.replace("_orig_mod.", ""), v)
                                            for k, v in other.named_parameters())
                            if p.grad is not None and params[name].grad is not None),
                           reverse=True)
            print("first step, largest relative gradient differences (compiled vs eager):")
            for d, name in diffs[:8]:
                print(f"  {d:.2e}  {name}")
        a, b = losses[0][-1], losses[1][-1]
        bad = abs(a - b) > args.tol * abs(a)
        if bad and first_bad is None:
            first_bad = step + 1
        if (step + 1) % every == 0 or step + 1 == args.steps or (bad and first_bad == step + 1):
            print(f"step {step + 1}: loss eager {a:.5f}, compiled {b:.5f}"
                  f"{'  <-' if bad else ''}", flush=True)
    print(f"first step differing by more than {args.tol:g} (relative): "
          f"{first_bad if first_bad else 'none'}")
    test = generate(task, "baseline", "test", 0)
    inputs, targets = (torch.from_numpy(test.inputs).to(device),
                       torch.from_numpy(test.targets).to(device))
    accs = [evaluate_model(m, inputs, targets, vocab, batch, precision)["accuracy"]
            for m in (eager, compiled)]
    print(f"test accuracy after {args.steps} steps: eager {accs[0]:.4f}, compiled {accs[1]:.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
