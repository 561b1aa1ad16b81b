"""Model shapes for scaling runs: the paper's architecture families (App. C.1) at a given width
and depth, and a ladder of sizes extended below the paper's smallest model.

The paper's rules (mad-protocol.md section 10.1), kept here: SwiGLU channel mixers of width
8d/3 rounded to the nearest multiple of 16 (none in Mamba models); attention head size 64
(capped at half the width, and halved until it divides the width, for the small widths
added here); multi-head Hyena with heads of size
8; Mamba with state 16, expansion 2, convolution 4; MoE with 8 experts, 2 active, each expert
half the dense SwiGLU width so that active parameters match; Hyena experts with 8 experts of
width d/8, 2 active. Normalisation is madbench's (RMSNorm, untied embeddings: see docs).

``depth`` is the number of sequence-mixer blocks, each followed by a channel mixer. Mamba
mixes channels itself, so Mamba models have 2 x depth Mamba layers and no channel mixer
(comparable parameters, as in the Mamba paper). Striped models replace an evenly spaced share
of the sequence mixers by multi-head attention: 25% for StripedHyena and StripedMamba (the
paper's compute-optimal ratio), 1 in 12 for StripedHyena experts + MoE; at least one layer is
attention, so the smallest depths hold more than the nominal share (recorded per run as
``attention_fraction``). Any striped family takes another ratio (``with_attention_ratio``): the
paper strips attention:Hyena 1:1, 1:3 and 1:11. A ratio a:b is exact at depths that are
multiples of a + b; attention takes the last position of each period (App. E.1: Hyena first,
then attention).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from fractions import Fraction

from ..architecture import ArchitectureSpec, LayerSpec, mixer_entry, mixer_kind
from ..errors import UsageError
from ..hashing import content_hash
from .limits import MAX_DEPTH, check_size


@dataclass(frozen=True)
class Family:
    """One architecture family: its sequence mixer, channel mixer and attention share."""

    name: str
    mixer: str                    #: registered sequence mixer
    channel: str | None           #: "swiglu", "moe-mlp" or None (Mamba)
    attention_share: float = 0.0  #: fraction of sequence mixers that are attention
    description: str = ""
    mixer_kwargs: dict = field(default_factory=dict)  #: extra constructor kwargs (custom)


#: The Hyena families train the modal Hyena layers (exact finite state, what the stored frontiers
#: were measured with) and Mamba without a convolution bias (likewise); the MAD evaluation's
#: bundled ``hyena`` and ``mamba`` follow the reference implementation instead (docs/fidelity.md).
FAMILIES: dict[str, Family] = {f.name: f for f in (
    Family("transformer++", "mh-attention", "swiglu", 1.0, "attention + SwiGLU, rotary"),
    Family("hyena", "hyena-modal", "swiglu", 0.0, "Hyena + SwiGLU"),
    Family("mh-hyena", "mh-hyena-modal", "swiglu", 0.0, "multi-head Hyena (heads of 8) + SwiGLU"),
    Family("striped-hyena", "hyena-modal", "swiglu", 0.25, "Hyena striped with 25% attention"),
    Family("striped-mh-hyena", "mh-hyena-modal", "swiglu", 0.25,
           "multi-head Hyena (heads of 8) striped with 25% attention"),
    Family("mamba", "mamba", None, 0.0, "Mamba layers only (state 16)"),
    Family("striped-mamba", "mamba", None, 0.25, "Mamba striped with 25% attention"),
    Family("striped-hyena-moe", "hyena-modal", "moe-mlp", 0.25,
           "StripedHyena (25% attention) with MoE channel mixers"),
    Family("striped-hyena-experts-moe", "hyena-experts-modal", "moe-mlp", 1 / 12,
           "Hyena experts striped 1:11 with attention, MoE channel mixers"),
)}

#: (width, depth) of the size ladder, smallest first. Widths 32-96 and depths 2-3 extend the
#: paper's ladder (smallest: d 128, 4 layers) downward so that CPU tests and small GPU budgets
#: have models to train; from d 128 on the depths follow the paper's aspect ratio loosely.
LADDER: tuple[tuple[int, int], ...] = (
    (32, 2), (48, 2), (64, 2), (64, 3), (96, 3), (128, 4), (160, 5), (192, 6), (256, 6),
    (256, 8), (320, 8), (384, 10), (448, 12), (512, 12), (640, 14), (768, 16),
)


def ffn_width(width: int) -> int:
    """8d/3 rounded to the nearest multiple of 16 (at least 16)."""
    return max(16, int(round(8 * width / 3 / 16)) * 16)


def attention_heads(width: int) -> int:
    """Heads of size min(64, width / 2), halved until the size divides the width."""
    head = min(64, max(1, width // 2))
    while width % head:
        head //= 2
    return width // head


def attention_positions(depth: int, share: float) -> set[int]:
    """Which of ``depth`` sequence-mixer positions are attention: evenly spaced, the last one
    included, at least one when ``share > 0``."""
    if share >= 1:
        return set(range(depth))
    if share <= 0:
        return set()
    count = min(depth, max(1, round(depth * share)))
    return {round((j + 1) * depth / count) - 1 for j in range(count)}


def _attention_layer(width: int) -> LayerSpec:
    """Scaling runs' attention: heads of 64, no biases (the stored frontiers were trained so)."""
    return LayerSpec("mh-attention", {"num_heads": attention_heads(width), "bias": False})


def _sequence_layer(family: Family, width: int) -> LayerSpec:
    if family.mixer == "mh-attention":
        return _attention_layer(width)
    if family.mixer == "mh-hyena-modal":
        if width % 8:
            raise UsageError(f"mh-hyena needs a width divisible by 8, got {width}")
        return LayerSpec("mh-hyena-modal", {"heads": width // 8})
    if family.mixer == "mamba":
        return LayerSpec("mamba", {"d_state": 16, "d_conv": 4, "expand": 2, "conv_bias": False})
    if family.mixer == "hyena-experts-modal":
        if width % 8:
            raise UsageError(f"hyena-experts needs a width divisible by 8, got {width}")
        return LayerSpec("hyena-experts-modal", {"experts": 8, "expert_width": width // 8,
                                                 "top_k": 2})
    return LayerSpec(family.mixer, dict(family.mixer_kwargs))


def _channel_layer(family: Family, width: int) -> LayerSpec | None:
    if family.channel is None:
        return None
    inner = ffn_width(width)
    if family.channel == "moe-mlp":
        return LayerSpec("moe-mlp", {"experts": 8, "expert_width": max(8, inner // 2),
                                     "top_k": 2})
    return LayerSpec(family.channel, {"inner": inner})


def parse_attention_ratio(text: str | float | Fraction) -> Fraction:
    """The share of attention among sequence mixers, from ``A:B`` (attention:other, e.g.
    ``1:3`` -> 1/4, with A and B at least 1), a share in (0, 1) (``0.25``) or a percentage
    (``25%``). A share of 1 leaves no other sequence mixer (that is ``transformer++``)."""
    t = str(text).strip().replace(" ", "")
    try:
        if ":" in t:
            a, b = (int(v) for v in t.split(":"))
            if a < 1 or b < 0:
                raise ValueError
            share = Fraction(a, a + b)
        else:
            share = Fraction(t[:-1]) / 100 if t.endswith("%") else Fraction(t)
            share = share.limit_denominator(1000)
        if not 0 < share <= 1:
            raise ValueError
    except (ValueError, ZeroDivisionError):
        raise UsageError(f"--attention-ratio takes A:B (attention:other sequence mixers, e.g. "
                         f"1:3), a share in (0, 1) or a percentage, not {text!r}") from None
    if share == 1:
        raise UsageError(f"--attention-ratio {text}: a share of 1 leaves no other sequence "
                         "mixer; use transformer++ (a striped family takes a share in (0, 1))")
    return share


def ratio_label(share: float) -> str:
    """``1:3`` for 1/4, ``1:11`` for 1/12, ``2:3`` for 2/5."""
    f = Fraction(share).limit_denominator(1000)
    return f"{f.numerator}:{f.denominator - f.numerator}"


def with_attention_ratio(family: Family, ratio: str | float | Fraction) -> Family:
    """``family`` with another attention share; a share other than the family's own gets a
    name of its own (``striped-hyena-1to11``) so that records and frontiers do not mix."""
    share = parse_attention_ratio(ratio)
    if family.attention_share in (0.0, 1.0):
        striped = ", ".join(name for name, f in FAMILIES.items() if 0 < f.attention_share < 1)
        raise UsageError(f"--attention-ratio applies to striped families ({striped}, or a "
                         f"mixer with --striped), not {family.name!r}")
    if math.isclose(float(share), family.attention_share):
        return family
    label = ratio_label(share).replace(":", "to")
    return replace(family, name=f"{family.name}-{label}", attention_share=float(share),
                   description=f"{family.description}; attention:other {ratio_label(share)}")


def exact_depths(share: float, up_to: int = MAX_DEPTH) -> list[int]:
    """Depths at which the family holds exactly ``share`` attention (up to the largest depth a
    size may have)."""
    return [d for d in range(1, up_to + 1)
            if math.isclose(len(attention_positions(d, share)) / d, share)]


def layer_order(spec: ArchitectureSpec) -> list[str]:
    """The sequence mixers of ``spec``, in order."""
    return [l.mixer for l in spec.layers if mixer_kind(l.mixer) == "sequence"]


def get_family(name: str, striped: bool = False, mixer_kwargs: dict | None = None,
               attention_ratio: str | None = None) -> Family:
    """A family by name; any other registered sequence mixer or ``pkg.module:Class`` gives a
    family of its own: the mixer with SwiGLU (none if it mixes channels), 25% attention when
    ``striped`` (or ``attention_ratio`` given). ``attention_ratio`` (``1:3``, ``0.25``) sets
    the share of attention of a striped family."""
    if attention_ratio is not None and name not in FAMILIES:
        striped = True
    family = _get_family(name, striped, mixer_kwargs)
    return family if attention_ratio is None else with_attention_ratio(family, attention_ratio)


def _get_family(name: str, striped: bool, mixer_kwargs: dict | None) -> Family:
    if name in FAMILIES and not striped and not mixer_kwargs:
        return FAMILIES[name]
    if name in FAMILIES:           # a stored family's own mixer, never a namesake in the registry
        base = FAMILIES[name]
        if striped and not mixer_kwargs and f"striped-{name}" in FAMILIES:
            return FAMILIES[f"striped-{name}"]
        # a variant is named apart, so that its records never mix with the stored family's
        label = ("striped-" if striped and not base.attention_share else "") + name
        if mixer_kwargs:
            label += "+" + content_hash(mixer_kwargs, 8)
        return Family(label, base.mixer, base.channel,
                      base.attention_share or (0.25 if striped else 0.0),
                      f"{base.description}, variant", dict(mixer_kwargs or {}))
    try:
        entry = mixer_entry(name)
    except UsageError:
        raise UsageError(f"unknown scaling family {name!r}: not one of {', '.join(FAMILIES)}, "
                         "a registered sequence mixer or pkg.module:Class") from None
    if entry.metadata.get("kind", "sequence") != "sequence":
        raise UsageError(f"{name!r} is a channel mixer; a scaling family needs a sequence mixer")
    channel = None if entry.metadata.get("mixes_channels") else "swiglu"
    return Family(("striped-" if striped else "") + name, name, channel,
                  0.25 if striped else 0.0, f"{name} (custom family)", dict(mixer_kwargs or {}))


def family_spec(family: str | Family, width: int, depth: int) -> ArchitectureSpec:
    """The language-model spec of ``family`` at ``width`` with ``depth`` sequence-mixer blocks."""
    fam = family if isinstance(family, Family) else get_family(family)
    check_size(width, depth)
    attention = attention_positions(depth, fam.attention_share)
    seq, channel = _sequence_layer(fam, width), _channel_layer(fam, width)
    attn = _attention_layer(width) if attention else None
    layers: list[LayerSpec] = []
    for i in range(depth):
        if i in attention:  # attention always gets a channel mixer (SwiGLU in Mamba families)
            layers += [attn, channel or LayerSpec("swiglu", {"inner": ffn_width(width)})]
        elif channel is None:  # Mamba: the block's channel slot is a second Mamba layer
            layers += [seq, seq]
        else:
            layers += [seq, channel]
    return ArchitectureSpec(f"{fam.name}@{width}x{depth}", tuple(layers), width)


def attention_fraction(spec: ArchitectureSpec) -> float:
    """Share of sequence-mixing layers that are attention."""
    seq = [l for l in spec.layers if mixer_kind(l.mixer) == "sequence"]
    att = [l for l in seq if "attention" in l.mixer and "linear" not in l.mixer]
    return len(att) / len(seq) if seq else 0.0


def parse_size(text: str) -> tuple[int, int]:
    """``WIDTHxDEPTH`` (e.g. ``64x2``) -> (64, 2), within ``limits``' bounds."""
    try:
        w, d = text.lower().split("x")
        width, depth = int(w), int(d)
    except ValueError:
        raise UsageError(f"model size must look like WIDTHxDEPTH (e.g. 64x2), not {text!r}") \
            from None
    check_size(width, depth)
    return width, depth


def striping(family, spec, depth: int) -> dict:
    """The layer order of a family's model and its attention share, nominal and as built."""
    share = family.attention_share
    out = {"family": family.name, "depth": depth, "sequence_mixers": layer_order(spec),
           "attention_fraction": attention_fraction(spec), "nominal_share": share}
    if 0 < share < 1:
        out["nominal_ratio"] = ratio_label(share)
        out["exact_depths"] = exact_depths(share)
    return out
