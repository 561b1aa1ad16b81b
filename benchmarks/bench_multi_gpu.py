"""Multi-GPU benchmark of issue #8: the same sweep on one GPU and on N GPUs (default 2).

Each measurement runs in a fresh Python process (start-up, CUDA initialisation and worker
start-up are part of its wall time), after one tiny warm-up sweep on N GPUs that fills the
kernel caches on disk. While a sweep runs, nvidia-smi is sampled every 0.5 s, giving each
GPU's mean utilisation and the share of samples in which it was busy (>= 10 %). The records of
the two sweeps are then compared by run key: same keys, identical accuracies and losses.

Usage (on a machine with >= 2 GPUs, from the repository root):

  python benchmarks/bench_multi_gpu.py                       # local executor, 1 vs 2 GPUs
  python benchmarks/bench_multi_gpu.py --executor ray        # Ray tasks, 1 vs 2 GPUs
  python benchmarks/bench_multi_gpu.py --arch hyena --seeds 0,1,2 --set epochs=10
  python benchmarks/bench_multi_gpu.py --cpu-smoke           # CPU processes, tiny sweep
  python benchmarks/bench_multi_gpu.py --gpus 1 --many-runs-per-gpu 4 [--mps]
      # one GPU: one group at a time against four at once (issue #15's concurrency lever),
      # optionally under an MPS daemon, so that the processes' kernels can overlap
  python benchmarks/bench_multi_gpu.py --gpus 1 --repeat --arch mh-gla-swiglu \
      --tasks in-context-recall --preset paper --settings num_train_examples=800
      # the same sweep twice: are its records identical? (run-to-run determinism; set
      # CUBLAS_WORKSPACE_CONFIG=:4096:8 in the environment to test cuBLAS's share)

The default sweep is the ``quick`` preset on the baseline setting of every task with seed 0:
36 runs (6 groups of 6 configurations; ``--engine auto`` trains them one at a time on CUDA, so
the executors hand out single runs). Add seeds (``--seeds 0,1``) for a longer sweep. Prints a markdown table; writes multi_gpu.md and
multi_gpu.json to $OUT when set.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from mps import MpsDaemon  # noqa: E402

SMOKE = {"tasks": "memorization", "preset": "smoke", "seeds": "0,1", "engine": "plain",
         "set": ["epochs=1", "lrs=0.001,0.0005", "max_train=64", "max_test=32"]}


def sweep_args(args) -> list[str]:
    out = ["--arch", args.arch, "--tasks", args.tasks, "--preset", args.preset, "--settings",
           args.settings, "--seeds", args.seeds, "--engine", args.engine, "--executor",
           args.executor, "--runs-per-gpu", str(args.runs_per_gpu)]
    for item in args.set:
        out += ["--set", item]
    if args.cpu_smoke:
        out.append("--cpu-smoke")
    return out


# -- one measurement, in its own process ------------------------------------------------------
def measure(args) -> None:
    import torch

    from madbench.executors import LocalExecutor, RayExecutor
    from madbench.store import ResultsStore

    start = time.perf_counter()
    spec, protocol, jobs = plan_sweep(args)
    device = "cpu" if args.cpu_smoke else "cuda"
    if args.executor == "ray":
        resources = {"num_cpus": args.workers} if args.cpu_smoke else {"num_gpus": args.workers}
        executor = RayExecutor(runs_per_gpu=args.runs_per_gpu,
                               init_options={**resources, "log_to_driver": False})
    elif args.cpu_smoke:
        torch.set_num_threads(1)
        executor = LocalExecutor(devices=["cpu"] * (args.workers * args.runs_per_gpu),
                                 threads_per_worker=1)
    else:
        gpus = [f"cuda:{i}" for i in range(args.workers)]
        executor = LocalExecutor(devices=[g for _ in range(args.runs_per_gpu) for g in gpus])
    trained = executor.run(spec, jobs, protocol, ResultsStore(args.run_dir), device,
                           engine=args.engine)
    print(json.dumps({"wall_s": time.perf_counter() - start, "trained": trained,
                      "jobs": len(jobs)}))


def plan_sweep(args):
    """The measured sweep: (architecture, protocol, jobs); a bad --arch, --preset, --set,
    --tasks, --settings or --seeds raises madbench's UsageError."""
    from madbench.architecture import resolve_architecture
    from madbench.cli.eval_cmd import _parse_overrides, _parse_seeds
    from madbench.evaluator import select_tasks
    from madbench.protocol import get_protocol
    from madbench.sweep import parse_settings, plan
    spec = resolve_architecture(args.arch)
    protocol = get_protocol(args.preset, _parse_overrides(tuple(args.set)))
    return spec, protocol, plan(spec, select_tasks(args.tasks), protocol,
                                _parse_seeds(args.seeds), parse_settings(args.settings))


# -- the driver -------------------------------------------------------------------------------
class GpuSampler:
    """nvidia-smi utilisation of every GPU, sampled every ``period`` seconds in a thread."""

    def __init__(self, period: float = 0.5):
        self.period = period
        self.samples: dict[int, list[float]] = {}
        self.available = shutil.which("nvidia-smi") is not None
        self._stop = threading.Event()

    def _loop(self):
        while not self._stop.is_set():
            out = subprocess.run(["nvidia-smi", "--query-gpu=index,utilization.gpu",
                                  "--format=csv,noheader,nounits"], capture_output=True,
                                 text=True).stdout
            for line in out.strip().splitlines():
                index, util = (x.strip() for x in line.split(","))
                self.samples.setdefault(int(index), []).append(float(util))
            self._stop.wait(self.period)

    def __enter__(self):
        if self.available:
            self.thread = threading.Thread(target=self._loop, daemon=True)
            self.thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        if self.available:
            self.thread.join()

    def summary(self) -> str:
        if not self.samples:
            return "n/a"
        parts = []
        for index, values in sorted(self.samples.items()):
            busy = sum(v >= 10 for v in values) / len(values)
            parts.append(f"GPU{index} {sum(values) / len(values):.0f}% (busy {busy:.0%})")
        return ", ".join(parts)


def run_measure(args, workers: int, run_dir: str, extra: list[str] | None = None,
                env: dict | None = None) -> dict:
    cmd = [sys.executable, os.path.abspath(__file__), "--measure", "--workers", str(workers),
           "--run-dir", run_dir, *sweep_args(args), *(extra or [])]
    env = dict(env or os.environ)
    if not args.cpu_smoke:
        env["CUDA_VISIBLE_DEVICES"] = ",".join(str(i) for i in range(workers))
    with GpuSampler() as sampler:
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        sys.stderr.write(proc.stdout + proc.stderr)
        raise SystemExit(f"measurement with {workers} worker(s) failed")
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    result["gpus"] = sampler.summary()
    return result


def compare(dir_one: str, dir_many: str) -> dict:
    from madbench.store import ResultsStore
    one = {r["run_key"]: r for r in ResultsStore(dir_one).records()}
    many = {r["run_key"]: r for r in ResultsStore(dir_many).records()}
    common = sorted(set(one) & set(many))
    diffs = {m: max((abs(one[k][m] - many[k][m]) for k in common), default=0.0)
             for m in ("accuracy", "loss")}
    identical = sum(one[k]["accuracy"] == many[k]["accuracy"] and
                    (one[k]["loss"] == many[k]["loss"] or one[k]["diverged"])
                    for k in common)
    devices: dict[str, int] = {}
    for r in many.values():
        devices[r["device"]] = devices.get(r["device"], 0) + 1
    return {"same_keys": set(one) == set(many), "runs": len(common), "identical": identical,
            "max_abs_diff": diffs, "devices_of_many": devices}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--arch", default="mh-attention")
    ap.add_argument("--tasks", default="all")
    ap.add_argument("--preset", default="quick")
    ap.add_argument("--settings", default="baseline",
                    help="preset, baseline, all or comma-separated setting names")
    ap.add_argument("--seeds", default="0")
    ap.add_argument("--engine", default="auto", choices=["auto", "graphed", "batched", "plain"])
    ap.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE")
    ap.add_argument("--executor", default="local", choices=["local", "ray"])
    ap.add_argument("--runs-per-gpu", type=int, default=1)
    ap.add_argument("--gpus", type=int, default=2, help="GPUs of the multi-GPU measurement")
    ap.add_argument("--many-runs-per-gpu", type=int, default=None,
                    help="runs per GPU of the second measurement (default: --runs-per-gpu)")
    ap.add_argument("--mps", action="store_true",
                    help="the second measurement under an MPS daemon (GPU only)")
    ap.add_argument("--repeat", action="store_true",
                    help="with nothing else changed, the same sweep twice (determinism)")
    ap.add_argument("--cpu-smoke", action="store_true",
                    help="CPU worker processes instead of GPUs, on a tiny sweep")
    ap.add_argument("--no-warmup", action="store_true")
    ap.add_argument("--measure", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--workers", type=int, default=1, help=argparse.SUPPRESS)
    ap.add_argument("--run-dir", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.cpu_smoke:
        args.tasks, args.preset, args.seeds, args.engine = (SMOKE[k] for k in
                                                            ("tasks", "preset", "seeds", "engine"))
        args.set = SMOKE["set"] + args.set
    if args.measure:
        measure(args)
        return
    many_rpg = args.runs_per_gpu if args.many_runs_per_gpu is None else args.many_runs_per_gpu
    if min(args.gpus, args.runs_per_gpu, many_rpg) < 1:
        raise SystemExit("--gpus, --runs-per-gpu and --many-runs-per-gpu must be at least 1")
    if args.mps and args.cpu_smoke:
        raise SystemExit("--mps needs GPUs, not --cpu-smoke")
    changed = (args.gpus, many_rpg, args.mps) != (1, args.runs_per_gpu, False)
    if args.repeat and changed:
        raise SystemExit("--repeat trains the same sweep twice: give it with --gpus 1 and "
                         "nothing else changed (no --many-runs-per-gpu, no --mps)")
    if not (changed or args.repeat):
        raise SystemExit("nothing to compare: give --gpus N > 1, --many-runs-per-gpu, --mps "
                         "or --repeat")
    from madbench.errors import UsageError
    try:
        plan_sweep(args)                  # every argument checked before any measurement
    except UsageError as exc:
        raise SystemExit(str(exc)) from None
    if not args.cpu_smoke:
        import torch
        if torch.cuda.device_count() < args.gpus:
            raise SystemExit(f"needs {args.gpus} GPUs, found {torch.cuda.device_count()} "
                             "(use --cpu-smoke to try the script on CPU)")
    root = tempfile.mkdtemp(prefix="bench-multi-gpu-")
    unit = "CPU processes" if args.cpu_smoke else "GPUs"
    if not args.no_warmup:        # fills kernel caches on disk for both measurements
        warm = ["--set", "epochs=1", "--set", "max_train=256", "--set", "max_test=128",
                "--seeds", "0"]
        run_measure(args, args.gpus, os.path.join(root, "warmup"), warm)
    one = run_measure(args, 1, os.path.join(root, "one"))
    many_args = ["--runs-per-gpu", str(many_rpg)]
    if args.mps:
        with MpsDaemon() as mps:
            many = run_measure(args, args.gpus, os.path.join(root, "many"), many_args, mps.env())
    else:
        many = run_measure(args, args.gpus, os.path.join(root, "many"), many_args)
    cmp = compare(os.path.join(root, "one"), os.path.join(root, "many"))
    speedup = one["wall_s"] / many["wall_s"]
    lines = [
        f"Sweep: --arch {args.arch} --tasks {args.tasks} --preset {args.preset} --settings "
        f"{args.settings} --seeds {args.seeds} --engine {args.engine} "
        + " ".join(f"--set {s}" for s in args.set) + f"; executor {args.executor}",
        "",
        f"| {unit} | runs per GPU | MPS | runs | wall s | speed-up | utilisation (busy share) |",
        "| ---: | ---: | --- | ---: | ---: | ---: | --- |",
        f"| 1 | {args.runs_per_gpu} | no | {one['trained']} | {one['wall_s']:.1f} | 1.00 | "
        f"{one['gpus']} |",
        f"| {args.gpus} | {many_rpg} | {'yes' if args.mps else 'no'} | {many['trained']} | "
        f"{many['wall_s']:.1f} | {speedup:.2f} | {many['gpus']} |",
        "",
        f"Records: same run keys: {cmp['same_keys']}; identical accuracy and loss: "
        f"{cmp['identical']}/{cmp['runs']}; max |diff| accuracy "
        f"{cmp['max_abs_diff']['accuracy']:.3g}, loss {cmp['max_abs_diff']['loss']:.3g}; "
        f"runs per device ({args.gpus} {unit}): "
        + ", ".join(f"{d} {n}" for d, n in sorted(cmp["devices_of_many"].items())),
    ]
    text = "\n".join(lines)
    print(text)
    out = os.environ.get("OUT")
    if out:
        os.makedirs(out, exist_ok=True)
        with open(os.path.join(out, "multi_gpu.md"), "w") as fh:
            fh.write(text + "\n")
        with open(os.path.join(out, "multi_gpu.json"), "w") as fh:
            json.dump({"args": vars(args), "one": one, "many": many, "compare": cmp,
                       "speedup": speedup}, fh, indent=2)
    shutil.rmtree(root, ignore_errors=True)
    if not (cmp["same_keys"] and cmp["runs"] == one["jobs"]):
        raise SystemExit("the two sweeps did not store the same runs")


if __name__ == "__main__":
    main()
