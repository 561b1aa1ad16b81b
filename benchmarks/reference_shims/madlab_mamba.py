"""mad-lab's Mamba layer with its missing CUDA entry point supplied (test tooling for
benchmarks/fidelity.py; not part of madbench).

mad-lab's ``Mamba`` needs mamba-ssm's ``selective_scan_cuda`` extension, which is not installed.
Without it the layer's fused path is unavailable and its unfused path calls
``selective_scan_fn``, which this module provides from madbench's selective scan (the Triton
kernel on CUDA, tested against the pure-PyTorch recurrence; ``MADBENCH_KERNELS=reference``
forces the recurrence). Everything else is mad-lab's own code.
"""
import torch.nn.functional as F

import mad.model.layers.mamba as _reference
from madbench_layers.ops.selective_scan import selective_scan


def selective_scan_fn(u, delta, A, B, C, D=None, z=None, delta_bias=None,
                      delta_softplus=False, return_last_state=False):
    """mamba-ssm's interface: u, delta, z (batch, d, L); B, C (batch, n, L); A (d, n)."""
    if return_last_state:
        raise NotImplementedError("the stand-in does not return the last state")
    dtype = u.dtype
    delta = delta.float()
    if delta_bias is not None:
        delta = delta + delta_bias.float()[:, None]
    if delta_softplus:
        delta = F.softplus(delta)
    y = selective_scan(u.float().transpose(1, 2), delta.transpose(1, 2), A.float(),
                       B.float().transpose(1, 2), C.float().transpose(1, 2),
                       D.float() if D is not None else u.new_zeros(u.shape[1]).float())
    y = y.transpose(1, 2)
    if z is not None:
        y = y * F.silu(z.float())
    return y.to(dtype)


_reference.selective_scan_fn = selective_scan_fn
_reference.mamba_inner_fn = None       # the fused path needs the extensions too


class Mamba(_reference.Mamba):
    """mad-lab's Mamba on its unfused path."""

    mixes_channels = True   # madbench's standard model around it: four Mamba layers

    def __init__(self, dim, *args, **kwargs):
        kwargs["use_fast_path"] = False
        super().__init__(dim, *args, **kwargs)
