"""Where a result came from: versions, commit, device, plugins."""
from __future__ import annotations

import functools
import os
import platform
import subprocess
from pathlib import Path

import torch

from . import __version__
from .plugins import get_registry


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


def device_uuid(device: torch.device) -> str | None:
    """The GPU's UUID: which physical GPU ran, whatever CUDA_VISIBLE_DEVICES renumbered (a Ray
    worker sees its GPU as cuda:0)."""
    if device.type != "cuda":
        return None
    try:
        return str(torch.cuda.get_device_properties(device).uuid)
    except Exception:  # noqa: BLE001
        return None


def provenance(device: torch.device) -> dict:
    return {
        "madbench_version": __version__,
        "git_commit": git_commit(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "triton": triton_version(),
        "cuda": torch.version.cuda,
        "device": str(device),
        "device_name": device_name(device),
        "device_uuid": device_uuid(device),
        "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES"),
        "plugins": [{"name": p.name, "distribution": p.distribution, "version": p.version}
                    for p in get_registry().plugins],
    }
