"""The Hyena family as the reference implementation (mad-lab) builds it: Hyena (H), multi-head
Hyena (mH) and Hyena experts (He), with implicit long filters (``implicit_filter.py``).

Shared skeleton, for an inner width ``inner``:

1. ``in_proj``: a biased linear map to ``3 * inner / proj_groups`` channels, tiled
   ``proj_groups`` times (the reference ties its projections this way);
2. a causal depthwise convolution of width 3, with bias, on the ``3 * inner`` channels, split
   into three streams;
3. a long causal convolution of the gated stream with the implicit filters plus a learned
   direct term ``D`` (``y = h * u + D u``), computed as one causal convolution with ``D`` added
   to the filter's first tap;
4. the gates and a biased output projection.

Layers (MAD defaults at width 128; parameters at ``max_length`` 128, which adds 3 per position):

- ``hyena`` (H): inner width 4 x 128 = 512, ``proj_groups`` 4, streams ``x0, x1, v``;
  ``y = out(x0 * (h * (x1 * v) + D x1 v))``; filter MLP width 4. 124,348 parameters (the
  reference's count). State 512 x 4 = 2,048 by the paper's convention.
- ``mh-hyena`` (mH): inner 128, ``proj_groups`` 4, ``heads`` groups of ``head_size`` channels,
  streams ``q, v, k``; per head the outer products ``k_i v_j`` are filtered by the head's filter
  (shared over i, j) and read out with q: ``y[head, j] = sum_i q_i (h * (k_i v_j) + D k_i v_j)``;
  filter MLP width 2. Default 16 heads of 8, the paper's layout (state 16 x 8 x 8 x 2 = 2,048);
  the reference passes its ``num_heads: 16`` where a head size is read, giving 8 heads of 16
  (``heads=8, head_size=16``: state 4,096 per layer, mad-protocol.md D15).
- ``hyena-experts`` (He): 8 experts of width 16 (128 channels, expert ``e`` owning channels
  ``i * 8 + e``), no projection tying, filter MLP width 16; a biased router scores the experts
  per token, and the experts' gated outputs are mixed by the router weights before a shared
  biased projection 16 -> width. ``routing="top-k"`` (default, the paper): softmax over the top-2
  logits, zero elsewhere; ``routing="mad-lab"``: the reference's gate, which sets the other
  logits to 0 (not -inf) before a softmax over all experts (D11). State 128 x 16 = 2,048.

The short convolutions keep the last 2 inputs of each of their channels (``cache_size``).

Initialisation: the same distributions as the reference, drawn from the global generator in the
reference constructors' order, so at the same seed a layer starts with exactly the reference's
weights (under the correspondence of ``benchmarks/fidelity.py``'s ``hyena_weights``) and leaves
the generator where the reference does. The reference's ``HyenaOperator`` draws its short
convolution, its long convolution (the direct term ``D`` before the filter MLP), the output
projection, then the input projection; its multi-head and experts subclasses first run that
constructor and then replace some of those parts with new ones, so the replaced parts' draws
are made here too and dropped.
"""
from __future__ import annotations

import torch
from torch import nn

from madbench.errors import UsageError

from .implicit_filter import STATE_CONVENTION, ImplicitFilter
from .ops.long_conv import gated_long_conv, multihead_long_conv
from .ops.short_conv import short_causal_conv

DEFAULT_MAX_LENGTH = 1280  #: the reference's default when no sequence length is given


def with_direct_term(h: torch.Tensor, d: torch.Tensor) -> torch.Tensor:
    """Filters ``h`` (channels, L) with ``D`` added to tap 0: ``h * u + D u`` as one filter."""
    return torch.cat([h[:, :1] + d[:, None].to(h.dtype), h[:, 1:]], dim=1)


class _ImplicitHyena(nn.Module):
    """Projection, tiling, short convolution and the implicit filter with its direct term.

    Subclasses make the parts with the ``_make_*`` methods in the reference's order (each part
    draws its initial weights when made) and register them with ``_attach``."""

    state_convention = STATE_CONVENTION
    channels_per_filter = 1  #: channels one filter convolves (head_size ** 2 in mh-hyena)

    def __init__(self, dim: int, inner: int, proj_groups: int, short_filter: int,
                 filters: int, filter_order: int, max_length: int):
        super().__init__()
        width = 3 * inner
        if width % proj_groups:
            raise UsageError(f"3 x inner width {width} is not divisible by proj_groups "
                             f"{proj_groups}")
        self.dim, self.inner, self.proj_groups = dim, inner, proj_groups
        self.max_length, self.short_filter = max_length, short_filter
        self.filters, self.filter_order = filters, filter_order

    def _make_short_conv(self, width: int | None = None) -> nn.Conv1d:
        """The causal depthwise convolution, over ``3 * inner`` channels unless ``width``."""
        width = 3 * self.inner if width is None else width
        return nn.Conv1d(width, width, self.short_filter, groups=width,
                         padding=self.short_filter - 1)

    def _make_long_conv(self) -> tuple[nn.Parameter, ImplicitFilter]:
        """The direct term ``D`` and the implicit filter, ``D`` drawn first (as the reference's
        long convolution draws its bias before building its filter)."""
        direct = nn.Parameter(torch.randn(self.filters))
        return direct, ImplicitFilter(self.filters, self.filter_order, self.max_length)

    def _make_in_proj(self) -> nn.Linear:
        return nn.Linear(self.dim, 3 * self.inner // self.proj_groups)

    def _attach(self, short_conv: nn.Conv1d, long_conv: tuple[nn.Parameter, ImplicitFilter],
                out_proj: nn.Linear, in_proj: nn.Linear, **more: nn.Module) -> None:
        """Registers the parts in the order the reference registers them, whatever order drew
        them: the autoencoder's re-draw of every linear weight (``reinit_autoencoder``) walks
        the modules in registration order, so this order is part of its draws."""
        self.short_conv = short_conv
        self.direct, self.filter = long_conv
        self.out_proj, self.in_proj = out_proj, in_proj
        for name, part in more.items():
            setattr(self, name, part)

    def streams(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """(batch, L, dim) -> three (batch, inner, L) streams after the short convolution."""
        length = x.shape[1]
        if length > self.max_length:
            raise ValueError(f"sequence length {length} exceeds max_length {self.max_length}")
        # the tied copies (proj_groups) are read in place by the kernel, not materialised
        u = short_causal_conv(self.in_proj(x).transpose(1, 2), self.short_conv.weight,
                              self.short_conv.bias)
        return u.split(self.inner, dim=1)

    def long_filters(self, length: int) -> torch.Tensor:
        return with_direct_term(self.filter(length), self.direct)

    def state_size(self, seq_len: int) -> int:
        """Filtered channels x filter MLP width (the paper's convention, see
        ``state_convention``)."""
        return self.filter.channels * self.filter.order * self.channels_per_filter

    def cache_size(self, seq_len: int) -> int:
        """The short convolution's last ``short_filter - 1`` inputs of each channel."""
        return 3 * self.inner * (self.short_filter - 1)


class Hyena(_ImplicitHyena):
    """Hyena of order 2: ``y = out(x0 * (h * (x1 * v) + D x1 v))``."""

    def __init__(self, dim: int, max_length: int = DEFAULT_MAX_LENGTH, inner_factor: int = 4,
                 proj_groups: int = 4, short_filter: int = 3, filter_order: int = 4):
        inner = inner_factor * dim
        super().__init__(dim, inner, proj_groups, short_filter, inner, filter_order, max_length)
        # the reference's draws: short convolution, long convolution, out_proj, in_proj
        short_conv = self._make_short_conv()
        long_conv = self._make_long_conv()
        out_proj = nn.Linear(inner, dim)
        self._attach(short_conv, long_conv, out_proj, self._make_in_proj())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x0, x1, v = self.streams(x)
        y = gated_long_conv(v, x1, x0, self.long_filters(x.shape[1]))
        return self.out_proj(y.transpose(1, 2))


class MultiHeadHyena(_ImplicitHyena):
    """Multi-head Hyena: per head, filtered outer products k_i v_j read out with q."""

    def __init__(self, dim: int, max_length: int = DEFAULT_MAX_LENGTH, heads: int = 16,
                 head_size: int | None = None, proj_groups: int = 4, short_filter: int = 3,
                 filter_order: int = 2):
        head_size = dim // heads if head_size is None else head_size
        if heads * head_size != dim:
            raise UsageError(f"mh-hyena: heads {heads} x head_size {head_size} != dim {dim}")
        super().__init__(dim, dim, proj_groups, short_filter, heads, filter_order, max_length)
        self.heads, self.head_size = heads, head_size
        self.channels_per_filter = head_size * head_size
        # the reference's draws: its base constructor's (short convolution, a long convolution
        # that the subclass replaces, out_proj, in_proj), then the replacing long convolution
        short_conv = self._make_short_conv()
        self._make_long_conv()            # drawn and dropped, as the reference replaces it
        out_proj = nn.Linear(dim, dim)
        in_proj = self._make_in_proj()
        self._attach(short_conv, self._make_long_conv(), out_proj, in_proj)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, length, _ = x.shape
        h, d = self.heads, self.head_size
        # the reference reads its streams as (q, value, key): x1, x2, v in its names
        q, v, k = (s.reshape(batch, h, d, length) for s in self.streams(x))
        filters = self.long_filters(length)[:, None, :].expand(h, d, length)
        y = multihead_long_conv(q, k, v, filters)                  # (batch, heads, d, L)
        return self.out_proj(y.reshape(batch, self.dim, length).transpose(1, 2))


class HyenaExperts(_ImplicitHyena):
    """Hyena experts: order-2 Hyena over all experts' channels, mixed per token by a router."""

    def __init__(self, dim: int, max_length: int = DEFAULT_MAX_LENGTH, experts: int = 8,
                 expert_width: int = 16, top_k: int = 2, routing: str = "top-k",
                 short_filter: int = 3, filter_order: int = 16):
        if not 1 <= top_k <= experts:
            raise UsageError(f"hyena-experts: top_k must be in 1..{experts}, got {top_k}")
        if routing not in ("top-k", "mad-lab"):
            raise UsageError(f"hyena-experts: routing must be top-k or mad-lab, not {routing!r}")
        inner = experts * expert_width
        super().__init__(dim, inner, 1, short_filter, inner, filter_order, max_length)
        self.experts, self.expert_width, self.top_k, self.routing = \
            experts, expert_width, top_k, routing
        # the reference's draws: its base constructor's at inner width ``dim`` (short
        # convolution, the long convolution it keeps, out_proj, in_proj with 4 tied groups;
        # the reference's long convolution has ``dim`` filters, which equals ``inner`` in every
        # configuration it runs), then the replacing in_proj, out_proj, short convolution and
        # the router
        self._make_short_conv(3 * dim)    # drawn and dropped (replaced below)
        long_conv = self._make_long_conv()
        nn.Linear(dim, dim), nn.Linear(dim, 3 * dim // 4)   # drawn and dropped
        in_proj = self._make_in_proj()
        out_proj = nn.Linear(expert_width, dim)
        short_conv = self._make_short_conv()
        self._attach(short_conv, long_conv, out_proj, in_proj, router=nn.Linear(dim, experts))

    def router_weights(self, x: torch.Tensor) -> torch.Tensor:
        """(batch, L, experts) mixing weights."""
        logits = self.router(x).float()
        kth = logits.topk(self.top_k, dim=-1).values[..., -1:]
        if self.routing == "mad-lab":
            return torch.softmax(torch.where(logits < kth, torch.zeros_like(logits), logits), -1)
        return torch.softmax(logits.masked_fill(logits < kth, float("-inf")), dim=-1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, length, _ = x.shape
        x0, x1, v = self.streams(x)
        y = gated_long_conv(v, x1, x0, self.long_filters(length))    # (batch, inner, L)
        y = y.transpose(1, 2).reshape(batch, length, self.expert_width, self.experts)
        mixed = (y * self.router_weights(x).to(y.dtype)[..., None, :]).sum(-1)
        return self.out_proj(mixed)


MIXERS = [
    ("hyena", Hyena, {
        "kind": "sequence", "shorthand": "H", "defaults": {},
        "description": "Hyena order 2 as in mad-lab: inner 4x, tied projections, implicit "
                       "filters (MLP width 4)",
    }),
    ("mh-hyena", MultiHeadHyena, {
        "kind": "sequence", "shorthand": "mH", "defaults": {},
        "description": "multi-head Hyena: 16 heads of 8, filtered k-v outer products, implicit "
                       "filters (width 2)",
    }),
    ("hyena-experts", HyenaExperts, {
        "kind": "sequence", "shorthand": "He", "defaults": {},
        "description": "Hyena experts: 8 of width 16, top-2 routing, implicit filters "
                       "(width 16)",
    }),
]
