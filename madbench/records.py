"""The run record: what the store keeps of one trained run (the record schema, in one place)."""
from __future__ import annotations

import datetime as dt
from typing import Any

from .code_identity import run_version


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
