"""Named MAD architectures: every family the paper evaluates (App. B.3, Fig. 3.7 and B.2-B.7).

``PRESETS`` maps a readable name to ``(spec, metadata)``; ``spec`` is a list of
``(layer_name, kwargs)`` pairs, one residual block each, and ``metadata["mad_lab_id"]`` is the
mad-lab shorthand of the same stack.

For each sequence mixer X in H, mH, He, Alg, mAlg, A, mA and each channel mixer C in SwiGLU, MoE:

- ``<x>-<c>``: the common two-block model [X, C, X, C];
- ``striped-<x>-<c>``: the first block kept, the second made of multi-head attention:
  [X, C, mA, C]. (For X = mA this is the common model, so there is no striped-mh-attention.)

Mamba mixes channels too, so its families differ:

- ``mamba``: four Mamba layers of d_state 4 (1,024 state each, 4,096 in total), the paper's
  all-Mamba model;
- ``mamba-<c>``: [Mb, C, Mb, C] with **d_state 8**, so that two Mamba layers still hold
  2 x 256 x 8 = 4,096 and the model stays iso-state (with d_state 4 it would hold 2,048). The
  paper does not say how its "Mamba with SwiGLU/MoE" models were normalised; this is our choice.
- ``striped-mamba-<c>``: [Mb, C, mA, C], the first block of ``mamba-<c>`` (d_state 8, so
  2,048 fixed state, like every striped hybrid) followed by attention.

The DeltaNet-class baselines (Dn, GDn, R7: 2,048 state per layer at 8 heads of 16) follow the
common pattern; Mamba-2 (M2) follows Mamba's: ``mamba2`` (four layers, d_state 4),
``mamba2-<c>`` and ``striped-mamba2-<c>`` (d_state 8).
"""
from __future__ import annotations

SEQUENCE_FAMILIES = {  # preset prefix: (registered mixer, mad-lab shorthand)
    "hyena": ("hyena", "H"),
    "mh-hyena": ("mh-hyena", "mH"),
    "hyena-experts": ("hyena-experts", "He"),
    "gla": ("gated-linear-attention", "Alg"),
    "mh-gla": ("mh-gated-linear-attention", "mAlg"),
    "attention": ("attention", "A"),
    "mh-attention": ("mh-attention", "mA"),
    "deltanet": ("deltanet", "Dn"),
    "gated-deltanet": ("gated-deltanet", "GDn"),
    "rwkv7": ("rwkv7", "R7"),
}
CHANNELS = {"swiglu": ("swiglu", "Sg"), "moe": ("moe-mlp", "MoE")}
STRIPE = ("mh-attention", "mA")
MAMBA_ISO_STATE_D_STATE = 8  #: d_state of the two Mamba layers in mamba-swiglu / mamba-moe


def _preset(layers: list[tuple[str, dict, str]], description: str, **metadata) -> tuple:
    spec = [(name, kwargs) for name, kwargs, _ in layers]
    mad_lab_id = "-".join(short for _, _, short in layers)
    return spec, {"mad_lab_id": mad_lab_id, "description": description, **metadata}


def _build_presets() -> dict:
    presets = {}
    for prefix, (mixer, short) in SEQUENCE_FAMILIES.items():
        for suffix, (channel, cshort) in CHANNELS.items():
            x, c, a = (mixer, {}, short), (channel, {}, cshort), (*STRIPE[:1], {}, STRIPE[1])
            presets[f"{prefix}-{suffix}"] = _preset(
                [x, c, x, c], f"{mixer} + {channel}, two blocks", family=prefix,
                channel=channel, striped=False)
            if mixer != STRIPE[0]:
                presets[f"striped-{prefix}-{suffix}"] = _preset(
                    [x, c, a, c], f"{mixer} + {channel}, then multi-head attention + {channel}",
                    family=prefix, channel=channel, striped=True)
    mb4 = ("mamba", {}, "Mb")
    presets["mamba"] = _preset([mb4] * 4, "four Mamba layers (d_state 4, 1,024 state each)",
                               family="mamba", channel=None, striped=False)
    mb8 = ("mamba", {"d_state": MAMBA_ISO_STATE_D_STATE}, "Mb")
    for suffix, (channel, cshort) in CHANNELS.items():
        c, a = (channel, {}, cshort), (*STRIPE[:1], {}, STRIPE[1])
        presets[f"mamba-{suffix}"] = _preset(
            [mb8, c, mb8, c], f"Mamba (d_state 8, iso-state 4,096) + {channel}, two blocks",
            family="mamba", channel=channel, striped=False)
        presets[f"striped-mamba-{suffix}"] = _preset(
            [mb8, c, a, c], f"Mamba (d_state 8) + {channel}, then multi-head attention + "
            f"{channel}", family="mamba", channel=channel, striped=True)
    _add_mamba2(presets)
    return presets


def _add_mamba2(presets: dict) -> None:
    """Mamba-2 presets, built like Mamba's: ``mamba2`` is four layers of d_state 4 (1,024
    each); ``mamba2-<c>`` and ``striped-mamba2-<c>`` use d_state 8 (2,048 per layer)."""
    m4 = ("mamba2", {}, "M2")
    presets["mamba2"] = _preset([m4] * 4, "four Mamba-2 layers (d_state 4, 1,024 state each)",
                                family="mamba2", channel=None, striped=False)
    m8 = ("mamba2", {"d_state": MAMBA_ISO_STATE_D_STATE}, "M2")
    for suffix, (channel, cshort) in CHANNELS.items():
        c, a = (channel, {}, cshort), (*STRIPE[:1], {}, STRIPE[1])
        presets[f"mamba2-{suffix}"] = _preset(
            [m8, c, m8, c], f"Mamba-2 (d_state 8, iso-state 4,096) + {channel}, two blocks",
            family="mamba2", channel=channel, striped=False)
        presets[f"striped-mamba2-{suffix}"] = _preset(
            [m8, c, a, c], f"Mamba-2 (d_state 8) + {channel}, then multi-head attention + "
            f"{channel}", family="mamba2", channel=channel, striped=True)


PRESETS: dict = _build_presets()
