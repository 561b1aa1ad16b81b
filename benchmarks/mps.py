"""An NVIDIA MPS control daemon, so that the kernels of several processes on one GPU can run
at once instead of taking turns (time-slicing). Used by ``bench_multi_gpu.py --mps`` and by
``fidelity_gpu.sh`` (``MPS=1``). Whether a device machine allows the daemon is found out by
starting it and running one CUDA operation under it (``MpsDaemon._probe``).

    eval "$(python3 benchmarks/mps.py start /tmp/mps)"   # prints the exports, or fails in one line
    python3 benchmarks/mps.py stop /tmp/mps
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile

PROBE = "import torch; torch.ones(1, device='cuda').sum().item()"


class MpsDaemon:
    """The daemon for the processes started inside the block (their environment from
    :meth:`env`), with its pipe and log folders under ``root`` (a new temporary folder by
    default). Entering raises SystemExit with the reason when the daemon cannot serve."""

    def __init__(self, root: str | None = None, keep: bool = False):
        self.dir = root or tempfile.mkdtemp(prefix="mps-")
        self.keep = keep
        self.vars = {"CUDA_MPS_PIPE_DIRECTORY": os.path.join(self.dir, "pipe"),
                     "CUDA_MPS_LOG_DIRECTORY": os.path.join(self.dir, "log")}

    def env(self) -> dict:
        return {**os.environ, **self.vars}

    def start(self) -> None:
        created = not os.path.exists(self.dir)
        for path in self.vars.values():
            os.makedirs(path, exist_ok=True)
        problem = None
        if shutil.which("nvidia-cuda-mps-control") is None:
            problem = "nvidia-cuda-mps-control is not on PATH"
        else:
            proc = subprocess.run(["nvidia-cuda-mps-control", "-d"], env=self.env(),
                                  stdin=subprocess.DEVNULL, capture_output=True, text=True)
            if proc.returncode != 0:      # e.g. one already runs there: leave its folders
                raise SystemExit("--mps: the MPS daemon did not start: "
                                 f"{(proc.stderr or proc.stdout).strip() or 'no message'}")
            problem = self._probe()
            if problem:
                self.stop()
        if problem:
            self._remove(created)
            raise SystemExit(f"--mps: {problem}")

    def _probe(self) -> str | None:
        """Why the daemon cannot serve (None when a CUDA operation ran under it and an MPS
        server took the client)."""
        try:
            probe = subprocess.run([sys.executable, "-c", PROBE], env=self.env(),
                                   capture_output=True, text=True, timeout=120)
        except subprocess.TimeoutExpired:
            return "a CUDA operation under the MPS daemon did not finish in 120 s"
        if probe.returncode != 0:
            lines = probe.stderr.strip().splitlines() or ["no message"]
            return f"a CUDA operation failed under the MPS daemon: {lines[-1]}"
        servers = subprocess.run(["nvidia-cuda-mps-control"], input="get_server_list\n",
                                 env=self.env(), capture_output=True, text=True)
        if not servers.stdout.strip():
            return "no MPS server took the CUDA client (it ran without MPS)"
        return None

    def stop(self) -> None:
        subprocess.run(["nvidia-cuda-mps-control"], input="quit\n", env=self.env(),
                       capture_output=True, text=True)
        if not self.keep:
            self._remove(True)

    def _remove(self, folder_too: bool) -> None:
        """Its pipe and log folders, and the folder itself when it is then empty and was ours."""
        for path in self.vars.values():
            shutil.rmtree(path, ignore_errors=True)
        if folder_too:
            try:
                os.rmdir(self.dir)
            except OSError:
                pass

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc):
        self.stop()


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 2 or argv[0] not in ("start", "stop"):
        sys.exit("usage: mps.py start|stop DIR")
    daemon = MpsDaemon(argv[1], keep=argv[0] == "start")   # "stop" removes only its folders
    if argv[0] == "start":
        daemon.start()
        print(" ".join(f"export {k}={v};" for k, v in daemon.vars.items()))
    else:
        daemon.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
