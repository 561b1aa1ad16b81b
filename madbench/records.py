"""The run record: what the store keeps of one trained run (the record schema, in one place)."""
from __future__ import annotations

import datetime as dt
from typing import Any

from .code_identity import run_version

#: The shape of a stored eval record (``run_record``'s): each field it has, with its type. A
#: stored row without one of them, or with a value of another type there (a null, a list for a
#: mapping), is not a record: the store counts it as unreadable (``madbench.store``).
RECORD_FIELDS: dict[str, type] = {
    "run_key": str, "arch_name": str, "arch_hash": str, "task": str, "task_version": int,
    "setting": str, "setting_hash": str, "protocol_name": str, "protocol_hash": str,
    "standard_protocol": bool, "selection": str, "lr": float, "weight_decay": float,
    "seed": int, "accuracy": float, "macro_accuracy": float, "loss": float,
    "train_loss": float, "diverged": bool, "epochs": int, "steps": int, "seconds": float,
    "scored_positions": int, "device": str, "precision": str, "engine": str,
    "madbench_version": str, "created_at": str, "flags": str, "architecture": dict,
    "protocol": dict, "setting_params": dict, "checks": dict, "provenance": dict,
}
#: the fields stored as JSON text (``madbench.store.encode_row``); a mapping in every record
JSON_FIELDS = frozenset(k for k, t in RECORD_FIELDS.items() if t is dict)


def run_record(spec, job, protocol, result, dev, precision: str, checks: dict | None,
               prov: dict, engine: str) -> dict[str, Any]:
    """The record of ``job`` (trained on ``job.effective``, the protocol's caps applied) with
    its ``result``, where and how it was trained, and the architecture checks it passed."""
    eff = job.effective
    return {
        "run_key": job.key, "arch_name": spec.name, "arch_hash": spec.hash,
        "task": job.task.name, "task_version": job.task.version,
        "setting": job.setting.name, "setting_hash": eff.hash,
        "protocol_name": protocol.name, "protocol_hash": protocol.hash,
        "standard_protocol": protocol.standard, "selection": protocol.selection,
        "lr": job.lr, "weight_decay": job.weight_decay, "seed": job.seed,
        **result.as_dict(), "device": str(dev), "precision": precision, "engine": engine,
        "madbench_version": run_version(),
        "created_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "flags": ",".join((checks or {}).get("flags", [])),
        "architecture": spec.to_dict(), "protocol": protocol.to_dict(),
        "setting_params": dict(eff.params), "checks": checks or {}, "provenance": prov,
    }


def shape_problem(row: dict[str, Any]) -> str | None:
    """Why the stored ``row`` (JSON fields decoded) is not a record, or None. An eval record
    has every field of ``RECORD_FIELDS``, typed; a record of another kind (a ``kind`` field:
    ``madbench scaling run``'s) is only checked for mappings in the ``JSON_FIELDS`` it has."""
    if row.get("kind") is None:
        fields = RECORD_FIELDS
    else:
        fields = {k: dict for k in JSON_FIELDS if k in row}
    for name, kind in fields.items():
        if name not in row:
            return f"not a record (no {name!r} field)"
        if not _typed(row[name], kind):
            return (f"not a record ({name!r} is {_describe(row[name])}, not "
                    f"{'a mapping' if kind is dict else kind.__name__})")
    return None


def _typed(value: Any, kind: type) -> bool:
    if isinstance(value, bool):                      # bool is an int, not a number here
        return kind is bool
    if kind is float:
        return isinstance(value, (int, float))
    return isinstance(value, kind)


def _describe(value: Any) -> str:
    return "null" if value is None else f"{type(value).__name__} {str(value)[:40]!r}"


def group_records(records: list[dict[str, Any]]) -> dict[tuple[str, str], list[dict]]:
    """Records grouped by (architecture hash, protocol hash): one result each."""
    groups: dict[tuple[str, str], list[dict]] = {}
    for r in records:
        groups.setdefault((r["arch_hash"], r["protocol_hash"]), []).append(r)
    return groups


def series_labels(groups) -> list[str]:
    """How each record group (one architecture under one protocol) is named wherever several
    are shown together (compare, plot, the HTML page): ``hyena [smoke]``, ``(non-standard)``
    after an overridden protocol's name, then the protocol's and then the architecture's hash
    prefix added where groups sharing a name differ in it (other overrides; other mixer kwargs,
    edited code)."""
    labels = [f"{g[0]['arch_name']} [{g[0]['protocol_name']}"
              f"{'' if g[0].get('standard_protocol', True) else ' (non-standard)'}]"
              for g in groups]
    for key in ("protocol_hash", "arch_hash"):
        values: dict[str, set[str]] = {}
        for label, g in zip(labels, groups):
            values.setdefault(label, set()).add(g[0][key])
        labels = [f"{label} {g[0][key][:6]}" if len(values[label]) > 1 else label
                  for label, g in zip(labels, groups)]
    return labels


#: the command that writes each kind of record (``record_kind``)
RECORD_COMMANDS = {"eval": "madbench eval", "scaling": "madbench scaling run"}


def record_kind(row: dict[str, Any]) -> str:
    """Which command's record a stored row is: its ``kind`` field (``"scaling"``: ``madbench
    scaling run``'s), ``"eval"`` where it has none (``run_record``'s). A run directory holds
    one kind: each command refuses a directory of the other's (``cli.preflight.run_dir_of``)."""
    return str(row.get("kind") or "eval")
