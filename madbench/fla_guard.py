"""What fla's kernels refuse on this machine, known before any kernel runs: fla 0.6.0's guard
against Triton 3.4.0-3.7.0 on Hopper GPUs (fla #640), mirrored from its source so that madbench
can refuse a layer (``madbench.fla_adapter``) or take its own path (the bundled delta rule)
before training instead of failing at the first backward pass."""
from __future__ import annotations

import functools
from typing import Callable

import torch
from torch import nn

#: fla 0.6.0's ``fla.ops.common.chunk_o.chunk_bwd_dqkwg`` (a ``@dispatch('common')`` op, used in
#: the backward pass) raises, in its Triton fallback, ``RuntimeError: Triton >= 3.4.0 and < 3.7.1
#: on Hopper GPUs produces incorrect results for gated chunk_bwd_dqkwg (see #640)`` when called
#: with a gate (``g is not None``) and ``IS_NVIDIA_HOPPER and TRITON_ABOVE_3_4_0 and not
#: TRITON_ABOVE_3_7_1``. Its TileLang backend (``fla.ops.common.backends.tilelang``, enabled by
#: default under that same condition) takes the call first when tilelang is importable, an nvcc
#: is found, ``FLA_TILELANG`` is not ``0`` and backend dispatch is on, and when its verifier
#: accepts (no ``g_gamma``, ``h.dtype == q.dtype``: simple_gla keeps its state in fp32, so a
#: 16-bit simple_gla call is refused by TileLang and reaches the guard anyway).
GUARD_TRITON_RANGE = ("3.4.0", "3.7.1")
GUARD_FIX = "Triton >= 3.7.1 or tilelang (pip install tilelang)"
FLA_GUARD_MESSAGE = "produces incorrect results for gated chunk_bwd_dqkwg"   #: fla's own text

#: fla.layers classes whose training backward calls ``chunk_bwd_dqkwg`` with a gate (fla
#: 0.6.0's module structure: the callers are gated_delta_rule, comba, precond_gated_delta_rule
#: and simple_gla's chunk backward, and gated_delta_product's gated backward; delta_rule passes
#: g=None): class -> (the fla op it trains through, whether TileLang takes the call, whether a
#: configuration of the layer reaches it (None: every configuration)).
HOPPER_GUARDED: dict[str, tuple[str, bool, Callable[[nn.Module], bool] | None]] = {
    "GatedDeltaNet": ("chunk_gated_delta_rule", True, None),
    "MomAttention": ("chunk_gated_delta_rule", True, None),
    "GatedDeltaProduct": ("chunk_gated_delta_product with its forget gate", True,
                          lambda m: bool(getattr(m, "use_forget_gate", True))),
    "Comba": ("chunk_comba", True, None),
    "PrecondGatedDeltaNet": ("chunk_precond_gated_delta_rule", True, None),
    "SimpleGatedLinearAttention": ("chunk_simple_gla with a gate", False, None),
    "YOCOGatedRetention": ("chunk_simple_gla with a gate", False, None),
}


@functools.lru_cache(maxsize=None)
def _nvidia_hopper() -> bool:
    """fla's ``IS_NVIDIA_HOPPER`` (``fla.utils.hardware``), probed without fla or a kernel: an
    NVIDIA (not ROCm) CUDA machine whose device 0 is named ``NVIDIA H...`` or whose current
    device has compute capability 9.x."""
    try:
        if not torch.cuda.is_available() or torch.version.hip is not None:
            return False
        return ("NVIDIA H" in torch.cuda.get_device_name(0)
                or torch.cuda.get_device_capability()[0] == 9)
    except Exception:  # noqa: BLE001 - no usable driver: not a Hopper machine
        return False


@functools.lru_cache(maxsize=None)
def _triton_version() -> str | None:
    """``triton.__version__`` (what fla compares), None without triton."""
    try:
        import triton
    except Exception:  # noqa: BLE001
        return None
    return getattr(triton, "__version__", None)


def _version_key(version: str):
    try:
        from packaging.version import Version   # what fla uses
        return Version(version)
    except Exception:  # noqa: BLE001 - no packaging, or a version packaging cannot parse
        import re
        match = re.match(r"(\d+)(?:\.(\d+))?(?:\.(\d+))?", version)
        return tuple(int(p or 0) for p in match.groups()) if match else (0,)


def triton_in_guard_range(version: str | None) -> bool:
    """3.4.0 <= version < 3.7.1, as fla's ``TRITON_ABOVE_3_4_0 and not TRITON_ABOVE_3_7_1``."""
    if not version:
        return False
    low, high = GUARD_TRITON_RANGE
    key = _version_key(version)
    return _version_key(low) <= key < _version_key(high)


@functools.lru_cache(maxsize=None)
def _tilelang_installed() -> bool:
    """fla's ``TileLangBackend.is_available()``: tilelang is found and an nvcc it can use is
    (``fla.utils.env.has_usable_nvcc``: CUDA_HOME or CUDA_PATH, PATH, the nvidia-cuda-nvcc
    wheel, /usr/local/cuda)."""
    import importlib.metadata
    import importlib.util
    import os
    import shutil
    from pathlib import Path
    try:
        if importlib.util.find_spec("tilelang") is None:
            return False
    except (ImportError, ValueError):
        return False
    home = os.environ.get("CUDA_HOME") or os.environ.get("CUDA_PATH")
    if home is not None and (Path(home) / "bin" / "nvcc").exists():
        return True
    if shutil.which("nvcc") is not None:
        return True
    try:
        files = importlib.metadata.files("nvidia-cuda-nvcc") or []
    except importlib.metadata.PackageNotFoundError:
        files = []
    if any(f.name in ("nvcc", "nvcc.exe") for f in files):
        return True
    return (Path("/usr/local/cuda") / "bin" / "nvcc").exists()


def _tilelang_backend_usable() -> bool:
    """Whether fla would hand ``chunk_bwd_dqkwg`` to its TileLang backend: dispatch on
    (``FLA_DISABLE_BACKEND_DISPATCH`` not 1), ``FLA_TILELANG`` not 0 (on by default under the
    guard's condition) and tilelang usable."""
    import os
    if os.environ.get("FLA_DISABLE_BACKEND_DISPATCH") == "1":
        return False
    if os.environ.get("FLA_TILELANG", "1") == "0":
        return False
    return _tilelang_installed()


#: The fla releases whose source this mirrors (0.6.x); other releases are not second-guessed.
GUARDED_FLA = "0.6."


@functools.lru_cache(maxsize=None)
def installed_fla_version() -> str | None:
    """The installed fla's version from its distribution metadata (fla is not imported)."""
    import importlib.metadata
    for dist in ("fla-core", "flash-linear-attention"):
        try:
            return importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            continue
    return None


def hopper_guard(tilelang_helps: bool = True) -> str | None:
    """Why fla's gated ``chunk_bwd_dqkwg`` would raise on this machine (one line), or None:
    fla's own condition (a Hopper GPU, 3.4.0 <= Triton < 3.7.1) without a usable TileLang
    backend (``tilelang_helps=False``: a call TileLang's verifier refuses). Computed from the
    device, Triton's version and the environment; no kernel runs and fla is not imported.
    Only for the fla releases read (``GUARDED_FLA``)."""
    if not (installed_fla_version() or "").startswith(GUARDED_FLA) or not _nvidia_hopper():
        return None
    version = _triton_version()
    if not triton_in_guard_range(version):
        return None
    if tilelang_helps and _tilelang_backend_usable():
        return None
    return (f"fla's gated chunk_bwd_dqkwg refuses Triton {version} on Hopper GPUs (incorrect "
            f"results, fla #640); fix: {GUARD_FIX}")


def hopper_guard_refusal(cls: type, layer: nn.Module | None = None) -> str | None:
    """The one-line refusal of fla class ``cls`` (built as ``layer``, when known) on this
    machine, or None. Without ``layer``, only classes that reach the guard in every
    configuration are refused."""
    if cls.__name__ not in HOPPER_GUARDED:
        return None
    op, tilelang_helps, reaches = HOPPER_GUARDED[cls.__name__]
    if reaches is not None and (layer is None or not reaches(layer)):
        return None
    reason = hopper_guard(tilelang_helps)
    if reason is None:
        return None
    return (f"fla.layers:{cls.__name__} is refused: its training backward goes through "
            f"fla's {op}, and {reason}")
