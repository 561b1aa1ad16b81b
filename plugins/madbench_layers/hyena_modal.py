"""The Hyena family with modal long filters: ``hyena-modal`` (Hm), ``mh-hyena-modal`` (mHm),
``hyena-experts-modal`` (Hem). Variants with an exact finite state; the bundled ``hyena``,
``mh-hyena`` and ``hyena-experts`` (``hyena.py``) are the reference implementation's layers
with implicit filters. Measured, these modal layers memorise less than the reference Hyena
(docs/fidelity.md).

All three share one skeleton: a linear input projection to three streams, a short causal
depthwise convolution (filter 3) on every stream, a long causal convolution with a modal filter
(``modal_filter.py``: a sum of damped complex exponentials, so the state is finite and exact),
multiplicative gating, and a linear output projection. No bias anywhere (the paper's rule); the
filter's direct term ``D`` is a feed-through gain on the input, not an additive bias.

State per sequence (``state_size``) is the modal recurrence's state, ``2 * modes`` real numbers per
filtered channel. The short convolutions also keep the last ``short_filter - 1`` inputs of each of
the three projected streams; that is ``cache_size``, outside the paper's 4,096 count.

Every layer also runs as a recurrence (``initial_state``, ``step``): the tests step it one token at
a time and check that it reproduces ``forward`` while carrying exactly ``state_size`` state
elements plus ``cache_size`` cache elements.

Layouts and counts at the MAD defaults (width 128):

- ``hyena-modal`` (Hm): streams v, x1, x2 of 128 channels; ``y = x2 * (h * (x1 * v))`` with one filter of
  8 complex modes per channel. State 128 x 8 x 2 = 2,048.
- ``mh-hyena-modal`` (mHm): 16 heads of size 8; streams q, k, v. Per head the outer product
  ``z[i, j] = k[i] * v[j]`` (8 x 8 channels) is filtered along time by the filter of key channel
  ``(head, i)`` (one complex mode, shared over j) and read out with q:
  ``y[head, j] = sum_i q[head, i] * (h_(head,i) * z[i, j])``. State 16 x 8 x 8 x 2 = 2,048.
- ``hyena-experts-modal`` (Hem): 8 experts of 16 channels (128 in all), each an order-2 Hyena with
  filters of 8 complex modes; a router picks 2 experts per token. State 8 x 16 x 16 = 2,048 (all
  experts: a filter's state must advance at every token, selected or not).

How sparsity works in Hyena experts: the router (no bias) scores the experts per token, keeps the
top-k logits and takes a softmax over those only, so unselected experts get exactly zero weight.
A long convolution at position t reads every earlier position, so the work that feeds the
convolutions is dense: all experts' v, x1, x2 projections and short convolutions, and all experts'
long convolutions, at every position. What is position-wise is skipped: each expert's output gate
``x2 * (h * (x1 * v))`` and its output projection (16 -> width) are computed only for the tokens
routed to it, and weighted by the router. ``active_parameters`` counts accordingly.
"""
from __future__ import annotations

import torch
from torch import nn

from madbench.errors import UsageError

from .moe import top_k_gates
from .modal_filter import ModalFilter, fft_causal_conv  # noqa: F401 (re-exported)
from .ops.long_conv import gated_long_conv, multihead_long_conv


class ShortConv(nn.Module):
    """Causal depthwise convolution over the time axis of (batch, channels, seq_len), no bias."""

    def __init__(self, channels: int, width: int):
        super().__init__()
        self.channels, self.width = channels, width
        self.conv = nn.Conv1d(channels, channels, width, groups=channels, padding=width - 1,
                              bias=False)

    def forward(self, u: torch.Tensor) -> torch.Tensor:
        return self.conv(u)[..., : u.shape[-1]]

    def cache_size(self) -> int:
        """Past inputs kept for the next step: ``channels * (width - 1)``."""
        return self.channels * (self.width - 1)

    def initial_cache(self, batch: int, dtype=torch.float32) -> torch.Tensor:
        return torch.zeros(batch, self.channels, self.width - 1, dtype=dtype,
                           device=self.conv.weight.device)

    def step(self, u: torch.Tensor, cache: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``u``: (batch, channels) at one time step; ``cache``: the previous ``width - 1``."""
        window = torch.cat([cache, u[..., None]], dim=-1)  # oldest ... newest
        y = (window * self.conv.weight[:, 0, :]).sum(-1)
        return y, window[..., 1:]


class _HyenaBase(nn.Module):
    """Input projection to three streams of ``inner`` channels and their short convolutions."""

    def __init__(self, dim: int, inner: int, short_filter: int):
        super().__init__()
        self.dim, self.inner = dim, inner
        self.in_proj = nn.Linear(dim, 3 * inner, bias=False)
        self.short_conv = ShortConv(3 * inner, short_filter)

    def streams(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """(batch, seq_len, dim) -> three (batch, inner, seq_len) streams after the short conv."""
        return self.short_conv(self.in_proj(x).transpose(1, 2)).chunk(3, dim=1)

    def stream_step(self, x: torch.Tensor, cache: torch.Tensor):
        u, cache = self.short_conv.step(self.in_proj(x), cache)
        return (*u.chunk(3, dim=-1), cache)

    def cache_size(self, seq_len: int) -> int:
        return self.short_conv.cache_size()

    def initial_state(self, batch: int, dtype=torch.float32) -> dict[str, torch.Tensor]:
        """The recurrent state for ``step``: the modal filter's and the short-conv cache."""
        return {"modal": self.filter.initial_state(batch, dtype=dtype),
                "cache": self.short_conv.initial_cache(batch, dtype)}


class ModalHyena(_HyenaBase):
    """Hyena of order 2 with modal long filters: ``y = out(x2 * (h * (x1 * v)))``."""

    def __init__(self, dim: int, modes: int = 8, short_filter: int = 3, direct_term: bool = True):
        super().__init__(dim, dim, short_filter)
        self.filter = ModalFilter(dim, modes, direct_term)
        self.out_proj = nn.Linear(dim, dim, bias=False)

    def state_size(self, seq_len: int) -> int:
        return self.filter.state_size()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        v, x1, x2 = self.streams(x)
        y = gated_long_conv(v, x1, x2, self.filter(x.shape[1]))
        return self.out_proj(y.transpose(1, 2))

    def step(self, x: torch.Tensor, state: dict) -> tuple[torch.Tensor, dict]:
        """One token: ``x`` (batch, dim) -> (batch, dim), carrying ``state``."""
        v, x1, x2, cache = self.stream_step(x, state["cache"])
        c, modal = self.filter.step(x1 * v, state["modal"])
        return self.out_proj(x2 * c), {"modal": modal, "cache": cache}


class ModalMultiHeadHyena(_HyenaBase):
    """Multi-head Hyena: per head, the outer product k ⊗ v is filtered and read out with q."""

    def __init__(self, dim: int, heads: int = 16, modes: int = 1, short_filter: int = 3,
                 direct_term: bool = True):
        if dim % heads:
            raise UsageError(f"mh-hyena: dim {dim} is not divisible by heads {heads}")
        super().__init__(dim, dim, short_filter)
        self.heads, self.head_dim = heads, dim // heads
        self.filter = ModalFilter(dim, modes, direct_term)  # one filter per key channel (head, i)
        self.out_proj = nn.Linear(dim, dim, bias=False)

    def state_size(self, seq_len: int) -> int:
        """heads * head_dim (keys) * head_dim (values) * 2 * modes."""
        return self.filter.state_size() * self.head_dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, length, _ = x.shape
        h, d = self.heads, self.head_dim
        q, k, v = (s.reshape(batch, h, d, length) for s in self.streams(x))
        y = multihead_long_conv(q, k, v, self.filter(length).view(h, d, length))  # (B, H, d_v, L)
        return self.out_proj(y.reshape(batch, self.dim, length).transpose(1, 2))

    def initial_state(self, batch: int, dtype=torch.float32) -> dict[str, torch.Tensor]:
        # modal state (B, d_v, H * d_k, modes, 2): filter channel (head, i) last, value index j.
        return {"modal": self.filter.initial_state(batch, self.head_dim, dtype=dtype),
                "cache": self.short_conv.initial_cache(batch, dtype)}

    def step(self, x: torch.Tensor, state: dict) -> tuple[torch.Tensor, dict]:
        batch = x.shape[0]
        h, d = self.heads, self.head_dim
        q, k, v, cache = self.stream_step(x, state["cache"])
        z = k.view(batch, h, d, 1) * v.view(batch, h, 1, d)          # (B, H, d_k, d_v)
        z = z.permute(0, 3, 1, 2).reshape(batch, d, h * d)            # (B, d_v, H * d_k)
        c, modal = self.filter.step(z, state["modal"])
        c = c.view(batch, d, h, d)                                    # (B, d_v, H, d_k)
        y = torch.einsum("bhi,bjhi->bhj", q.view(batch, h, d), c)
        return self.out_proj(y.reshape(batch, self.dim)), {"modal": modal, "cache": cache}


class ModalHyenaExperts(_HyenaBase):
    """Hyena experts: ``experts`` order-2 Hyenas of ``expert_width`` channels, top-k routed."""

    def __init__(self, dim: int, experts: int = 8, expert_width: int = 16, top_k: int = 2,
                 modes: int = 8, short_filter: int = 3, direct_term: bool = True):
        if not 1 <= top_k <= experts:
            raise UsageError(f"hyena-experts: top_k must be in 1..{experts}, got {top_k}")
        super().__init__(dim, experts * expert_width, short_filter)
        self.experts, self.expert_width, self.top_k = experts, expert_width, top_k
        self.router = nn.Linear(dim, experts, bias=False)
        self.filter = ModalFilter(self.inner, modes, direct_term)
        self.out_proj = nn.Linear(self.inner, dim, bias=False)  # columns e*w:(e+1)*w: expert e

    def state_size(self, seq_len: int) -> int:
        """All experts' modal states: experts * expert_width * 2 * modes."""
        return self.filter.state_size()

    def active_parameters(self) -> int:
        """Parameters used per token: everything but the unselected experts' output columns."""
        total = sum(p.numel() for p in self.parameters())
        unused = (self.experts - self.top_k) * self.expert_width * self.dim
        return total - unused

    def _readout(self, x2: torch.Tensor, c: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """Routed part, on flat tokens: x2, c (N, inner); x (N, dim) for the router. Evaluated
        densely (unselected experts' columns weighted by exact zeros): no host synchronization."""
        gates = top_k_gates(self.router(x), self.top_k)                 # (N, experts)
        y = x2 * c * gates.repeat_interleave(self.expert_width, dim=-1).to(c.dtype)
        return self.out_proj(y).to(x.dtype)   # bf16 under autocast, returned as x (as before)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, length, dim = x.shape
        v, x1, x2 = self.streams(x)
        c = gated_long_conv(v, x1, None, self.filter(length))  # dense: all experts, positions
        x2, c = (t.transpose(1, 2).reshape(batch * length, self.inner) for t in (x2, c))
        out = self._readout(x2, c, x.reshape(batch * length, dim))
        return out.view(batch, length, dim)

    def step(self, x: torch.Tensor, state: dict) -> tuple[torch.Tensor, dict]:
        v, x1, x2, cache = self.stream_step(x, state["cache"])
        c, modal = self.filter.step(x1 * v, state["modal"])
        return self._readout(x2, c, x), {"modal": modal, "cache": cache}


MIXERS = [
    ("hyena-modal", ModalHyena, {
        "kind": "sequence", "shorthand": "Hm",
        "defaults": {"modes": 8, "short_filter": 3},
        "description": "Hyena order 2 with modal long filters (8 complex modes/channel), "
                       "exact finite state",
    }),
    ("mh-hyena-modal", ModalMultiHeadHyena, {
        "kind": "sequence", "shorthand": "mHm",
        "defaults": {"heads": 16, "modes": 1, "short_filter": 3},
        "description": "multi-head Hyena with modal filters: 16 heads of 8, state 2",
    }),
    ("hyena-experts-modal", ModalHyenaExperts, {
        "kind": "sequence", "shorthand": "Hem",
        "defaults": {"experts": 8, "expert_width": 16, "top_k": 2, "modes": 8,
                     "short_filter": 3},
        "description": "Hyena experts with modal filters: 8 of width 16, top-2 routing",
    }),
]
