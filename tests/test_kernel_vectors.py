"""The Hyena convolution kernels vectorise their memory accesses at the recall tasks' odd
lengths as they do at even ones: each kernel is compiled for sm_90 (on the CPU, no GPU needed;
``benchmarks/kernel_vectors.py``) with the arguments the Hyena layer's launches give it at
L = 127 and at L = 128, and the PTX's global loads and stores are counted by width. Before
the padded-length masks (``ops.rows``) every access at L = 127 was scalar."""
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("triton")
SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "kernel_vectors.py"


def counts(*args: str) -> dict:
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    env["TRITON_DEFAULT_FP_FUSION"] = "1"
    out = subprocess.run([sys.executable, str(SCRIPT), "--lengths", "127,128", *args],
                         capture_output=True, text=True, env=env, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    rows = re.findall(r"^\| (\w+) \| (\d+) \| (\d+) / (\d+) \| (\d+) / (\d+) \|$", out.stdout, re.M)
    assert len(rows) == 10, out.stdout
    return {(name, int(length)): tuple(map(int, rest)) for name, length, *rest in rows}


@pytest.mark.parametrize("form", ["hyena", "multihead"])
def test_odd_length_accesses_are_as_wide_as_at_an_even_length(form):
    table = counts(*(["--multihead"] if form == "multihead" else []))
    for (name, length), (ld_vec, ld_scalar, st_vec, st_scalar) in table.items():
        if length == 127:
            assert (ld_vec, ld_scalar, st_vec, st_scalar) == table[(name, 128)], name
    for name in ("_forward_kernel", "_backward_inputs_kernel"):
        ld_vec, _, st_vec, st_scalar = table[(name, 127)]
        assert ld_vec > 0 and st_vec > 0 and st_scalar == 0, name
