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
