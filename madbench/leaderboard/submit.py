"""Build a leaderboard submission from the run records of one architecture under one protocol:
every sweep run, the best run per (task, setting, seed), the scores, the architecture's
accounting and the results of the causality guard and state audit (run here, on this code)."""
from __future__ import annotations

import datetime as dt
import json
import math
import shlex
from typing import Any, Sequence

from ..accounting import PARAM_TOLERANCE, STATE_TARGET
from ..checks import AUDIT_MAX_SIZE, audit_architecture, guard_architecture
from ..code_identity import run_version
from ..architecture import ArchitectureSpec, arch_arguments, mixer_entry, mixer_source_id
from ..errors import MadbenchError, UsageError
from ..plugins import get_registry
from ..records import group_records
from ..scoring import best_of_sweep, bootstrap_interval, mad_score, task_scores
from ..store import load_records
from ..protocol import Protocol
from ..sweep import select_settings
from ..tasks import get_task
from .boards import board_for, current_suite_hash
from .schema import SCHEMA_VERSION

#: the per-run fields a submission keeps (the rest of a record is environment or repeated)
RUN_FIELDS = ("task", "setting", "setting_hash", "lr", "weight_decay", "seed", "accuracy",
              "macro_accuracy", "loss", "diverged", "run_key", "train_loss", "epochs", "steps",
              "scored_positions", "seconds", "device", "precision", "engine", "created_at")
#: the accounting figures a submission claims (recomputed by ``validate``)
ACCOUNTING_FIELDS = ("params", "non_embedding_params", "active_params", "fixed_state",
                     "dynamic_state", "cache")
AUDIT_LAYER_FIELDS = ("index", "mixer", "dim", "declared_total", "measured_state", "ok",
                      "informative", "message")
#: where ``describe_architecture`` counts (as ``madbench eval``'s checks do)
from ..verdict import (SEQ_LEN as ACCOUNTING_SEQ_LEN,  # noqa: E402
                       VOCAB_SIZE as ACCOUNTING_VOCAB_SIZE, architecture_verdict)


def source_ids(spec: ArchitectureSpec) -> list[str]:
    """The source identifiers that enter ``spec.hash`` (imports the mixers)."""
    return sorted({mixer_source_id(l.mixer) for l in spec.layers})


def mixer_distributions(spec: ArchitectureSpec) -> list[dict]:
    """For each distinct mixer: the distribution (and version) that provides it."""
    from importlib.metadata import packages_distributions, version

    plugins = {p.name: p for p in get_registry().plugins}
    out = []
    for mixer in sorted({l.mixer for l in spec.layers}):
        entry = mixer_entry(mixer)
        info = plugins.get(entry.plugin)
        dist = info.distribution if info else None
        ver = info.version if info else None
        if info is None:
            top = entry.obj.__module__.split(".")[0]
            dists = packages_distributions().get(top) or []
            dist = dists[0] if dists else None
            try:
                ver = version(dist) if dist else None
            except Exception:  # noqa: BLE001 - metadata missing: unknown version
                ver = None
        out.append({"name": mixer, "distribution": dist, "version": ver})
    return out


def architecture_claims(spec: ArchitectureSpec, audit_dim: int | None = None,
                        audit_max_size: int | None = None) -> dict[str, Any]:
    """Accounting, flags, causality guard and state audit of ``spec``, as a submission
    records them (and as ``validate`` recomputes them)."""
    verdict = architecture_verdict(spec, ACCOUNTING_SEQ_LEN, ACCOUNTING_VOCAB_SIZE)
    desc = verdict["description"]
    iso_ok, iso_message = verdict["iso_state"]["ok"], verdict["iso_state"]["message"]
    ratio = verdict["param_ratio"]["value"]
    flags = verdict["flags"]
    guard = guard_architecture(spec, raise_on_failure=False)
    max_size = audit_max_size or AUDIT_MAX_SIZE
    audit = audit_architecture(spec, max_size=max_size, audit_dim=audit_dim)
    return {
        "accounting": {"seq_len": ACCOUNTING_SEQ_LEN, "vocab_size": ACCOUNTING_VOCAB_SIZE,
                       **{k: desc[k] for k in ACCOUNTING_FIELDS}, "param_ratio": ratio,
                       "iso_state_ok": iso_ok, "iso_state_message": iso_message,
                       "state_target": STATE_TARGET, "param_tolerance": PARAM_TOLERANCE},
        "flags": flags,
        "checks": {
            "causality": {"causal": bool(guard["causal"]),
                          "contract_ok": bool(guard["contract_ok"]),
                          "failures": list(guard["failures"])},
            "state_audit": {"state_ok": bool(audit["state_ok"]),
                            "declared_state": audit["declared_state"],
                            "measured_state": audit["measured_state"],
                            "audit_dim": audit_dim, "max_size": max_size,
                            "layers": [{k: layer[k] for k in AUDIT_LAYER_FIELDS}
                                       for layer in audit["layers"]]},
        },
    }


def _finite_or_none(value: Any) -> float | None:
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def run_row(record: dict) -> dict:
    """One run as a submission stores it (non-finite losses become null)."""
    row = {k: record.get(k) for k in RUN_FIELDS}
    for k in ("lr", "weight_decay", "accuracy", "macro_accuracy", "seconds"):
        row[k] = float(row[k])
    for k in ("seed", "epochs", "steps", "scored_positions"):
        row[k] = int(row[k])
    row["diverged"] = bool(row["diverged"])
    row["loss"] = _finite_or_none(row["loss"])
    row["train_loss"] = _finite_or_none(row["train_loss"])
    if row["created_at"] is None:
        row.pop("created_at")
    return row


def select_group(records: Sequence[dict], arch_filter: str | None = None,
                 protocol_filter: str | None = None) -> list[dict]:
    """The records of the one (architecture, protocol) pair the filters leave."""
    groups = group_records(records)
    chosen = {}
    for (arch_hash, proto_hash), group in groups.items():
        first = group[0]
        if arch_filter and arch_filter != first["arch_name"] and not (
                len(arch_filter) >= 4 and arch_hash.startswith(arch_filter)):
            continue
        if protocol_filter and protocol_filter not in (first["protocol_name"], proto_hash):
            continue
        chosen[(arch_hash, proto_hash)] = group

    def describe(items):
        def made(g):   # which code made them, and when: tells a stale group from today's
            versions = sorted({r.get("madbench_version") or "?" for r in g})
            newest = max((str(r.get("created_at") or "")[:10] for r in g), default="")
            return f"run version {', '.join(versions)}" + (f", last {newest}" if newest else "")
        return "; ".join(f"{g[0]['arch_name']} [{a}] under {g[0]['protocol_name']} [{p}]: "
                         f"{len(g)} runs ({made(g)})" for (a, p), g in items)

    if not chosen:
        raise UsageError("no run records match the filters (the run directory holds: "
                         f"{describe(groups.items())})")
    if len(chosen) > 1:
        raise UsageError("the run directory holds several architectures or protocols; pick "
                         "one with --arch-filter (name or hash) and --protocol-filter: "
                         f"{describe(chosen.items())}")
    return next(iter(chosen.values()))


def settings_argument(records: Sequence[dict], protocol: Protocol) -> str | None:
    """The ``--settings`` value that selects exactly the settings of ``records`` (None: the
    protocol's own selection does)."""
    ran = {(r["task"], r["setting"]) for r in records}
    tasks = sorted({t for t, _ in ran})
    default = {(t, s.name) for t in tasks for s in select_settings(get_task(t), protocol.settings)}
    if ran == default:
        return None
    names = sorted({s for _, s in ran})
    bare = {(t, s.name) for t in tasks for s in select_settings(get_task(t), names)}
    return ",".join(names) if bare == ran else ",".join(f"{t}:{s}" for t, s in sorted(ran))


def eval_command_line(spec: ArchitectureSpec, protocol, tasks: Sequence[str],
                      seeds: Sequence[int], run_dir: str, records: Sequence[dict] = ()) -> str:
    """A ``madbench eval`` command that reproduces the runs: the same architecture options
    (``--channel``, ``--striped``, ``--mixer-kwargs``), tasks, settings, protocol overrides,
    seeds and, from the records' checks, the state and parameter options."""
    arch = arch_arguments(spec)
    if arch is None:
        raise MadbenchError(f"no madbench eval options rebuild the architecture {spec.name!r}; "
                            "give the command that produced the runs with --command")
    parts = ["madbench", "eval", *arch, "--tasks", ",".join(tasks), "--preset", protocol.name]
    settings = settings_argument(records, protocol) if records else None
    if settings:
        parts += ["--settings", settings]
    for key, value in protocol.overrides:
        text = ",".join(str(v) for v in value) if isinstance(value, (list, tuple)) else value
        parts += ["--set", f"{key}={text}"]
    parts += ["--seeds", ",".join(str(s) for s in seeds), "--run-dir", str(run_dir)]
    checks = records[0].get("checks") or {} if records else {}
    if "state-mismatch" in (checks.get("flags") or []):
        parts.append("--allow-state-mismatch")
    target = (checks.get("iso_state") or {}).get("target", STATE_TARGET)
    if target != STATE_TARGET:
        parts += ["--state-target", str(target)]
    tolerance = checks.get("param_tolerance", PARAM_TOLERANCE)
    if tolerance != PARAM_TOLERANCE:
        parts += ["--param-tolerance", str(tolerance)]
    return shlex.join(str(p) for p in parts)


def build_submission(run_dir: str, name: str, arch_filter: str | None = None,
                     protocol_filter: str | None = None, command: str | None = None,
                     submit_command: str | None = None, audit_dim: int | None = None,
                     audit_max_size: int | None = None,
                     tasks: Sequence[str] | None = None) -> dict[str, Any]:
    """The submission document of the runs in ``run_dir`` (see the package schema), of
    ``tasks`` only when given (a partial entry from a run directory that holds more).

    Refuses (MadbenchError) runs made by another madbench version or by architecture code
    that differs from the code installed here (the architecture hash would not match)."""
    records = load_records([run_dir])          # its eval records (records.of_kind)
    if tasks:
        names = {get_task(t).name for t in tasks}
        records = [r for r in records if r["task"] in names]
    if not records:
        raise UsageError(f"{run_dir}: no run records"
                         + (f" of {', '.join(sorted(names))}" if tasks else ""))
    group = select_group(records, arch_filter, protocol_filter)
    first = group[0]
    versions = sorted({r["madbench_version"] for r in group})
    if versions != [run_version()]:
        raise MadbenchError(f"the runs were made by madbench {', '.join(versions)}; this is "
                            f"{run_version()} (version + training code): re-run them with it")
    protocol = Protocol.from_dict(first["protocol"])
    if protocol.hash != first["protocol_hash"]:
        raise MadbenchError("the stored protocol does not match its hash; the records are "
                            "corrupt")
    spec = ArchitectureSpec.from_dict(first["architecture"])
    if spec.hash != first["arch_hash"]:
        raise MadbenchError(f"the architecture code installed here differs from the code that "
                            f"produced the runs (hash {spec.hash}, runs {first['arch_hash']}); "
                            "re-run madbench eval with this code")
    metric = protocol.selection
    best = best_of_sweep(group, metric)
    scores = task_scores(best, metric)
    runs = sorted((run_row(r) for r in group),
                  key=lambda r: (r["task"], r["setting"], r["seed"], r["lr"], r["weight_decay"]))
    tasks = sorted({r["task"] for r in runs})
    seeds = sorted({r["seed"] for r in runs})
    interval = bootstrap_interval(best, metric)
    claims = architecture_claims(spec, audit_dim, audit_max_size)
    doc = {
        "schema_version": SCHEMA_VERSION,
        "name": name,
        "board": board_for(protocol),
        "madbench_version": run_version(),
        "created_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "architecture": {"name": spec.name, "hash": spec.hash, "spec": spec.to_dict(),
                         "sources": source_ids(spec),
                         "distributions": mixer_distributions(spec)},
        "protocol": {**protocol.to_dict(), "hash": protocol.hash},
        "suite_hash": current_suite_hash(),
        "metric": metric,
        "seeds": seeds,
        "scores": {"overall": mad_score(scores), **scores},
        "confidence_interval": list(interval) if interval else None,
        "runs": runs,
        "best": [{"task": t, "setting": s, "seed": seed, "run_key": r["run_key"]}
                 for (t, s, seed), r in sorted(best.items())],
        **claims,
        "environment": first["provenance"],
        "command": command or eval_command_line(spec, protocol, tasks, seeds, run_dir, group),
        "command_reconstructed": command is None,
        "submit_command": submit_command or shlex.join(
            ["madbench", "leaderboard", "submit", str(run_dir), "--name", name]),
    }
    return json.loads(json.dumps(doc, allow_nan=False))    # plain JSON types (tuples: lists)
