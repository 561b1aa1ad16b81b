"""Where a result came from: versions, commit, device, plugins."""
from __future__ import annotations

import functools
import platform
import subprocess
from pathlib import Path

import torch

from . import __version__


@functools.lru_cache(maxsize=1)
def git_commit() -> str | None:
    """The commit of the madbench checkout, when it runs from one (with ``+dirty``)."""
    root = Path(__file__).resolve().parent.parent
    try:
        out = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True,
                             text=True, timeout=5)
        if out.returncode != 0:
            return None
        dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--",
                                "madbench", "plugins"], capture_output=True, text=True, timeout=5)
        return out.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")
    except (OSError, subprocess.SubprocessError):
        return None


def triton_version() -> str | None:
    try:
        from importlib.metadata import version
        return version("triton")
    except Exception:  # noqa: BLE001
        return None


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return platform.processor() or platform.machine() or "cpu"


def provenance(device: torch.device) -> dict:
    from .plugins import get_registry
    return {
        "madbench_version": __version__,
        "git_commit": git_commit(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "triton": triton_version(),
        "cuda": torch.version.cuda,
        "device": str(device),
        "device_name": device_name(device),
        "plugins": [{"name": p.name, "distribution": p.distribution, "version": p.version}
                    for p in get_registry().plugins],
    }
