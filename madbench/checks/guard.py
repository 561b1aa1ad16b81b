"""The causality guard of a whole architecture: causality and the shape contract on every
layer, and causality of the whole language model (what ``madbench eval`` refuses on)."""
from __future__ import annotations

from typing import Any

from ..architecture import as_spec, mixer_entry
from ..errors import CheckFailed
from ..inspection import build_language_model
from ._common import layer_label, one_line
from .causality import check_causality, check_model_causality
from .contract import check_contract


def guard_architecture(spec: Any, seq_len: int = 32, vocab_size: int = 16,
                       raise_on_failure: bool = True) -> dict:
    """Run the causality check on every layer (channel mixers too: position-wise implies
    causal) and on the whole language model, plus the shape contract on every layer.

    Returns ``{"causal", "contract_ok", "layers": [...], "model": {...}, "failures": [...]}``;
    raises CheckFailed with the first failure (layer and first leaking position) unless
    ``raise_on_failure`` is False.
    """
    spec = as_spec(spec)
    model = build_language_model(spec, vocab_size, seq_len)
    layers, failures = [], []
    for index, (layer, block) in enumerate(zip(spec.layers, model.encoder.blocks)):
        label = layer_label(index, layer)
        try:
            contract = check_contract(block.mixer, spec.dim, seq_len)
            if not contract.shape_ok:  # nothing else can be checked on a wrong shape
                raise CheckFailed(f"{label} breaks the mixer contract: {contract.message}")
            causality = check_causality(block.mixer, spec.dim, seq_len)
        except CheckFailed:
            raise
        except (Exception, SystemExit) as exc:  # noqa: BLE001 - refused, in one line
            raise CheckFailed(f"{label} fails to run on (batch, {seq_len}, {spec.dim}) inputs: "
                              f"{one_line(exc)}") from None
        layers.append({"index": index, "mixer": layer.mixer,
                       "kind": mixer_entry(layer.mixer).metadata.get("kind", "sequence"),
                       "causality": causality.to_dict(), "contract": contract.to_dict()})
        if not causality.causal:
            failures.append(f"{label} is {causality.message}")
        if not contract.ok:
            failures.append(f"{label} breaks the mixer contract: {contract.message}")
    contract_ok = all(l["contract"]["ok"] for l in layers)
    if contract_ok:
        whole = _whole_model_causality(spec, model, vocab_size, seq_len)
        model_report = whole.to_dict()
        if not whole.causal and not failures:
            failures.append(f"the model ({spec.name}) is {whole.message}")
    else:   # the per-layer contract comes first: a layer that breaks it breaks the model
        model_report = {"causal": None, "message": "not checked: a layer breaks the mixer "
                        "contract"}
    report = {"causal": all(l["causality"]["causal"] for l in layers)
              and model_report["causal"] is not False,
              "contract_ok": contract_ok,
              "layers": layers, "model": model_report, "failures": failures}
    if failures and raise_on_failure:
        raise CheckFailed(failures[0])
    return report


def guard_lengths(spec: Any, lengths, vocab_size: int = 16,
                  raise_on_failure: bool = True) -> dict:
    """:func:`guard_architecture` at each sequence length of ``lengths`` (a mixer may be causal
    at one length and leak at another, e.g. on a kernel's long-sequence path), shortest first:
    the first length's report, or the first that fails (``failures`` name their length)."""
    first = None
    for length in sorted(set(lengths)):
        report = guard_architecture(spec, length, vocab_size, raise_on_failure=False)
        report["failures"] = [f"{f} (at sequence length {length})" for f in report["failures"]]
        if first is None:
            first = report
        if report["failures"]:
            if raise_on_failure:
                raise CheckFailed(report["failures"][0])
            return report
    return first


def _whole_model_causality(spec, model, vocab_size: int, seq_len: int):
    """The causality check of the whole language model, in float64 when it runs there; a
    model that cannot run at all is refused in one line."""
    try:
        return check_model_causality(build_language_model(spec, vocab_size, seq_len).double(),
                                     vocab_size, seq_len)
    except (Exception, SystemExit):  # noqa: BLE001 - a layer that cannot run in float64
        pass
    try:
        return check_model_causality(model, vocab_size, seq_len)
    except (Exception, SystemExit) as exc:  # noqa: BLE001 - refused in one line
        raise CheckFailed(f"the model ({spec.name}) fails to run on (2, {seq_len}) tokens: "
                          f"{one_line(exc)}") from None
