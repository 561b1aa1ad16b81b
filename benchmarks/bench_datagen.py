"""Time the generation of every setting's data: train and test splits at full size.

Run on one CPU core:  taskset -c 0 python benchmarks/bench_datagen.py [--seed N] [--json]

Prints the time per setting (with --verbose), per task, and the total: wall-clock seconds and
the CPU seconds of this process (user + system, which other processes on a shared core do not
inflate as much). The target is <= 20 s wall-clock for all 66 settings on one core.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import time

import numpy as np

from madbench.tasks import all_tasks, generate_splits


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--verbose", action="store_true", help="print every setting")
    args = parser.parse_args()

    rows, per_task = [], {}
    total_tokens = 0
    start, cpu_start = time.perf_counter(), time.process_time()
    for task in all_tasks():
        t_task, cpu_task = time.perf_counter(), time.process_time()
        for setting in task.settings():
            t0, c0 = time.perf_counter(), time.process_time()
            train, test = generate_splits(task, setting, args.seed)
            seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
            tokens = train.inputs.size + test.inputs.size
            total_tokens += tokens
            rows.append({"task": task.name, "setting": setting.name, "seconds": seconds,
                         "cpu_seconds": cpu, "tokens": tokens})
            if args.verbose and not args.json:
                print(f"  {task.name:<26} {setting.name:<26} {seconds:7.3f} s "
                      f"(cpu {cpu:6.3f} s) {tokens / 1e6:7.2f} M tokens")
        per_task[task.name] = {"settings": len(task.settings()),
                               "seconds": time.perf_counter() - t_task,
                               "cpu_seconds": time.process_time() - cpu_task}
    total, total_cpu = time.perf_counter() - start, time.process_time() - cpu_start

    affinity = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None
    result = {"total_seconds": total, "total_cpu_seconds": total_cpu, "settings": len(rows), "tokens": total_tokens,
              "per_task": per_task, "cpu": cpu_model(), "cpus_allowed": affinity,
              "numpy": np.__version__, "python": platform.python_version(),
              "load_average": os.getloadavg() if hasattr(os, "getloadavg") else None}
    if args.json:
        result["per_setting"] = rows
        print(json.dumps(result, indent=2))
        return
    print(f"{'task':<26} {'settings':>8} {'wall s':>8} {'cpu s':>8}")
    for name, info in per_task.items():
        print(f"{name:<26} {info['settings']:>8} {info['seconds']:>8.2f} "
              f"{info['cpu_seconds']:>8.2f}")
    print(f"{'total':<26} {len(rows):>8} {total:>8.2f} {total_cpu:>8.2f}   "
          f"({total_tokens / 1e6:.0f} M input tokens, train + test)")
    print(f"cpu: {result['cpu']}; cores allowed: {affinity}; numpy {np.__version__}; "
          f"load average before exit: {result['load_average']}")


if __name__ == "__main__":
    main()
