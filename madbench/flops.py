"""FLOP counts of mixers, after the MAD paper's App. C.4 (table reproduced in mad-protocol.md
section 10.3): the one home of FLOP formulas, used by ``madbench.accounting`` (``arch
describe``) and ``madbench.scaling.flops`` (whole architectures, training budgets).

Conventions (one set, used everywhere in madbench):

- A formula gives the **forward** FLOPs of **one sequence** of ``seq_len`` tokens (batch 1), with
  a multiply-add counted as **2 FLOPs**. ``per_token`` divides by ``seq_len``; **training** is
  3 x forward (forward plus a backward pass of about twice its cost), the convention of 6ND.
- Matrix products, convolutions, FFTs, scans and the gates the paper lists are counted;
  norms, activations, residual additions, rotary embeddings and the optimiser step are not.
- Attention counts every (query, key) pair: the causal mask does not halve it (the paper's
  4 L^2 D, and what FlopCounterMode reports for fused attention).
- **Embeddings in**: the paper's 4 L D V counts the input embedding as a one-hot product
  (2 L D V) plus the output head (2 L D V). ``embeddings=False`` leaves both out.
- Sparse layers (MoE, Hyena experts) count the **active** work: the k experts a token is routed
  to, plus the router.

Where the paper's table is used term for term: attention (QKV 6LD^2, scores 4L^2D, softmax
2HL^2, output 2LD^2), GLU 6 L D D_glu, Hyena (projections 6LD^2, short convolutions 18LD at
filter 3, FFT convolution 10 L log2(L) D, gates 4LD, output 2LD^2) and Mamba (projections
4LD^2E, featurisation 2LDE(D_dt + 2S) + 2LDE D_dt, scan 2LDES -- the paper's lower bound --,
output 2LD^2E), with D replaced by the layer's actual inner widths. Re-derived, with the
reason in each formula's docstring: short convolutions (2 k FLOPs per channel and position for
width k: the paper prints 6LDE for Mamba's width 4, inconsistent with its own 18LD for three
Hyena streams of width 3), the filter featurisation of madbench's modal filters (10 FLOPs per
mode, channel and position, in place of the paper's implicit-MLP term S L D), multi-head Hyena
(one filter per key channel, D d channels through the FFT for head size d), and every MoE term
(the table's router ``L D A`` and up-projections ``4 D D_moe A`` lack the factor L and mix the
multiply-add conventions): router 2 L D E, active expert projections 6 L D w k for SwiGLU
experts of width w with k active, and the weighted combination 2 L D k. GLA and linear
attention are not in the paper; their formulas count the chunked algorithm madbench runs, as do
those of DeltaNet, Gated DeltaNet, Mamba-2 and RWKV-7.

A mixer without a built-in formula is asked through the ``madbench_flops`` hook; failing that,
its forward pass is measured with FlopCounterMode (``method="flopcounter"``: a lower bound,
since that counts only matrix products and convolutions).
"""
from __future__ import annotations

import inspect
import math
from dataclasses import dataclass
from typing import Any, Callable, Mapping

from .architecture import LayerSpec, build_mixer, mixer_entry
from .errors import MadbenchError, warn as one_line_warning
from .plugins import get_plugin_manager

#: Training FLOPs per forward FLOP (forward + backward ~ 2 x forward).
TRAINING_MULTIPLIER = 3
#: FLOPs per mode, channel and position to evaluate a modal filter: t*theta, t*rate, exp, cos,
#: sin, two residue products, a subtraction, the envelope product and the sum over modes.
MODAL_FILTER_FLOPS_PER_MODE = 10


def fft_conv_flops(seq_len: int, channels: int) -> float:
    """The paper's cost of a causal FFT convolution: 10 L log2(L) per channel."""
    return 10.0 * seq_len * math.log2(seq_len) * channels if seq_len > 1 else 0.0


def short_conv_flops(seq_len: int, channels: int, width: int) -> float:
    """A causal depthwise convolution of width k: k multiply-adds per channel and position."""
    return 2.0 * width * seq_len * channels


# -- built-in layer formulas: f(dim, L, **constructor kwargs) -> {term: FLOPs} ---------------
def attention_flops(dim: int, L: int, num_heads: int = 1, head_dim: int | None = None,
                    window: int | None = None, **_: Any) -> dict[str, float]:
    """Softmax attention (paper: 6LD^2 + 4L^2D + 2HL^2 + 2LD^2 at inner width D). A sliding
    window of w keys replaces L keys per query by min(L, w)."""
    head_dim = head_dim or dim // num_heads
    inner = num_heads * head_dim
    keys = L if window is None else min(L, window)
    return {"qkv_projections": 6.0 * L * dim * inner,
            "attention": 4.0 * L * keys * inner,
            "softmax": 2.0 * num_heads * L * keys,
            "output_projection": 2.0 * L * inner * dim}


def swiglu_flops(dim: int, L: int, inner: int = 512, **_: Any) -> dict[str, float]:
    """Gated linear unit, three projections (paper: 6 L D D_glu)."""
    return {"glu": 6.0 * L * dim * inner}


def mlp_flops(dim: int, L: int, inner: int = 512, **_: Any) -> dict[str, float]:
    """Two-layer MLP: 4 L D D_inner."""
    return {"mlp": 4.0 * L * dim * inner}


def moe_flops(dim: int, L: int, experts: int = 8, expert_width: int = 16, top_k: int = 2,
              **_: Any) -> dict[str, float]:
    """Mixture of SwiGLU experts, top-k routed (re-derived, see the module docstring): router
    2 L D E; the k active experts' gate, up and down projections 6 L D w k; the weighted sum
    of their outputs 2 L D k."""
    return {"router": 2.0 * L * dim * experts,
            "expert_projections": 6.0 * L * dim * expert_width * top_k,
            "combine": 2.0 * L * dim * top_k}


def modal_hyena_flops(dim: int, L: int, modes: int = 8, short_filter: int = 3,
                direct_term: bool = True, **_: Any) -> dict[str, float]:
    """Order-2 Hyena (paper terms; featurisation for the modal filter). Gates: x1*v and x2*y
    (one FLOP each per channel and position) and the direct term D*u (a multiply-add): 4LD."""
    return {"projections": 6.0 * L * dim * dim,
            "short_convs": short_conv_flops(L, 3 * dim, short_filter),
            "filter_featurisation": MODAL_FILTER_FLOPS_PER_MODE * modes * L * dim,
            "fft_conv": fft_conv_flops(L, dim),
            "gates": (4.0 if direct_term else 2.0) * L * dim,
            "output_projection": 2.0 * L * dim * dim}


def modal_mh_hyena_flops(dim: int, L: int, heads: int = 16, modes: int = 1, short_filter: int = 3,
                   direct_term: bool = True, **_: Any) -> dict[str, float]:
    """Multi-head Hyena (re-derived for madbench's layout): per head of size d = D/H the outer
    product k (x) v (L D d), one filter per key channel (featurisation over D filters), D d
    channels through the FFT convolution, the direct term (2 L D d) and the read-out with q
    (2 L D d): the paper's "convolution and gates scale with D^2/H"."""
    d = dim // heads
    return {"projections": 6.0 * L * dim * dim,
            "short_convs": short_conv_flops(L, 3 * dim, short_filter),
            "filter_featurisation": MODAL_FILTER_FLOPS_PER_MODE * modes * L * dim,
            "outer_product": 1.0 * L * dim * d,
            "fft_conv": fft_conv_flops(L, dim * d),
            "gates": (4.0 if direct_term else 2.0) * L * dim * d,
            "output_projection": 2.0 * L * dim * dim}


def modal_hyena_experts_flops(dim: int, L: int, experts: int = 8, expert_width: int = 16,
                              top_k: int = 2, modes: int = 8, short_filter: int = 3,
                        direct_term: bool = True, **_: Any) -> dict[str, float]:
    """Hyena experts (re-derived): dense over all E w channels up to the long convolution (a
    filter reads every earlier position, selected or not): router 2 L D E, input projection
    2 L D 3Ew, short convolutions, featurisation, FFT convolution, the x1*v gate and direct
    term; sparse for the k routed experts: the output gate L k w, the down-projection 2 L k w D
    and the weighted combination 2 L D k."""
    inner = experts * expert_width
    active = top_k * expert_width
    return {"router": 2.0 * L * dim * experts,
            "projections": 6.0 * L * dim * inner,
            "short_convs": short_conv_flops(L, 3 * inner, short_filter),
            "filter_featurisation": MODAL_FILTER_FLOPS_PER_MODE * modes * L * inner,
            "fft_conv": fft_conv_flops(L, inner),
            "gates": (3.0 if direct_term else 1.0) * L * inner + 1.0 * L * active,
            "output_projection": 2.0 * L * active * dim,
            "combine": 2.0 * L * dim * top_k}


def implicit_filter_flops(L: int, order: int, channels: int, depth: int = 2) -> float:
    """Evaluating an implicit filter at L positions: the MLP (3 -> order, depth x order ->
    order, order -> channels), 2 FLOPs per multiply-add; sines and the window not counted. The
    paper's S L D term, with the MLP's layers spelled out."""
    return 2.0 * L * (3 * order + depth * order * order + order * channels)


def hyena_flops(dim: int, L: int, inner_factor: int = 4, proj_groups: int = 4,
                short_filter: int = 3, filter_order: int = 4, **_: Any) -> dict[str, float]:
    """Order-2 Hyena as mad-lab builds it (inner width E D, projection tied over
    ``proj_groups``): input projection 2 L D (3 E D / groups), short convolutions on 3 E D
    channels, the implicit filters, the FFT convolution of E D channels, gates x1*v, D*u (a
    multiply-add) and x0*y (4 L E D), output projection 2 L E D D."""
    inner = inner_factor * dim
    return {"projections": 2.0 * L * dim * (3 * inner // proj_groups),
            "short_convs": short_conv_flops(L, 3 * inner, short_filter),
            "filter_featurisation": implicit_filter_flops(L, filter_order, inner),
            "fft_conv": fft_conv_flops(L, inner),
            "gates": 4.0 * L * inner,
            "output_projection": 2.0 * L * inner * dim}


def mh_hyena_flops(dim: int, L: int, heads: int = 16, head_size: int | None = None,
                   proj_groups: int = 4, short_filter: int = 3, filter_order: int = 2,
                   **_: Any) -> dict[str, float]:
    """Multi-head Hyena as mad-lab builds it: per head of size d the outer products k_i v_j
    (L D d), one implicit filter per head, D d channels through the FFT convolution, the direct
    term (2 L D d) and the read-out with q (2 L D d): the paper's "convolution and gates scale
    with D^2/H"."""
    d = dim // heads if head_size is None else head_size
    return {"projections": 2.0 * L * dim * (3 * dim // proj_groups),
            "short_convs": short_conv_flops(L, 3 * dim, short_filter),
            "filter_featurisation": implicit_filter_flops(L, filter_order, heads),
            "outer_product": 1.0 * L * dim * d,
            "fft_conv": fft_conv_flops(L, dim * d),
            "gates": 4.0 * L * dim * d,
            "output_projection": 2.0 * L * dim * dim}


def hyena_experts_flops(dim: int, L: int, experts: int = 8, expert_width: int = 16,
                        short_filter: int = 3, filter_order: int = 16, **_: Any
                        ) -> dict[str, float]:
    """Hyena experts as mad-lab builds it: an order-2 Hyena over all E w channels (every
    expert's convolution runs at every position), router 2 L D E, the router-weighted sum over
    experts (2 L E w) and the shared output projection 2 L w D."""
    inner = experts * expert_width
    return {"router": 2.0 * L * dim * experts,
            "projections": 2.0 * L * dim * 3 * inner,
            "short_convs": short_conv_flops(L, 3 * inner, short_filter),
            "filter_featurisation": implicit_filter_flops(L, filter_order, inner),
            "fft_conv": fft_conv_flops(L, inner),
            "gates": 4.0 * L * inner,
            "combine": 2.0 * L * inner,
            "output_projection": 2.0 * L * expert_width * dim}


def mamba_flops(dim: int, L: int, d_state: int = 4, d_conv: int = 4, expand: float = 2,
                dt_rank: int | str = "auto", **_: Any) -> dict[str, float]:
    """Mamba (paper terms with E D = d_inner; short convolution 2 k per channel and position)."""
    inner = int(expand * dim)
    rank = math.ceil(dim / 16) if dt_rank == "auto" else int(dt_rank)
    return {"projections": 2.0 * L * dim * 2 * inner,
            "short_conv": short_conv_flops(L, inner, d_conv),
            "featurisation": 2.0 * L * inner * (rank + 2 * d_state) + 2.0 * L * inner * rank,
            "scan": 2.0 * L * inner * d_state,
            "output_projection": 2.0 * L * inner * dim}


def gla_flops(dim: int, L: int, num_heads: int = 1, expand_k: float = 1.0,
              expand_v: float = 1.0, gate_low_rank_dim: int = 16, chunk_size: int = 16,
              **_: Any) -> dict[str, float]:
    """Gated linear attention, chunked form (not in the paper): q, k, v, output-gate and
    low-rank forget-gate projections; inside each chunk of C a masked score matrix and its
    product with v (2 L C K + 2 L C V, not halved); across chunks q S and the state update
    k^T v (2 L K d_v each)."""
    K, V = int(dim * expand_k), int(dim * expand_v)
    dv = V // num_heads
    C = min(chunk_size, L)
    return {"projections": 4.0 * L * dim * K + 4.0 * L * dim * V,
            "gate_projection": 2.0 * L * dim * gate_low_rank_dim
            + 2.0 * L * gate_low_rank_dim * K,
            "intra_chunk": 2.0 * L * C * K + 2.0 * L * C * V,
            "inter_chunk": 4.0 * L * K * dv,
            "output_projection": 2.0 * L * V * dim}


def linear_attention_flops(dim: int, L: int, num_heads: int = 1, head_dim: int | None = None,
                           chunk_size: int = 64, **_: Any) -> dict[str, float]:
    """Causal linear attention, chunked form (not in the paper): as GLA without gates, plus
    the normaliser (2 L C per head inside a chunk, 2 L d_k across chunks)."""
    head_dim = head_dim or dim // num_heads
    inner = num_heads * head_dim
    C = min(chunk_size, L)
    return {"qkv_projections": 6.0 * L * dim * inner,
            "intra_chunk": 4.0 * L * C * inner,
            "inter_chunk": 4.0 * L * inner * head_dim,
            "normaliser": 2.0 * L * C * num_heads + 2.0 * L * inner,
            "output_projection": 2.0 * L * inner * dim}


def delta_rule_flops(dim: int, L: int, num_heads: int = 8, head_dim: int | None = None,
                     expand_v: float = 1.0, use_short_conv: bool = True, conv_size: int = 4,
                     use_gate: bool | None = None, chunk_size: int = 16, gated: bool = False,
                     **_: Any) -> dict[str, float]:
    """DeltaNet (``gated``: Gated DeltaNet), the chunked WY algorithm madbench runs (not in the
    paper). Per head and chunk of C: K K^T (2 C^2 d_k), the unit-triangular solve for the
    value and key columns (C^2 (d_k + d_v)), scores Q K^T and their product with the writes
    (2 C^2 d_k + 2 C^2 d_v); across chunks W S, Q S and the state update K^T U (2 C d_k d_v
    each). Projections q, k, v, beta (gated: also the forget gate and the output gate) and
    the output projection; three short convolutions."""
    dk = head_dim or dim // num_heads
    dv = int(dk * expand_v)
    K, V = num_heads * dk, num_heads * dv
    C = min(chunk_size, L)
    use_gate = gated if use_gate is None else use_gate
    terms = {"projections": 2.0 * L * dim * (2 * K + V + num_heads * (2 if gated else 1)
                                             + (V if use_gate else 0)),
             "short_convs": short_conv_flops(L, 2 * K + V, conv_size) if use_short_conv else 0.0,
             "intra_chunk": L * num_heads * (4.0 * C * dk + C * (dk + dv) + 2.0 * C * dv),
             "inter_chunk": 6.0 * L * num_heads * dk * dv,
             "output_projection": 2.0 * L * V * dim}
    return terms


def gated_delta_rule_flops(dim: int, L: int, **kwargs: Any) -> dict[str, float]:
    """Gated DeltaNet: ``delta_rule_flops`` with the forget and output gates."""
    return delta_rule_flops(dim, L, gated=True, **kwargs)


def mamba2_flops(dim: int, L: int, d_state: int = 4, d_conv: int = 4, expand: float = 2,
                 head_dim: int = 64, chunk_size: int = 16, **_: Any) -> dict[str, float]:
    """Mamba-2 as madbench runs it (not in the paper): in_proj to z, x, B, C and one step per
    head; the short convolution over x, B, C; the SSD scan in chunks of C as gated linear
    attention per head (queries C and keys B of size N, values of head size P): inside a
    chunk 2 L C N + 2 L C P per head, across chunks 4 L N P per head; the skip D x; out_proj."""
    inner = int(expand * dim)
    heads = inner // min(head_dim, inner)
    C = min(chunk_size, L)
    return {"projections": 2.0 * L * dim * (2 * inner + 2 * d_state + heads),
            "short_conv": short_conv_flops(L, inner + 2 * d_state, d_conv),
            "intra_chunk": 2.0 * L * C * (heads * d_state + inner),
            "inter_chunk": 4.0 * L * d_state * inner,
            "skip": 2.0 * L * inner,
            "output_projection": 2.0 * L * inner * dim}


def rwkv7_flops(dim: int, L: int, num_heads: int | None = None, head_dim: int = 16,
                decay_low_rank_dim: int = 32, a_low_rank_dim: int = 32, v_low_rank_dim: int = 32,
                gate_low_rank_dim: int = 64, chunk_size: int = 8, **_: Any) -> dict[str, float]:
    """RWKV-7 time mixing as madbench runs it (not in the paper): r, k, v projections, the four
    low-rank maps (4 L D r each), the chunked diagonal-plus-rank-one scan (per head and chunk:
    four pairwise products over d_k, 8 C d_k per token, the solve and the a.k products,
    C (d_k + d_v) + 2 C d_v, the outputs' in-chunk terms 4 C d_v; across chunks two reads of S
    and the state update, 8 d_k d_v per token), the bonus term (4 L D) and the output."""
    if num_heads is not None:
        head_dim = dim // num_heads
    heads = dim // head_dim
    C = min(chunk_size, L)
    ranks = decay_low_rank_dim + a_low_rank_dim + v_low_rank_dim + gate_low_rank_dim
    return {"projections": 6.0 * L * dim * dim,
            "low_rank": 4.0 * L * dim * ranks,
            "intra_chunk": L * heads * (8.0 * C * head_dim + C * 2 * head_dim + 6.0 * C * head_dim),
            "inter_chunk": 8.0 * L * heads * head_dim * head_dim,
            "bonus": 4.0 * L * dim,
            "output_projection": 2.0 * L * dim * dim}


#: Built-in formulas, keyed by the mixer class (``module:qualname``).
BUILTIN_FORMULAS: dict[str, Callable[..., dict[str, float]]] = {
    "madbench_layers.attention:Attention": attention_flops,
    "madbench_layers.channel:SwiGLU": swiglu_flops,
    "madbench_layers.channel:MLP": mlp_flops,
    "madbench_layers.moe:MoeMLP": moe_flops,
    "madbench_layers.hyena:Hyena": hyena_flops,
    "madbench_layers.hyena:MultiHeadHyena": mh_hyena_flops,
    "madbench_layers.hyena:HyenaExperts": hyena_experts_flops,
    "madbench_layers.hyena_modal:ModalHyena": modal_hyena_flops,
    "madbench_layers.hyena_modal:ModalMultiHeadHyena": modal_mh_hyena_flops,
    "madbench_layers.hyena_modal:ModalHyenaExperts": modal_hyena_experts_flops,
    "madbench_layers.mamba:Mamba": mamba_flops,
    "madbench_layers.gla:GatedLinearAttention": gla_flops,
    "madbench_layers.linear_attention:LinearAttention": linear_attention_flops,
    "madbench_layers.deltanet:DeltaNet": delta_rule_flops,
    "madbench_layers.deltanet:GatedDeltaNet": gated_delta_rule_flops,
    "madbench_layers.mamba2:Mamba2": mamba2_flops,
    "madbench_layers.rwkv7:RWKV7": rwkv7_flops,
}


# -- measured -------------------------------------------------------------------------------
def _cpu_attention_flops(query_shape, key_shape, value_shape, *args, out_shape=None, **kwargs):
    """CPU fused attention, counted like the registered GPU kernels (the causal mask does not
    halve the count)."""
    from torch.utils import flop_counter
    return flop_counter.sdpa_flop_count(query_shape, key_shape, value_shape)


def extra_flop_formulas() -> dict:
    """Operations FlopCounterMode has no formula for, counted here (for its
    ``custom_mapping``)."""
    import torch
    return {torch.ops.aten._scaled_dot_product_flash_attention_for_cpu: _cpu_attention_flops}


# -- per layer -------------------------------------------------------------------------------
@dataclass(frozen=True)
class LayerFlops:
    """Forward FLOPs of one layer on one sequence, by term; ``method``: analytic (built-in),
    hook (a plugin's ``madbench_flops``) or flopcounter (measured, a lower bound)."""

    mixer: str
    method: str
    terms: Mapping[str, float]

    @property
    def total(self) -> float:
        return float(sum(self.terms.values()))


def constructor_kwargs(mixer: str, kwargs: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The kwargs a mixer is built with: registry defaults, then ``kwargs``, then the class's
    own signature defaults for anything still missing."""
    entry = mixer_entry(mixer)
    merged = {**entry.metadata.get("defaults", {}), **dict(kwargs or {})}
    try:
        params = inspect.signature(entry.obj).parameters
    except (TypeError, ValueError):
        return merged
    for name, p in list(params.items())[1:]:  # skip dim
        if p.default is not inspect.Parameter.empty and p.kind in (
                p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY):
            merged.setdefault(name, p.default)
    return merged


def _class_id(mixer: str) -> str:
    cls = mixer_entry(mixer).obj
    return f"{cls.__module__}:{cls.__qualname__}"


def _from_hook(mixer: str, dim: int, seq_len: int, kwargs: dict) -> dict[str, float] | None:
    answer = get_plugin_manager().hook.madbench_flops(layer=mixer, dim=dim, seq_len=seq_len,
                                                      kwargs=dict(kwargs))
    if answer is None:
        return None
    terms = dict(answer) if isinstance(answer, Mapping) else {"total": answer}
    try:
        terms = {str(k): float(v) for k, v in terms.items()}
    except (TypeError, ValueError):
        raise MadbenchError(f"madbench_flops for {mixer!r} returned {answer!r}, not a number "
                            "or a dict of numbers") from None
    if any(not math.isfinite(v) or v < 0 for v in terms.values()):
        raise MadbenchError(f"madbench_flops for {mixer!r} returned a negative or non-finite "
                            f"count: {terms}")
    return terms


def measured_layer_flops(mixer: str, dim: int, seq_len: int,
                         kwargs: Mapping[str, Any] | None = None) -> float:
    """Forward FLOPs of one layer on one sequence, counted by FlopCounterMode. The forward
    runs without gradients, and again with them when that fails (some layers' autograd
    functions assert grad mode). Raises MadbenchError (one line) when the layer cannot be built
    or run either way."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    try:
        with torch.random.fork_rng(devices=[]):      # leaves the caller's random state alone
            torch.manual_seed(0)
            module = build_mixer(LayerSpec(mixer, dict(kwargs or {})), dim, seq_len)
            x = torch.randn(1, seq_len, dim)
    except Exception as exc:  # noqa: BLE001 - a broken mixer must give one clear line
        raise MadbenchError(f"cannot build {mixer!r} to count its FLOPs: "
                            f"{type(exc).__name__}: {exc}".splitlines()[0]) from None
    for grad in (False, True):   # some autograd functions assert grad mode, others its absence
        counter = FlopCounterMode(display=False, custom_mapping=extra_flop_formulas())
        try:
            with torch.set_grad_enabled(grad), counter:
                module(x)
            return float(counter.get_total_flops())
        except Exception as exc:  # noqa: BLE001 - a broken mixer must give one clear line
            error = exc
    raise MadbenchError(f"forward pass of {mixer!r} failed while counting FLOPs: "
                        f"{type(error).__name__}: {error}".splitlines()[0])


_WARNED: set[str] = set()      #: mixers whose FlopCounterMode fallback was said


def layer_flops(mixer: str, dim: int, seq_len: int, kwargs: Mapping[str, Any] | None = None,
                fallback: str = "flopcounter", warn: bool = True) -> LayerFlops:
    """Forward FLOPs of one mixer on one sequence: built-in formula, else the
    ``madbench_flops`` hook, else (``fallback="flopcounter"``) a FlopCounterMode measurement,
    said in a warning unless ``warn=False`` (``method`` records it either way), or
    (``fallback="error"``) an error."""
    if seq_len < 1 or dim < 1:
        raise MadbenchError(f"need dim >= 1 and seq_len >= 1, got {dim}, {seq_len}")
    full = constructor_kwargs(mixer, kwargs)
    formula = BUILTIN_FORMULAS.get(_class_id(mixer))
    if formula is not None:
        return LayerFlops(mixer, "analytic", formula(dim, seq_len, **full))
    terms = _from_hook(mixer, dim, seq_len, full)
    if terms is not None:
        return LayerFlops(mixer, "hook", terms)
    if fallback != "flopcounter":
        raise MadbenchError(f"no FLOP formula for mixer {mixer!r}: implement the "
                            "madbench_flops hook for it")
    measured = measured_layer_flops(mixer, dim, seq_len, kwargs)
    if measured <= 0:
        raise MadbenchError(f"no FLOP formula for mixer {mixer!r} and FlopCounterMode counts 0 "
                            "(custom or Triton ops): implement the madbench_flops hook")
    if warn and mixer not in _WARNED:          # once per mixer and process
        _WARNED.add(mixer)
        one_line_warning(f"no FLOP formula for mixer {mixer!r}: using FlopCounterMode's count, "
                         "a lower bound (matrix products and convolutions only)")
    return LayerFlops(mixer, "flopcounter", {"measured": measured})
