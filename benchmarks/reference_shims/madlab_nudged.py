"""mad-lab's multi-head gated linear attention with every initial weight moved by one unit in
the last place (towards +inf): a perturbation at the scale of float rounding, and nothing else
changed (test tooling for benchmarks/fidelity.py; not part of madbench).

The fidelity panel's control for settings whose runs are deterministic (memorization: the same
arm and seed give the same records, run after run): how far does training carry a rounding-sized
difference? The bundled layer and the reference differ by just that (different kernels round
differently under bf16), so the reference against its nudged self is the spread to expect
between two faithful layers.
"""
import torch

from mad.model.layers.attention_gated_linear import GatedLinearAttention as _Reference


def nudge(module: torch.nn.Module) -> torch.nn.Module:
    """Every parameter of ``module`` moved to the next representable value towards +inf."""
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.nextafter(p, torch.full_like(p, float("inf"))))
    return module


class GatedLinearAttention(_Reference):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        nudge(self)
