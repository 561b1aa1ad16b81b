"""The choice between an op's Triton kernel and its reference (``ops/backend.py``), which every
op's dispatcher uses: once here, for all of them."""
import pytest
import torch

from madbench.errors import UsageError
from madbench_layers.ops.backend import resolve_backend


def test_backend_resolution_and_override(monkeypatch):
    """auto picks the reference for CPU tensors; MADBENCH_KERNELS=reference forces it; an unknown
    backend is a usage error."""
    pytest.importorskip("triton")                        # "triton" is refused without it
    monkeypatch.delenv("MADBENCH_KERNELS", raising=False)
    cpu = torch.zeros(1, 1, 1)
    assert resolve_backend("auto", cpu) == "reference"
    assert resolve_backend("auto", cpu.double()) == "reference"
    assert resolve_backend("triton", cpu) == "triton"
    monkeypatch.setenv("MADBENCH_KERNELS", "reference")
    assert resolve_backend("triton", cpu) == "reference"
    with pytest.raises(UsageError, match="unknown kernel backend"):
        resolve_backend("cuda", cpu)
