"""Training-speed benchmarks of issue #5 (run on a GPU):

  probe ms/step of every engine on the in-context-recall baseline over --probe-epochs: plain
        eager, graphed with 1 and 6 configurations, batched (vmap) with 6, eager and captured;
  one   one 200-epoch in-context-recall baseline run: the plain eager trainer (timed over
        --eager-epochs and projected to 200 epochs) against the fast engine (--engine) with
        one configuration (a real 200-epoch run);
  sweep the six-configuration sweep of that setting: fast engine (real, 200 epochs)
        against six plain eager runs (projected from the same eager timing);
  project  the full 396-run `paper` protocol for one architecture, projected from the measured
        step time of the six-configuration fast-engine step at every distinct (task, seq_len,
        vocab) shape of the 66 settings (steps per setting x step time, plus evaluation);
  parity   best-of-sweep accuracy of the plain trainer and the fast engine on the
        in-context-recall baseline at --parity-epochs.

Usage: python benchmarks/bench_training.py [--parts probe,one,sweep,project,parity]
       [--archs ...] [--engine graphed|compiled|batched]
(``compiled``: the graphed engine with torch.compile'd models; compilation is in its times)
Prints a markdown table; writes JSON and markdown to $OUT when set.
"""
from __future__ import annotations

import argparse
import dataclasses
import functools
import json
import os
import subprocess
import sys
import time
import traceback

import torch

from madbench.architecture import resolve_architecture
from madbench.batched import train_batched
from madbench.sweep import effective_setting
from madbench.graphed import train_graphed
from madbench.model import build_model
from madbench.protocol import PRESETS
from madbench.tasks import all_tasks, generate_splits, get_task
from madbench.trainer import train

ROWS: list[dict] = []
PREC = "bf16" if torch.cuda.is_available() else "fp32"
ENGINES = {"graphed": train_graphed, "batched": train_batched,
           "compiled": functools.partial(train_graphed, compile_models=True)}
ENGINE = "graphed"


def fast(*args, **kwargs):
    """The fast engine chosen with --engine (same signature for both)."""
    return ENGINES[ENGINE](*args, **kwargs)


def commit() -> str:
    if os.environ.get("MADBENCH_COMMIT"):
        return os.environ["MADBENCH_COMMIT"]
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                              text=True).stdout.strip() or "unknown"
    except OSError:
        return "unknown"


def row(what: str, arch: str, figure: str, **extra) -> None:
    ROWS.append({"what": what, "arch": arch, "figure": figure, **extra})
    print(f"| {what} | {arch} | {figure} |", flush=True)


def data_for(task_name: str, setting_name: str, device, seed: int = 0):
    task = get_task(task_name)
    setting = task.setting(setting_name)
    train_ds, test_ds = generate_splits(task, setting, seed)
    tensors = [torch.from_numpy(a).to(device) for a in
               (train_ds.inputs, train_ds.targets, test_ds.inputs, test_ds.targets)]
    return task, setting, tensors


def sync():
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def progress(label: str):
    """An ``on_epoch`` that prints elapsed time every tenth of the run (flushed), so a run cut
    by a time limit still shows its rate."""
    start = time.perf_counter()

    def on_epoch(epoch: int, epochs: int, loss: float) -> None:
        if epoch == epochs or epoch % max(1, epochs // 10) == 0:
            print(f"  [{label}] epoch {epoch}/{epochs}: {time.perf_counter() - start:.1f} s, "
                  f"loss {loss:.3f}", flush=True)
    return on_epoch


def bench_one_and_sweep(arch: str, device, parts, eager_epochs: int, epochs: int) -> None:
    spec = resolve_architecture(arch)
    task, setting, (x, y, tx, ty) = data_for("in-context-recall", "baseline", device)
    make = lambda: build_model(spec, setting.vocab_size, x.shape[1])  # noqa: E731
    paper = PRESETS["paper"]
    steps = -(-x.shape[0] // paper.batch_size)
    # the baseline: the plain eager trainer, timed over a few epochs
    short = dataclasses.replace(paper, epochs=eager_epochs)
    torch.manual_seed(0)
    model = make().to(device)
    train(model, (x, y), (tx, ty), setting.vocab_size, 1e-3, 0.0,
          dataclasses.replace(paper, epochs=1), 0, PREC)               # warm-up
    sync()
    t = time.perf_counter()
    r = train(model, (x, y), (tx, ty), setting.vocab_size, 1e-3, 0.0, short, 0, PREC)
    sync()
    eager_step = (time.perf_counter() - t) / (eager_epochs * steps)
    eager_run = eager_step * steps * epochs
    row("plain eager trainer, ms/step (baseline)", arch, f"{eager_step * 1e3:.2f}")
    row(f"plain eager, one {epochs}-epoch run (projected)", arch, f"{eager_run:.0f} s")
    full = dataclasses.replace(paper, epochs=epochs)
    if "one" in parts:
        t = time.perf_counter()
        (res,) = fast(make, (x, y), (tx, ty), setting.vocab_size, [(1e-3, 0.0)], full, 0, PREC,
                      on_epoch=progress(f"{arch} one run"))
        sync()
        wall = time.perf_counter() - t
        row(f"{ENGINE} engine, one {epochs}-epoch run (measured, wall incl. "
            "capture and eval)", arch,
            f"{wall:.1f} s = {eager_run / wall:.1f}x plain eager; {wall / (steps * epochs) * 1e3:.2f} ms/step; "
            f"acc {res.accuracy:.3f}", seconds=wall, speedup=eager_run / wall,
            accuracy=res.accuracy)
    if "sweep" in parts:
        t = time.perf_counter()
        results = fast(make, (x, y), (tx, ty), setting.vocab_size, paper.configs(), full, 0,
                       PREC, on_epoch=progress(f"{arch} sweep"))
        sync()
        wall = time.perf_counter() - t
        best = max(r.accuracy for r in results)
        row(f"{ENGINE} engine, six-configuration sweep, {epochs} epochs (measured)", arch,
            f"{wall:.1f} s = {6 * eager_run / wall:.1f}x six plain eager runs; best acc {best:.3f}",
            seconds=wall, speedup=6 * eager_run / wall, accuracy=best,
            accuracies=[r.accuracy for r in results])


def bench_probe(arch: str, device, epochs: int, only: str = "") -> None:
    """ms/step of each engine over ``epochs`` epochs (capture, warm-up and evaluation excluded:
    the engines' own ``seconds``), plus wall time with them."""
    spec = resolve_architecture(arch)
    task, setting, (x, y, tx, ty) = data_for("in-context-recall", "baseline", device)
    make = lambda: build_model(spec, setting.vocab_size, x.shape[1])  # noqa: E731
    proto = dataclasses.replace(PRESETS["paper"], epochs=epochs)
    six = proto.configs()
    variants = [
        ("plain eager, 1 config", lambda: [train(make().to(device), (x, y), (tx, ty),
                                                 setting.vocab_size, 1e-3, 0.0, proto, 0,
                                                 PREC)]),
        ("graphed, 1 config", lambda: train_graphed(make, (x, y), (tx, ty), setting.vocab_size,
                                                    six[:1], proto, 0, PREC)),
        ("graphed, 6 configs", lambda: train_graphed(make, (x, y), (tx, ty),
                                                     setting.vocab_size, six, proto, 0, PREC)),
        ("batched vmap eager, 6 configs", lambda: train_batched(
            make, (x, y), (tx, ty), setting.vocab_size, six, proto, 0, PREC, capture=False)),
        ("batched vmap + CUDA graph, 6 configs", lambda: train_batched(
            make, (x, y), (tx, ty), setting.vocab_size, six, proto, 0, PREC, capture=True)),
    ]
    for name, fn in variants:
        if only and not any(w.strip() in name for w in only.split(",")):
            continue
        try:
            fn()                                                   # warm-up (compiles, autotunes)
            sync()
            t = time.perf_counter()
            results = fn()
            sync()
            wall = time.perf_counter() - t
            r = results[0]
            row(f"probe: {name}", arch,
                f"{r.seconds / r.steps * 1e3:.2f} ms/step ({wall:.1f} s wall for {r.steps} steps"
                f"); train loss {min(x.train_loss for x in results):.3f}",
                ms_per_step=r.seconds / r.steps * 1e3, wall=wall)
        except Exception as exc:  # noqa: BLE001
            traceback.print_exc()
            row(f"probe: {name}", arch, f"FAILED {type(exc).__name__}: {str(exc)[:200]}")


def bench_project(arch: str, device, timed_steps: int) -> None:
    """Project the full protocol from the step time at every distinct shape."""
    spec = resolve_architecture(arch)
    paper = PRESETS["paper"]
    shapes: dict[tuple, list] = {}
    for task in all_tasks():
        for setting in task.settings():
            key = (task.name, setting.seq_len, setting.vocab_size)
            shapes.setdefault(key, []).append((task, setting))
    total_s = 0.0
    total_runs = 0
    for (task_name, seq_len, vocab), members in shapes.items():
        task, setting = members[0]
        small = effective_setting(setting, dataclasses.replace(paper, max_train=4096))
        train_ds, test_ds = generate_splits(task, small, 0)
        x, y, tx, ty = (torch.from_numpy(a).to(device) for a in
                        (train_ds.inputs, train_ds.targets, test_ds.inputs, test_ds.targets))
        make = lambda: build_model(spec, vocab, x.shape[1], task.model)  # noqa: E731
        bs = paper.batch_size
        n_steps = -(-x.shape[0] // bs)
        warm = dataclasses.replace(paper, epochs=1)
        timed = dataclasses.replace(paper, epochs=max(1, timed_steps // n_steps) + 1)
        try:
            results = fast(make, (x, y), (tx, ty), vocab, paper.configs(), warm, 0, PREC)
            sync()
            t = time.perf_counter()
            results = fast(make, (x, y), (tx, ty), vocab, paper.configs(), timed, 0, PREC)
            sync()
            wall = time.perf_counter() - t
            per_step = results[0].seconds / results[0].steps
            overhead = wall - results[0].seconds          # model build, capture, evaluation
        except Exception as exc:  # noqa: BLE001
            row(f"project: {task_name} L={seq_len} V={vocab}", arch, f"FAILED {exc}")
            continue
        shape_s = 0.0
        for _task, s in members:
            steps = -(-s.num_train // bs) * paper.epochs_for(-(-s.num_train // bs))
            shape_s += steps * per_step + overhead
        total_s += shape_s
        total_runs += 6 * len(members)
        row(f"project: {task_name} L={seq_len} V={vocab} ({len(members)} settings)", arch,
            f"{per_step * 1e3:.2f} ms per 6-config step -> {shape_s / 60:.1f} min",
            ms_per_step=per_step * 1e3, minutes=shape_s / 60)
    row(f"projected full paper protocol ({total_runs} runs)", arch,
        f"{total_s / 3600:.2f} GPU-hours", hours=total_s / 3600)


def bench_parity(arch: str, device, epochs: int) -> None:
    spec = resolve_architecture(arch)
    task, setting, (x, y, tx, ty) = data_for("in-context-recall", "baseline", device)
    make = lambda: build_model(spec, setting.vocab_size, x.shape[1])  # noqa: E731
    proto = dataclasses.replace(PRESETS["paper"], epochs=epochs)
    plain = []
    for lr, wd in proto.configs():
        torch.manual_seed(0)
        plain.append(train(make().to(device), (x, y), (tx, ty), setting.vocab_size, lr, wd,
                           proto, 0, PREC).accuracy)
    batched = [r.accuracy for r in fast(make, (x, y), (tx, ty), setting.vocab_size,
                                        proto.configs(), proto, 0, PREC)]
    row(f"parity, CR baseline, {epochs} epochs: best-of-sweep plain vs {ENGINE}", arch,
        f"{max(plain):.4f} vs {max(batched):.4f} (per config plain "
        f"{', '.join(f'{a:.3f}' for a in plain)}; {ENGINE} "
        f"{', '.join(f'{a:.3f}' for a in batched)})", plain=plain, batched=batched)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--parts", default="one,sweep,project,parity")  # and probe
    ap.add_argument("--archs", default="hyena,mH-Sg-mA-Sg")
    ap.add_argument("--project-archs", default="hyena")
    ap.add_argument("--epochs", type=int, default=200)
    ap.add_argument("--eager-epochs", type=int, default=5)
    ap.add_argument("--parity-epochs", type=int, default=20)
    ap.add_argument("--timed-steps", type=int, default=100)
    ap.add_argument("--probe-epochs", type=int, default=3)
    ap.add_argument("--probe-variants", default="", help="comma-separated name parts")
    ap.add_argument("--engine", default="graphed", choices=sorted(ENGINES))
    args = ap.parse_args()
    global ENGINE
    ENGINE = args.engine
    parts = set(args.parts.split(","))
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    name = torch.cuda.get_device_name() if device.type == "cuda" else "cpu"
    print(f"device {name}, torch {torch.__version__}, commit {commit()}")
    print("| what | arch | figure |\n| --- | --- | --- |")
    for arch in args.archs.split(","):
        if "probe" in parts:
            bench_probe(arch, device, args.probe_epochs, args.probe_variants)
        for part, fn in (("one", lambda: bench_one_and_sweep(arch, device, parts,
                                                               args.eager_epochs, args.epochs)),
                         ("parity", lambda: bench_parity(arch, device, args.parity_epochs))):
            if part in parts or (part == "one" and "sweep" in parts):
                try:
                    fn()
                except Exception:  # noqa: BLE001
                    traceback.print_exc()
                    row(part, arch, "FAILED (traceback above)")
    if "project" in parts:
        for arch in args.project_archs.split(","):
            bench_project(arch, device, args.timed_steps)
    out = os.environ.get("OUT")
    if out:
        with open(os.path.join(out, "training.json"), "w") as fh:
            json.dump({"device": name, "commit": commit(), "rows": ROWS}, fh, indent=2)


if __name__ == "__main__":
    sys.exit(main())
