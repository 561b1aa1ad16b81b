"""The run record: what the store keeps of one trained run (the record schema, in one place)."""
from __future__ import annotations

import datetime as dt
import numbers
from typing import Any

import numpy as np

from .code_identity import run_version
from .errors import UsageError, printable, warn

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
#: Eval record fields newer than some stored records, typed where a record has them: ``part``
#: (``run_record``'s; a record without one was trained in its setting's whole group).
OPTIONAL_FIELDS: dict[str, type] = {"part": int}
#: the fields stored as JSON text (``madbench.store.encode_row``); a mapping in every record
JSON_FIELDS = frozenset(k for k, t in RECORD_FIELDS.items() if t is dict)
#: The shape of a stored scaling record (``madbench.scaling.runs.record_for``'s), checked as
#: ``RECORD_FIELDS`` is: the fields every scaling record has had, with their types (the
#: others, e.g. ``bits_per_byte``, null for a token corpus, or the state columns, are read
#: where present).
SCALING_FIELDS: dict[str, type] = {
    "run_key": str, "kind": str, "arch": str, "arch_name": str, "arch_hash": str,
    "width": int, "depth": int, "budget": float, "flops": float, "tokens": int, "steps": int,
    "params": int, "loss": float, "train_loss": float, "diverged": bool, "seq_len": int,
    "batch_size": int, "lr": float, "seed": int, "corpus": str, "corpus_sha256": str,
    "vocab_size": int, "madbench_version": str, "created_at": str, "architecture": dict,
    "protocol": dict, "provenance": dict,
}


def run_record(spec, job, protocol, result, dev, precision: str, checks: dict | None,
               prov: dict, engine: str) -> dict[str, Any]:
    """The record of ``job`` (trained on ``job.effective``, the protocol's caps applied) with
    its ``result``, where and how it was trained (``part``: which of its setting's groups,
    ``--group-size``; records from before it have none: their setting's group was whole), and
    the architecture checks it passed."""
    eff = job.effective
    return {
        "run_key": job.key, "arch_name": spec.name, "arch_hash": spec.hash,
        "task": job.task.name, "task_version": job.task.version,
        "setting": job.setting.name, "setting_hash": eff.hash,
        "protocol_name": protocol.name, "protocol_hash": protocol.hash,
        "standard_protocol": protocol.standard, "selection": protocol.selection,
        "lr": job.lr, "weight_decay": job.weight_decay, "seed": job.seed, "part": job.part,
        **result.as_dict(), "device": str(dev), "precision": precision, "engine": engine,
        "madbench_version": run_version(),
        "created_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "flags": ",".join((checks or {}).get("flags", [])),
        "architecture": spec.to_dict(), "protocol": protocol.to_dict(),
        "setting_params": dict(eff.params), "checks": checks or {}, "provenance": prov,
    }


def shape_problem(row: dict[str, Any]) -> str | None:
    """Why the stored ``row`` (JSON fields decoded) is not a record, or None: the one rule for
    reading and writing (``madbench.store``). A record has every field of its kind
    (``record_kind``: ``RECORD_FIELDS``, ``SCALING_FIELDS``), typed; one of another kind only
    a ``run_key``. Each ``JSON_FIELDS`` field it has is a mapping; an eval record's
    ``OPTIONAL_FIELDS`` are typed where it has them."""
    kind = record_kind(row)
    fields = _KIND_FIELDS.get(kind, {"run_key": str})
    fields = {**fields, **{k: dict for k in JSON_FIELDS if k in row and k not in fields}}
    if kind == "eval":
        fields.update({k: t for k, t in OPTIONAL_FIELDS.items() if k in row})
    for name, type_ in fields.items():
        if name not in row:
            return f"not a record (no {name!r} field)"
        if not _typed(row[name], type_):
            return (f"not a record ({name!r} is {_describe(row[name])}, not "
                    f"{'a mapping' if type_ is dict else type_.__name__})")
    return None


def _typed(value: Any, kind: type) -> bool:
    """``value`` is of ``kind``: a bool only for bool (it is an int, not a number here); for
    int an integer, for float an integer or float (NumPy's too, which a record being written
    may hold: they are stored as Python's)."""
    if isinstance(value, (bool, np.bool_)):
        return kind is bool
    if kind in (int, float):
        return isinstance(value, numbers.Integral if kind is int else numbers.Real)
    return isinstance(value, kind)


def _describe(value: Any) -> str:
    return "null" if value is None else f"{type(value).__name__} {str(value)[:40]!r}"


def group_records(records: list[dict[str, Any]]) -> dict[tuple[str, str], list[dict]]:
    """Records grouped by (architecture hash, protocol hash): one result each."""
    groups: dict[tuple[str, str], list[dict]] = {}
    for r in records:
        groups.setdefault((r["arch_hash"], r["protocol_hash"]), []).append(r)
    return groups


def series_name(arch: str, protocol: str, standard: bool = True) -> str:
    """An architecture under a protocol, before ``series_labels`` tells apart groups that share
    it: ``hyena [smoke]``, ``hyena [smoke (non-standard)]``. The names are a record's text,
    shown escaped (``printable``): one line, whoever wrote the record."""
    return f"{printable(arch)} [{printable(protocol)}{'' if standard else ' (non-standard)'}]"


def series_labels(groups) -> list[str]:
    """How each record group (one architecture under one protocol) is named wherever several
    are shown together (compare, plot, the HTML page): ``hyena [smoke]``, ``(non-standard)``
    after an overridden protocol's name, then the protocol's and then the architecture's hash
    prefix added where groups sharing a name differ in it (other overrides; other mixer kwargs,
    edited code)."""
    labels = [series_name(g[0]['arch_name'], g[0]['protocol_name'],
                          g[0].get('standard_protocol', True)) for g in groups]
    for key in ("protocol_hash", "arch_hash"):
        values: dict[str, set[str]] = {}
        for label, g in zip(labels, groups):
            values.setdefault(label, set()).add(g[0][key])
        labels = [f"{label} {g[0][key][:6]}" if len(values[label]) > 1 else label
                  for label, g in zip(labels, groups)]
    return labels


#: the command that writes each kind of record (``record_kind``), and the one that reads them
RECORD_COMMANDS = {"eval": "madbench eval", "scaling": "madbench scaling run"}
READ_COMMANDS = {"eval": "madbench report", "scaling": "madbench scaling fit"}


def record_kind(row: dict[str, Any]) -> str:
    """Which command's record a stored row is: its ``kind`` field (``"scaling"``: ``madbench
    scaling run``'s), ``"eval"`` where it has none (``run_record``'s). A run directory holds
    one kind: each command refuses a directory of the other's (``cli.preflight.run_dir_of``,
    ``of_kind``)."""
    return str(row.get("kind") or "eval")


_KIND_FIELDS = {"eval": RECORD_FIELDS, "scaling": SCALING_FIELDS}


def wrong_kind(path: Any, found: str, wanted: str, option: str = "") -> str:
    """The one message for run directory ``path`` (named by ``option``, if any), whose records
    are of kind ``found``, given to a command that needs records of kind ``wanted``."""
    theirs = (f"'{RECORD_COMMANDS[found]}' records" if found in RECORD_COMMANDS
              else f"records of kind {found!r}")
    reader = f" ('{READ_COMMANDS[found]} {path}' reads them)" if found in READ_COMMANDS else ""
    where = f"{option} {path}" if option else f"{path}"
    return f"{where}: its records are {theirs}, not '{RECORD_COMMANDS[wanted]}' ones{reader}"


def of_kind(rows: list[dict[str, Any]], kind: str, path: Any) -> list[dict[str, Any]]:
    """The records of ``kind`` among ``rows``, those of run directory ``path``: the one rule of
    the commands that read one. A directory of records of another kind only is a UsageError
    (``wrong_kind``); in a mixed one (made before each command refused the other's directory)
    the others are skipped with a warning."""
    mine = [r for r in rows if record_kind(r) == kind]
    if rows and not mine:
        raise UsageError(wrong_kind(path, record_kind(rows[0]), kind))
    if len(mine) < len(rows):
        warn(f"{path}: {len(rows) - len(mine)} record(s) not of '{RECORD_COMMANDS[kind]}' "
             "skipped")
    return mine
