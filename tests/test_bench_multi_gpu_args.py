"""benchmarks/bench_multi_gpu.py refuses comparisons that compare nothing or cannot run, in one
line and before any measurement starts."""
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_multi_gpu.py"


@pytest.mark.parametrize("args, message", [
    (["--gpus", "1"], "nothing to compare"),
    (["--gpus", "1", "--many-runs-per-gpu", "1"], "nothing to compare"),
    (["--cpu-smoke", "--mps"], "--mps needs GPUs"),
    (["--gpus", "0"], "must be at least 1"),
    (["--many-runs-per-gpu", "-2"], "must be at least 1"),
    (["--many-runs-per-gpu", "0"], "must be at least 1"),
    (["--repeat"], "give it with --gpus 1"),
    (["--gpus", "1", "--repeat", "--many-runs-per-gpu", "2"], "give it with --gpus 1"),
    (["--gpus", "1", "--repeat", "--settings", "vocab_size=3"], "no selected task has a setting"),
    (["--gpus", "1", "--repeat", "--settings", ","], "--settings takes preset"),
    (["--gpus", "1", "--repeat", "--arch", "nope"], "unknown architecture"),
])
def test_bad_comparisons_are_refused_in_one_line(args, message):
    proc = subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode != 0
    assert proc.stderr.strip().splitlines() == [proc.stderr.strip()] and message in proc.stderr
