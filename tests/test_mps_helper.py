"""benchmarks/mps.py on a machine without a usable MPS daemon: it must say why in one line and
leave nothing behind, so that fidelity_gpu.sh can fall back to running without it."""
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "mps.py"


def run(args, path_dirs, tmp_path):
    env = {**os.environ, "PATH": os.pathsep.join(map(str, path_dirs))}
    return subprocess.run([sys.executable, str(SCRIPT), *args], env=env, capture_output=True,
                          text=True, timeout=120)


def test_no_daemon_on_path(tmp_path):
    root = tmp_path / "mps"
    out = run(["start", str(root)], [tmp_path / "empty"], tmp_path)
    assert out.returncode != 0 and out.stdout == ""
    assert out.stderr.strip() == "--mps: nvidia-cuda-mps-control is not on PATH"
    assert not root.exists()


@pytest.mark.skipif(torch.cuda.is_available(), reason="the probe's CUDA operation must fail")
def test_daemon_that_cannot_serve_is_stopped(tmp_path):
    """A daemon that starts but under which CUDA fails (here: no GPU): reported, quit, cleaned."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    log = tmp_path / "calls"
    fake = bin_dir / "nvidia-cuda-mps-control"
    fake.write_text(f"#!/bin/sh\necho \"$@ $(cat)\" >> {log}\n")
    fake.chmod(0o755)
    root = tmp_path / "mps"
    out = run(["start", str(root)], [bin_dir, Path(sys.executable).parent, "/usr/bin", "/bin"],
              tmp_path)
    assert out.returncode != 0 and out.stdout == ""
    assert out.stderr.startswith("--mps: a CUDA operation failed under the MPS daemon:")
    assert len(out.stderr.strip().splitlines()) == 1
    assert log.read_text().split() == ["-d", "quit"]     # started, then quit
    assert not root.exists()


def test_usage(tmp_path):
    out = run(["begin", "x"], [tmp_path], tmp_path)
    assert out.returncode != 0 and "usage: mps.py start|stop DIR" in out.stderr


def test_stop_removes_only_its_own_folders(tmp_path):
    """`stop DIR` on a folder holding other files removes the pipe and log folders only."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "nvidia-cuda-mps-control").write_text("#!/bin/sh\ncat > /dev/null\n")
    (bin_dir / "nvidia-cuda-mps-control").chmod(0o755)
    root = tmp_path / "shared"
    (root / "pipe").mkdir(parents=True)
    (root / "keep.txt").write_text("not the daemon's")
    out = run(["stop", str(root)], [bin_dir, "/usr/bin", "/bin"], tmp_path)
    assert out.returncode == 0
    assert not (root / "pipe").exists() and (root / "keep.txt").read_text() == "not the daemon's"
