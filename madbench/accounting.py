"""Accounting: parameters (total and active), state (fixed, dynamic, cache) and FLOPs of an
architecture, per layer and in total, plus the iso-state and iso-parameter verdicts.

Conventions (recorded here once; every number ``describe_architecture`` returns follows them):

- ``params`` counts every parameter of the language model: embedding, residual blocks (mixers
  and their pre-norms), final norm and head. ``non_embedding_params`` counts only the residual
  blocks, mixers and pre-norms (the convention of mad-protocol.md section 6.3). A layer's own
  ``params`` counts its mixer only, without the pre-norm (``norm_params``).
- ``active_params``: a sparse mixer (MoE, Hyena experts) reports the parameters one token uses
  through ``active_parameters()``; other layers count all of theirs.
- State, per sequence-mixing layer, from the mixer's ``state_size(seq_len)``: a layer whose
  ``state_size`` is the same at two long lengths (``max(4 seq_len, 8192)`` and twice that) has
  **fixed** state, reported at the long length (so a sliding window's cache counts as fixed, at
  its full window); otherwise its state is **dynamic** (attention's kv-cache), reported at
  ``seq_len``. A mixer without ``state_size`` has unknown state (``None``); ``madbench check``
  measures it. Channel mixers carry no state. ``cache`` is the short-convolution cache a mixer
  declares through ``cache_size(seq_len)`` (0 when absent); it is outside the paper's 4,096.
- ``flops_per_token``: forward FLOPs per token of one sequence of ``seq_len`` tokens: each
  layer's analytic formula from ``madbench.flops`` (the paper's App. C.4, a plugin's
  ``madbench_flops`` hook for third-party mixers), else a FlopCounterMode measurement (a lower
  bound: it counts only matrix products, convolutions and fused attention), marked per layer
  in ``flop_method`` (``unknown``, with ``None`` counts and a one-line warning, when the
  layer cannot be counted: FLOPs are information and never block an evaluation); plus the
  head's 2 dim vocab. A multiply-add is 2 FLOPs; a causal mask
  does not halve attention. Multiply by about 3 for training.
"""
from __future__ import annotations

import functools
import math
import sys
from typing import Any

import torch

from .architecture import as_spec, mixer_entry
from .errors import MadbenchError, UsageError
from .flops import layer_flops
from .inspection import build_language_model

#: The paper's total fixed state for models without attention (App. B.3).
STATE_TARGET = 4096
#: The iso-parameter baseline: the standard multi-head attention + SwiGLU model.
REFERENCE_ARCHITECTURE = "mA-Sg-mA-Sg"
#: Flag a non-embedding parameter count more than this fraction away from the baseline's.
PARAM_TOLERANCE = 0.20


def long_lengths(seq_len: int) -> tuple[int, int]:
    """The two lengths at which a fixed-state layer must report the same state."""
    first = max(4 * seq_len, 8192)
    return first, 2 * first


def count_params(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def active_params(module: torch.nn.Module) -> int:
    """Parameters one token uses: ``active_parameters()`` when the mixer defines it."""
    method = getattr(module, "active_parameters", None)
    return int(method()) if callable(method) else count_params(module)


def _declared(mixer: torch.nn.Module, method: str, seq_len: int) -> int:
    """``mixer.<method>(seq_len)`` as an int; anything else (a string, NaN, a fraction, a
    negative number, an exception) is a usage error naming the mixer and the method."""
    name = type(mixer).__name__
    try:
        value = getattr(mixer, method)(seq_len)
        if isinstance(value, (str, bytes, bool)):        # float() would read "2048"
            raise ValueError(f"{value!r} is not a count")
        number = float(value)
        if not math.isfinite(number) or number != int(number) or number < 0:
            raise ValueError(f"{value!r} is not a count")
    except Exception as exc:  # noqa: BLE001 - the mixer's own code, of any kind
        raise UsageError(f"{name}.{method}({seq_len}) must return a whole number of values: "
                         f"{type(exc).__name__}: {exc}".splitlines()[0]) from None
    return int(number)


def layer_state(mixer: torch.nn.Module, kind: str, seq_len: int) -> dict:
    """``state_kind`` (none, fixed, dynamic, unknown), ``fixed_state``, ``dynamic_state`` at
    ``seq_len`` and ``cache``, for one mixer (see the module docstring for the rules)."""
    cache_method = getattr(mixer, "cache_size", None)
    cache = _declared(mixer, "cache_size", seq_len) if callable(cache_method) else 0
    if kind != "sequence":
        return {"state_kind": "none", "fixed_state": 0, "dynamic_state": 0, "cache": cache}
    state_method = getattr(mixer, "state_size", None)
    if not callable(state_method):
        return {"state_kind": "unknown", "fixed_state": None, "dynamic_state": None,
                "cache": cache}
    first, second = long_lengths(seq_len)
    at_first, at_second = (_declared(mixer, "state_size", n) for n in (first, second))
    if at_first == at_second:
        return {"state_kind": "fixed", "fixed_state": at_first, "dynamic_state": 0,
                "cache": cache}
    return {"state_kind": "dynamic", "fixed_state": 0,
            "dynamic_state": _declared(mixer, "state_size", seq_len), "cache": cache}


def describe_architecture(spec: Any, seq_len: int = 128, vocab_size: int = 16) -> dict:
    """Parameters, state and FLOPs of an architecture, per layer and in total.

    Top-level keys: ``name``, ``dim``, ``seq_len``, ``vocab_size``, ``params`` (all),
    ``non_embedding_params``, ``embedding_params``, ``head_params`` (final norm and head),
    ``active_params``, ``active_non_embedding_params``, ``fixed_state`` (``None`` when a layer's
    state is unknown), ``dynamic_state`` (at ``seq_len``; ``None`` likewise), ``cache``,
    ``unknown_state_layers``, ``flops_per_token`` (forward: the per-layer formulas of
    ``madbench.flops``, FlopCounterMode for a mixer without one, plus the head's
    2 dim vocab; the embedding lookup is free) and ``layers`` (one dict per layer with ``index``, ``mixer``,
    ``kind``, ``kwargs``, ``class``, ``params``, ``active_params``, ``norm_params``,
    ``state_kind``, ``fixed_state``, ``dynamic_state``, ``cache``, ``flops_per_token``,
    ``flop_method``).
    """
    spec = as_spec(spec)
    if seq_len < 1 or vocab_size < 2:
        raise MadbenchError(f"need seq_len >= 1 and vocab_size >= 2, got {seq_len}, {vocab_size}")
    model = build_language_model(spec, vocab_size, seq_len)
    layer_counts = [_layer_flops(index, l, spec.dim, seq_len)
                    for index, l in enumerate(spec.layers)]
    layers = []
    for index, (layer, block) in enumerate(zip(spec.layers, model.encoder.blocks)):
        entry = mixer_entry(layer.mixer)
        kind = entry.metadata.get("kind", "sequence")
        cls = type(block.mixer)
        layers.append({
            "index": index, "mixer": layer.mixer, "kind": kind,
            "kwargs": {**entry.metadata.get("defaults", {}), **dict(layer.kwargs)},
            "class": f"{cls.__module__}:{cls.__qualname__}",
            "params": count_params(block.mixer), "active_params": active_params(block.mixer),
            "norm_params": count_params(block.norm),
            **layer_state(block.mixer, kind, seq_len),
            "flops_per_token": (None if layer_counts[index] is None
                                else layer_counts[index].total / seq_len),
            "flop_method": "unknown" if layer_counts[index] is None
            else layer_counts[index].method,
        })
    total = count_params(model)
    blocks = count_params(model.encoder.blocks)
    embedding = count_params(model.encoder.embedding)
    inactive = sum(l["params"] - l["active_params"] for l in layers)
    unknown = [l["index"] for l in layers if l["state_kind"] == "unknown"]
    return {
        "name": spec.name, "dim": spec.dim, "seq_len": seq_len, "vocab_size": vocab_size,
        "params": total, "non_embedding_params": blocks, "embedding_params": embedding,
        "head_params": total - blocks - embedding,
        "active_params": total - inactive, "active_non_embedding_params": blocks - inactive,
        "fixed_state": None if unknown else sum(l["fixed_state"] for l in layers),
        "dynamic_state": None if unknown else sum(l["dynamic_state"] for l in layers),
        "cache": sum(l["cache"] for l in layers),
        "unknown_state_layers": unknown,
        # blocks (analytic formulas; FlopCounterMode for mixers without one) plus the head;
        # unknown when some layer could not be counted
        "flops_per_token": None if None in layer_counts else
        sum(c.total for c in layer_counts) / seq_len + 2.0 * spec.dim * vocab_size,
        "layers": layers,
    }


def _layer_flops(index: int, layer, dim: int, seq_len: int):
    """A layer's FLOP count (a measured lower bound is marked by its method, not warned
    about), or None with a one-line warning when it cannot be counted: an informational
    number never blocks an evaluation."""
    try:
        return layer_flops(layer.mixer, dim, seq_len, layer.kwargs, warn=False)
    except MadbenchError as exc:
        print(f"Warning: FLOPs of layer {index} ({layer.mixer}) unknown: {exc}",
              file=sys.stderr)
        return None


def has_dynamic_state(description: dict) -> bool:
    return any(l["state_kind"] == "dynamic" for l in description["layers"])


def check_iso_state(description: dict, target: int = STATE_TARGET,
                    tolerance: float = 0.0) -> tuple[bool, str]:
    """Whether the total fixed state is ``target`` within ``tolerance`` (a fraction of the
    target: 0.05 accepts 5% either way). Models with dynamic state (attention) are not
    normalised (paper App. B.3) and pass with a note; a model whose state is unknown fails."""
    if has_dynamic_state(description):
        return True, (f"not normalised: dynamic state (kv-cache) of "
                      f"{description['dynamic_state']:,} at length {description['seq_len']}, "
                      f"plus {description['fixed_state'] or 0:,} fixed; the paper normalises "
                      "only models without attention")
    if description["fixed_state"] is None:
        unknown = description["unknown_state_layers"]
        names = ", ".join(f"{i} ({description['layers'][i]['mixer']})" for i in unknown)
        subject = f"layers {names} declare" if len(unknown) > 1 else f"layer {names} declares"
        return False, (f"state unknown: {subject} no state_size(seq_len); run 'madbench "
                       "check' to measure it")
    fixed = description["fixed_state"]
    deviation = (fixed - target) / target
    ok = abs(fixed - target) <= tolerance * target
    if fixed == target:
        return True, f"fixed state {fixed:,} = target {target:,}"
    relation = "within" if ok else "outside"
    return ok, (f"fixed state {fixed:,} differs from target {target:,} by {deviation:+.1%} "
                f"({relation} tolerance {tolerance:.0%})")


@functools.lru_cache(maxsize=8)
def _reference_description(seq_len: int, vocab_size: int) -> dict:
    return describe_architecture(REFERENCE_ARCHITECTURE, seq_len, vocab_size)


def reference_description(seq_len: int = 128, vocab_size: int = 16) -> dict:
    """The description of the iso-parameter baseline, ``REFERENCE_ARCHITECTURE``."""
    return _reference_description(seq_len, vocab_size)


def param_ratio(description: dict, reference_description: dict | None = None) -> float:
    """Non-embedding parameters relative to the baseline (default: the standard multi-head
    attention + SwiGLU model, mA-Sg-mA-Sg). Flag it with ``param_ratio_flagged``."""
    if reference_description is None:
        reference_description = _reference_description(description["seq_len"],
                                                       description["vocab_size"])
    return description["non_embedding_params"] / reference_description["non_embedding_params"]


def param_ratio_flagged(ratio: float, tolerance: float = PARAM_TOLERANCE) -> bool:
    """True when the ratio is more than ``tolerance`` away from 1 (default +-20%)."""
    return not math.isclose(ratio, 1.0) and abs(ratio - 1.0) > tolerance
