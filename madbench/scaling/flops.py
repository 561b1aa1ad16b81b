"""FLOPs of whole architectures as language models (embedding, blocks, head) on one sequence,
and the training FLOPs of a budget: the per-layer counts come from ``madbench.flops``."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

from ..architecture import ArchitectureSpec
from ..flops import TRAINING_MULTIPLIER, LayerFlops, layer_flops


# -- per architecture ------------------------------------------------------------------------
@dataclass(frozen=True)
class ArchitectureFlops:
    """Forward FLOPs of a language model on one sequence, by layer, plus embedding and head."""

    name: str
    seq_len: int
    vocab_size: int
    layers: tuple[LayerFlops, ...]
    embedding: float
    head: float
    conventions: Mapping[str, Any] = field(default_factory=dict)

    @property
    def forward(self) -> float:
        """Forward FLOPs of one sequence."""
        return self.embedding + self.head + sum(l.total for l in self.layers)

    @property
    def forward_per_token(self) -> float:
        return self.forward / self.seq_len

    @property
    def training_per_token(self) -> float:
        """Training FLOPs per token: 3 x forward."""
        return TRAINING_MULTIPLIER * self.forward_per_token

    @property
    def method(self) -> str:
        """analytic when every layer has a formula; else the weakest method used."""
        methods = {l.method for l in self.layers}
        for weakest in ("flopcounter", "hook"):
            if weakest in methods:
                return weakest
        return "analytic"

    def to_dict(self) -> dict:
        return {"name": self.name, "seq_len": self.seq_len, "vocab_size": self.vocab_size,
                "method": self.method, "embedding": self.embedding, "head": self.head,
                "forward": self.forward, "forward_per_token": self.forward_per_token,
                "training_per_token": self.training_per_token,
                "conventions": dict(self.conventions),
                "layers": [{"mixer": l.mixer, "method": l.method, "total": l.total,
                            "terms": dict(l.terms)} for l in self.layers]}


def architecture_flops(spec: ArchitectureSpec, seq_len: int, vocab_size: int = 256,
                       embeddings: bool = True, fallback: str = "flopcounter"
                       ) -> ArchitectureFlops:
    """Forward FLOPs of ``spec`` as a language model (embedding, blocks, head) on one sequence
    of ``seq_len`` tokens. ``embeddings``: count the paper's 4 L D V for input embedding and
    head (True) or neither (False)."""
    layers = tuple(layer_flops(l.mixer, spec.dim, seq_len, l.kwargs, fallback)
                   for l in spec.layers)
    one_side = 2.0 * seq_len * spec.dim * vocab_size if embeddings else 0.0
    conventions = {"unit": "forward FLOPs per sequence", "multiply_add": 2,
                   "training_multiplier": TRAINING_MULTIPLIER, "embeddings": embeddings,
                   "sparse": "active experts", "causal_attention": "not halved"}
    return ArchitectureFlops(spec.name, seq_len, vocab_size, layers, one_side, one_side,
                             conventions)
