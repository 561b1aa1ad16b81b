"""benchmarks/mps.py on a machine without a usable MPS daemon: it must say why in one line and
leave nothing behind, so that fidelity_gpu.sh can fall back to running without it."""
import os
import subprocess
import sys
from pathlib import Path

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
