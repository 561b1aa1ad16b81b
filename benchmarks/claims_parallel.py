"""Do the parts of a split group train in parallel? Two CPU worker processes, the plain engine
(which splits a group into single runs), one memorization group of two runs: prints when each
run starts and ends, and the sweep's wall time. With claims per run both start together; with
one claim per group (before 4ff4b6b) the second waited for the first.

Usage: python benchmarks/claims_parallel.py
"""
import argparse
import tempfile
import time
from pathlib import Path

from madbench.evaluator import prepare
from madbench.executors.local import LocalExecutor

if __name__ == "__main__":
    argparse.ArgumentParser(description=__doc__.split("\n\n")[0]).parse_args()
    run_dir = Path(tempfile.mkdtemp()) / "runs"
    ev = prepare("mh-attention", tasks=["memorization"], protocol="smoke",
                 overrides={"epochs": "2", "lrs": "0.001,0.0005", "max_train": "256",
                            "max_test": "16"},
                 run_dir=run_dir, device="cpu", engine="plain",
                 executor=LocalExecutor(devices=["cpu", "cpu"], threads_per_worker=1))
    start = time.monotonic()

    def progress(event, info):
        if event in ("run", "done"):
            print(f"{time.monotonic() - start:5.1f} s  {event:4s} {info.get('worker')} "
                  f"lr={info.get('lr')}")

    ev.run(progress=progress)
    print(f"sweep: {time.monotonic() - start:.1f} s")
