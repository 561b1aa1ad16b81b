"""Why does a fidelity arm diverge? The same arm, setting and configurations trained for the
first few epochs of their ``paper`` schedule under several variants, one difference each, every
variant in its own process (its environment is the difference):

- ``panel``: as the fidelity panel trains it (graphed engine, CUDA graphs, bf16, the bundled
  Triton kernels on CUDA);
- ``eager``: the same without CUDA graphs (``MADBENCH_CUDA_GRAPHS=0``);
- ``reference-kernels``: the same with the pure-PyTorch ops (``MADBENCH_KERNELS=reference``);
- ``fp32``: the same in float32;
- ``locate``: eager, one configuration at a time, each module's forward output and backward
  input gradient checked after every call; names the first that is not finite.

Prints one line per variant and configuration: the epoch whose training loss was not finite
(or "finite" through ``--epochs``), and the software it ran on.

    python3 benchmarks/divergence.py hyena --task selective-copying --config 1e-4,0.1 \
        --config 1e-3,0 --epochs 25 --variants panel,eager,reference-kernels,fp32,locate
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
VARIANTS = {"panel": {}, "eager": {"MADBENCH_CUDA_GRAPHS": "0"},
            "reference-kernels": {"MADBENCH_KERNELS": "reference"}, "fp32": {},
            "locate": {"MADBENCH_CUDA_GRAPHS": "0"}}


class NonFinite(Exception):
    """A module produced a non-finite forward output or backward gradient."""


def _finite(xs) -> bool:
    import torch
    xs = xs if isinstance(xs, (tuple, list)) else (xs,)
    return all(torch.isfinite(x).all().item() for x in xs
               if isinstance(x, torch.Tensor) and x.is_floating_point())


def _watch(model) -> list:
    """Hooks on every module of ``model`` that raise NonFinite naming the first module (forward
    order, then backward order) whose output or input gradient is not finite."""
    handles = []
    for name, module in model.named_modules():
        def fwd(mod, args, out, name=name):
            if not _finite(out):
                raise NonFinite(f"forward output of {name or 'model'} "
                                f"({type(mod).__name__}); inputs finite: {_finite(args)}")

        def bwd(mod, grad_in, grad_out, name=name):
            if not _finite(grad_in):
                raise NonFinite(f"backward input gradient of {name or 'model'} "
                                f"({type(mod).__name__}); output gradient finite: "
                                f"{_finite(grad_out)}")
        handles.append(module.register_forward_hook(fwd))
        handles.append(module.register_full_backward_hook(bwd))
    return handles


def variant_worker(arm: str, task_name: str, setting: str, configs: list, epochs: int,
                   variant: str, seed: int) -> dict:
    """Train ``configs`` of ``arm`` for ``epochs`` epochs of their paper schedule."""
    import torch
    from fidelity import arm_spec
    from madbench.graphed import Graphed
    from madbench.loop import epoch_plan, shuffled_batches, train_epochs
    from madbench.model import build_model
    from madbench.protocol import get_protocol
    from madbench.sweep import effective_setting, select_settings
    from madbench.tasks import generate_splits, get_task
    from madbench.trainer import Eager, Step, resolve_precision
    from madbench.cuda_graphs import capture_enabled

    dev = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    precision = "fp32" if variant == "fp32" else resolve_precision(dev, "auto")
    spec, protocol, task = arm_spec(arm), get_protocol("paper"), get_task(task_name)
    eff = effective_setting(select_settings(task, [setting])[0], protocol)
    train_ds, test_ds = generate_splits(task, eff, seed)
    data = [torch.from_numpy(a).to(dev) for a in
            (train_ds.inputs, train_ds.targets, test_ds.inputs, test_ds.targets)]
    n = data[0].shape[0]
    steps_per_epoch, full = epoch_plan(n, protocol)
    groups = [[c] for c in configs] if variant == "locate" else [configs]
    out = []
    for group in groups:
        steps = []
        for lr, wd in group:
            torch.manual_seed(seed)
            model = build_model(spec, eff.vocab_size, data[0].shape[1], task.model).to(dev)
            model.train()
            steps.append(Step(model, data[:2], lr, wd, protocol, full * steps_per_epoch,
                              precision, capturable=capture_enabled(dev)))
        rest = (data[2:], eff.vocab_size, protocol.batch_size, precision)
        if capture_enabled(dev):
            sizes = sorted({min(protocol.batch_size, n - b * protocol.batch_size)
                            for b in range(steps_per_epoch)}, reverse=True)
            engine = Graphed(steps, sizes, *rest)
        else:
            engine = Eager(steps, *rest)
        where = None
        handles = _watch(steps[0].model) if variant == "locate" else []
        start = time.perf_counter()
        try:
            runs, _ = train_epochs(engine, shuffled_batches(n, protocol.batch_size, seed, dev),
                                   epochs)
        except NonFinite as exc:
            runs, where = None, str(exc)
        for h in handles:
            h.remove()
        for i, (lr, wd) in enumerate(group):
            if runs is None:
                out.append({"lr": lr, "wd": wd, "first_non_finite": where})
            else:
                out.append({"lr": lr, "wd": wd, "diverged_at_epoch":
                            runs[i].epochs if runs[i].diverged else None,
                            "epochs": runs[i].epochs, "last_loss": runs[i].epoch_loss})
        out[-1]["seconds"] = round(time.perf_counter() - start, 1)
    return {"variant": variant, "precision": precision, "runs": out}


def software() -> str:
    import torch
    try:
        import triton
        tv = triton.__version__
    except ImportError:
        tv = "none"
    gpu = torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu"
    mps = "on" if os.environ.get("CUDA_MPS_PIPE_DIRECTORY") else "off"
    return f"torch {torch.__version__}, triton {tv}, {gpu}, MPS {mps}"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("arm", help="a fidelity arm (benchmarks/fidelity.py ARMS)")
    p.add_argument("--task", required=True)
    p.add_argument("--setting", default="num_train_examples=800")
    p.add_argument("--config", action="append", required=True, metavar="LR,WD")
    p.add_argument("--epochs", type=int, default=20)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--variants", default="panel,eager,reference-kernels,fp32,locate")
    p.add_argument("--ref", default=".ref/madlab")
    p.add_argument("--worker", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    sys.path.insert(0, str(HERE))
    from fidelity import ARMS, reference_env
    try:
        configs = [tuple(float(x) for x in c.split(",")) for c in args.config]
        assert all(len(c) == 2 for c in configs)
    except (ValueError, AssertionError):
        sys.exit(f"error: --config takes LR,WD, not {args.config}")
    if args.arm not in ARMS:
        sys.exit(f"error: unknown arm {args.arm!r} (arms: {', '.join(ARMS)})")
    variants = args.variants.split(",")
    unknown = [v for v in variants if v not in VARIANTS]
    if unknown or args.epochs < 1:
        sys.exit(f"error: unknown variant(s) {unknown} (variants: {', '.join(VARIANTS)}) "
                 "or --epochs below 1")
    if args.worker:
        print(json.dumps(variant_worker(args.arm, args.task, args.setting, configs,
                                        args.epochs, args.worker, args.seed)))
        return 0
    print(software(), flush=True)
    failed = 0
    for variant in variants:
        env = {**reference_env(args.ref), **ARMS[args.arm].get("env", {}), **VARIANTS[variant]}
        proc = subprocess.run([sys.executable, __file__, *(argv or sys.argv[1:]),
                               "--worker", variant], env=env, capture_output=True, text=True)
        if proc.returncode:
            failed += 1
            tail = (proc.stderr.strip().splitlines() or ["no message"])[-1]
            print(f"{variant}: failed: {tail}", flush=True)
            continue
        result = json.loads(proc.stdout.strip().splitlines()[-1])
        for r in result["runs"]:
            what = (r.get("first_non_finite") or
                    (f"not finite at epoch {r['diverged_at_epoch']}" if r.get("diverged_at_epoch")
                     else f"finite through epoch {r['epochs']} (loss {r['last_loss']:.4g})"))
            print(f"{variant} ({result['precision']}) lr {r['lr']:g} wd {r['wd']:g}: {what}"
                  + (f"  [{r['seconds']} s]" if "seconds" in r else ""), flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
