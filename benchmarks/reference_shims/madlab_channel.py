"""mad-lab's channel mixers with their YAML configurations as defaults, marked as channel mixers
for madbench's builder (test tooling for benchmarks/fidelity.py; not part of madbench).
Everything else is mad-lab's own code."""
from mad.model.layers import mlp as _reference


class SwiGLU(_reference.SwiGLU):
    """swiglu.yml: inner width 352 (8/3 x 128, to a multiple of 16), no bias."""

    mixer_kind = "channel"

    def __init__(self, dim, **kwargs):
        super().__init__(dim, **{"drop_rate": 0.0, "bias": False, **kwargs})


class MoeMlp(_reference.MoeMlp):
    """moe-mlp.yml: 8 experts of inner width 16, 2 active, no bias."""

    mixer_kind = "channel"

    def __init__(self, dim, **kwargs):
        super().__init__(dim, **{"num_experts": 8, "active_experts": 2, "dim_inner": 16,
                                 "bias": False, **kwargs})


class Mlp(_reference.Mlp):
    """mlp.yml: inner width 4 x 128, tanh-GELU, no bias."""

    mixer_kind = "channel"

    def __init__(self, dim, **kwargs):
        super().__init__(dim, **{"drop_rate": 0.0, "bias": False, **kwargs})
