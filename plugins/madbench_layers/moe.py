"""The mixture-of-experts channel mixer (MoE) and the top-k gate it shares with the modal Hyena
experts. No bias (the paper's rule).

``moe-mlp``: 8 SwiGLU experts of inner width 16, 2 active per token. A router (no bias) scores
the experts; the top-2 logits go through a softmax over those two only, so every other expert
has exactly zero weight: a token's output and the gradients it sends depend on its two experts
only. The experts are evaluated densely (all of them on every token, the unselected ones
weighted by an exact zero): no data-dependent shapes, so a training step has no host
synchronization and can be captured in a CUDA graph, at E/k times the experts' arithmetic of a
dispatching implementation (FLOP counts, ``madbench.flops``, stay the active work); an
unselected expert whose output is not finite (only a diverged run has one) makes the token's
output non-finite, where a dispatching implementation would not run it. Parameters: router
128 * 8 + 8 experts * 3 * 128 * 16 = 1,024 + 49,152 = 50,176; active per token
1,024 + 2 * 6,144 = 13,312. (mad-lab's MoE is a dense GeGLU of width 128 with a router bias and
a gate that leaves unselected experts a non-zero weight, D11; the router bias is dropped here
because a per-expert constant only shifts routing, and the paper asks for no bias.)
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from madbench.errors import UsageError


def top_k_gates(logits: torch.Tensor, k: int) -> torch.Tensor:
    """Top-k gate as a dense (..., experts) matrix: a softmax over each row's k largest logits,
    exact zeros for every other expert."""
    top, experts = logits.topk(k, dim=-1)
    dtype = torch.promote_types(logits.dtype, torch.float32)
    weights = torch.softmax(top.to(dtype), dim=-1).to(logits.dtype)
    return torch.zeros_like(logits).scatter(-1, experts, weights)


class MoeMLP(nn.Module):
    """Mixture of SwiGLU experts, top-k routed: each token's output is its k experts' weighted sum."""

    mixer_kind = "channel"

    def __init__(self, dim: int, experts: int = 8, expert_width: int = 16, top_k: int = 2):
        super().__init__()
        if not 1 <= top_k <= experts:
            raise UsageError(f"moe-mlp: top_k must be in 1..{experts}, got {top_k}")
        self.dim, self.experts, self.expert_width, self.top_k = dim, experts, expert_width, top_k
        self.router = nn.Linear(dim, experts, bias=False)
        self.gate = nn.Parameter(torch.empty(experts, expert_width, dim))
        self.up = nn.Parameter(torch.empty(experts, expert_width, dim))
        self.down = nn.Parameter(torch.empty(experts, dim, expert_width))
        for weight, fan_in in ((self.gate, dim), (self.up, dim), (self.down, expert_width)):
            bound = 1.0 / math.sqrt(fan_in)  # as nn.Linear's default
            nn.init.uniform_(weight, -bound, bound)

    def active_parameters(self) -> int:
        """Router plus the k experts a token uses."""
        per_expert = 3 * self.dim * self.expert_width
        return self.router.weight.numel() + self.top_k * per_expert

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gates = top_k_gates(self.router(x), self.top_k)             # (..., E), k non-zero
        h = F.silu(torch.einsum("...d,ewd->...ew", x, self.gate)) \
            * torch.einsum("...d,ewd->...ew", x, self.up)
        out = torch.einsum("...ew,edw->...d", h * gates[..., None].to(h.dtype), self.down)
        return out.to(x.dtype)                # bf16 under autocast, returned as x (as before)


MIXERS = [
    ("moe-mlp", MoeMLP, {
        "kind": "channel", "shorthand": "MoE",
        "defaults": {"experts": 8, "expert_width": 16, "top_k": 2},
        "description": "mixture of 8 SwiGLU experts of width 16, top-2 routed, no bias",
    }),
]
