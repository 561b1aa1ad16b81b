"""The evaluation sweep: every (task, setting, seed, lr, weight decay) run of one architecture,
trained with the plain trainer, stored as it finishes, skipped when already stored."""
from __future__ import annotations

import datetime as dt
import sys
from dataclasses import dataclass, replace
from types import MappingProxyType
from typing import Any, Callable, Sequence

import torch

from . import __version__
from .architecture import ArchitectureSpec
from .errors import CheckFailed
from .model import build_model
from .protocol import Protocol
from .provenance import provenance
from .scoring import best_of_sweep, bootstrap_interval, mad_score, task_scores
from .store import ResultsStore, run_key
from .tasks import Setting, Task, generate_splits
from .batched import supports_batching, train_batched
from .cuda_graphs import CaptureError, capture_enabled
from .graphed import train_graphed
from .trainer import resolve_device, resolve_precision, train


@dataclass(frozen=True)
class Job:
    task: Task
    setting: Setting
    seed: int
    lr: float
    weight_decay: float
    key: str


def job_to_dict(job: Job) -> dict[str, Any]:
    """A job as plain data (names and numbers), to ship to a worker process or a Ray task."""
    return {"task": job.task.name, "setting": job.setting.name, "seed": job.seed,
            "lr": job.lr, "weight_decay": job.weight_decay, "key": job.key}


def job_from_dict(data: dict[str, Any]) -> Job:
    """A job shipped as plain data, its task and setting re-resolved from this process's
    plugins (task objects come from plugins and are never pickled)."""
    from .tasks import get_task
    task = get_task(data["task"])
    return Job(task, task.setting(data["setting"]), int(data["seed"]), float(data["lr"]),
               float(data["weight_decay"]), data["key"])


def effective_setting(setting: Setting, protocol: Protocol) -> Setting:
    """The setting with the protocol's caps on train and test sizes applied."""
    params = dict(setting.params)
    if protocol.max_train is not None:
        params["num_train_examples"] = min(params["num_train_examples"], protocol.max_train)
    if protocol.max_test is not None:
        params["num_test_examples"] = min(params["num_test_examples"], protocol.max_test)
    if params == dict(setting.params):
        return setting
    return replace(setting, params=MappingProxyType(params))


def select_settings(task: Task, which: str) -> list[Setting]:
    settings = task.settings()
    return settings[:1] if which == "baseline" else settings


def plan(spec: ArchitectureSpec, tasks: Sequence[Task], protocol: Protocol,
         seeds: Sequence[int], settings: str | None = None) -> list[Job]:
    """Every run of the sweep, in a stable order (task, setting, seed, lr, wd)."""
    jobs = []
    for task in tasks:
        for setting in select_settings(task, settings or protocol.settings):
            eff = effective_setting(setting, protocol)
            for seed in seeds:
                for lr, wd in protocol.configs():
                    key = run_key(spec.hash, eff.hash, protocol.hash, lr, wd, seed, __version__)
                    jobs.append(Job(task, setting, seed, lr, wd, key))
    return jobs


def architecture_checks(spec: ArchitectureSpec, allow_state_mismatch: bool = False,
                        state_target: int = 4096, param_tolerance: float = 0.2) -> dict:
    """Causality guard, iso-state check and parameter ratio, before any training.

    Raises CheckFailed when the architecture leaks future tokens, or misses the state target
    without ``allow_state_mismatch`` (then the result is flagged ``state-mismatch``)."""
    from .accounting import check_iso_state, describe_architecture, param_ratio
    from .checks import guard_architecture

    guard = guard_architecture(spec)
    desc = describe_architecture(spec)
    ok, message = check_iso_state(desc, target=state_target)
    flags = []
    if desc["fixed_state"] is None and desc["dynamic_state"] is None:
        ok, message = True, measured_state_note(spec, state_target)
        flags.append("state-measured")
    if not ok:
        if not allow_state_mismatch:
            raise CheckFailed(f"{message} (use --allow-state-mismatch to evaluate anyway; the "
                              "result is then flagged)")
        flags.append("state-mismatch")
    ratio = param_ratio(desc)
    if abs(ratio - 1.0) > param_tolerance:
        flags.append("param-mismatch")
    return {"causal": guard["causal"], "iso_state": {"ok": ok, "message": message,
                                                     "target": state_target},
            "param_ratio": ratio, "param_tolerance": param_tolerance, "flags": flags,
            "accounting": {k: desc.get(k) for k in ("params", "non_embedding_params",
                                                    "active_params", "fixed_state",
                                                    "dynamic_state", "cache")}}


def measured_state_note(spec: ArchitectureSpec, state_target: int) -> str:
    """For layers that declare no ``state_size``: what the state audit measures instead (a
    lower bound). The model is evaluated, flagged ``state-measured``, not refused."""
    from .checks import audit_architecture
    audit = audit_architecture(spec)
    parts = [f"layer {l['index']} ({l['mixer']}) {l['measured_state']:,}"
             + (" or more (saturated)" if l["saturated"] else "")
             for l in audit["layers"] if l["declared_state"] is None]
    return ("state not declared (no state_size); measured by the audit: " + ", ".join(parts)
            + f"; iso-state (target {state_target:,}) is not verified")


ProgressFn = Callable[[str, dict[str, Any]], None]


def pending_groups(jobs: Sequence[Job], protocol: Protocol, store: ResultsStore
                   ) -> list[list[Job]]:
    """The jobs not yet stored, grouped by (setting, seed): a group shares its data and is
    the unit of work an executor hands out."""
    groups: dict[tuple[str, int], list[Job]] = {}
    for job in jobs:
        if not store.has(job.key):
            key = (effective_setting(job.setting, protocol).hash, job.seed)
            groups.setdefault(key, []).append(job)
    return list(groups.values())


def choose_engine(engine: str, protocol: Protocol, dev: torch.device, group_size: int) -> str:
    """The engine that trains a group: ``plain`` (one run at a time), ``batched`` (the
    configurations as one vmapped model) or ``graphed`` (the configurations side by side, each
    step a CUDA graph). ``auto``: graphed on CUDA; on CPU batched for groups of several
    configurations (it needs no per-epoch evaluation), else plain."""
    if engine == "auto":
        if dev.type == "cuda":
            return "graphed"
        engine = "batched" if group_size > 1 else "plain"
    if engine == "batched" and protocol.eval_every_epoch:
        return "plain"
    return engine


def run_group(spec: ArchitectureSpec, group: Sequence[Job], protocol: Protocol,
              store: ResultsStore, dev: torch.device, precision: str, checks: dict | None,
              engine: str = "auto", progress: ProgressFn | None = None,
              verdicts: dict | None = None) -> None:
    """Train one group of jobs (one setting and seed) and store each record as it finishes.

    ``engine``: ``plain``, ``batched``, ``graphed`` or ``auto`` (see ``choose_engine``).
    Models that cannot be vmapped train plain instead of batched, and models whose step cannot
    be captured (host synchronisation, e.g. data-dependent routing) train graphed without
    graphs; ``verdicts`` caches both per (engine, architecture)."""
    verdicts = {} if verdicts is None else verdicts
    prov = provenance(dev)
    first = group[0]
    eff = effective_setting(first.setting, protocol)
    train_ds, test_ds = generate_splits(first.task, eff, first.seed)
    data = tuple(torch.from_numpy(a).to(dev) for a in
                 (train_ds.inputs, train_ds.targets, test_ds.inputs, test_ds.targets))

    def make_model():
        return build_model(spec, eff.vocab_size, data[0].shape[1], first.task.model)

    def on_epoch(epoch, epochs, loss):
        if progress:
            progress("epoch", {"epoch": epoch, "epochs": epochs, "loss": loss})

    def finished(job, result, used):
        _store(store, spec, job, eff, protocol, result, dev, precision, checks, prov, used)
        if progress:
            progress("done", {"accuracy": result.accuracy})

    chosen = choose_engine(engine, protocol, dev, len(group))
    if chosen == "batched" and ("batched", spec.hash) not in verdicts:
        reason = supports_batching(make_model, data[0])
        verdicts[("batched", spec.hash)] = reason is None
        if reason:
            warn(f"{spec.name} cannot be trained as a batched sweep ({reason}); training one "
                 "configuration at a time")
    if chosen == "batched" and not verdicts[("batched", spec.hash)]:
        chosen = "plain"
    if chosen in ("batched", "graphed"):
        if progress:
            progress("run", {"task": first.task.name, "setting": first.setting.name,
                             "lr": "sweep", "wd": f"{len(group)} configs", "seed": first.seed})
        configs = [(j.lr, j.weight_decay) for j in group]
        args = (make_model, data[:2], data[2:], eff.vocab_size, configs, protocol, first.seed,
                precision, on_epoch)
        used = chosen
        if chosen == "batched":
            results = train_batched(*args)
        else:
            capture = capture_enabled(dev, verdicts.get(("graphed", spec.hash)))
            try:
                results = train_graphed(*args, capture=capture)
            except CaptureError as exc:
                warn(f"{spec.name}: its training step cannot be captured in a CUDA graph "
                     f"({str(exc).splitlines()[0][:120]}); training it without graphs")
                verdicts[("graphed", spec.hash)] = capture = False
                results = train_graphed(*args, capture=False)
            if not capture:
                used = "graphed-eager"
        for job, result in zip(group, results):
            finished(job, result, used)
        return
    for job in group:
        if progress:
            progress("run", {"task": job.task.name, "setting": job.setting.name,
                             "lr": job.lr, "wd": job.weight_decay, "seed": job.seed})
        torch.manual_seed(job.seed)
        result = train(make_model().to(dev), data[:2], data[2:], eff.vocab_size, job.lr,
                       job.weight_decay, protocol, job.seed, precision, on_epoch)
        finished(job, result, "plain")


def run_sweep(spec: ArchitectureSpec, jobs: Sequence[Job], protocol: Protocol,
              store: ResultsStore, device: str = "auto", precision: str = "auto",
              checks: dict | None = None, progress: ProgressFn | None = None,
              engine: str = "auto") -> int:
    """Train every job not yet in the store, in this process; returns how many were trained."""
    dev = resolve_device(device)
    precision = resolve_precision(dev, precision)
    groups = pending_groups(jobs, protocol, store)
    todo = sum(len(g) for g in groups)
    if progress:
        progress("start", {"total": len(jobs), "done": len(jobs) - todo})
    verdicts: dict = {}
    for group in groups:
        run_group(spec, group, protocol, store, dev, precision, checks, engine, progress,
                  verdicts)
    return todo


def warn(message: str) -> None:
    print(f"Warning: {message}", file=sys.stderr)


def _store(store, spec, job, eff, protocol, result, dev, precision, checks, prov, engine):
    store.append({
        "run_key": job.key, "arch_name": spec.name, "arch_hash": spec.hash,
        "task": job.task.name, "task_version": job.task.version,
        "setting": job.setting.name, "setting_hash": eff.hash,
        "protocol_name": protocol.name, "protocol_hash": protocol.hash,
        "standard_protocol": protocol.standard, "selection": protocol.selection,
        "lr": job.lr, "weight_decay": job.weight_decay, "seed": job.seed,
        **result.as_dict(), "device": str(dev), "precision": precision, "engine": engine,
        "madbench_version": __version__,
        "created_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "flags": ",".join((checks or {}).get("flags", [])),
        "architecture": spec.to_dict(), "protocol": protocol.to_dict(),
        "setting_params": dict(eff.params), "checks": checks or {}, "provenance": prov,
    })


def summarize(records: Sequence[dict[str, Any]], metric: str | None = None) -> dict[str, Any]:
    """The result document of one architecture under one protocol."""
    if not records:
        return {"mad_score": None, "tasks": {}, "settings": []}
    metric = metric or records[0].get("selection", "accuracy")
    best = best_of_sweep(records, metric)
    scores = task_scores(best, metric)
    settings = []
    for (task, setting, seed), r in sorted(best.items()):
        n = sum(1 for x in records if (x["task"], x["setting"], int(x["seed"])) ==
                (task, setting, seed))
        settings.append({"task": task, "setting": setting, "seed": seed, "runs": n,
                         "best": {k: r[k] for k in ("lr", "weight_decay", "accuracy",
                                                     "macro_accuracy", "loss", "diverged",
                                                     "run_key")}})
    first = records[0]
    flags = sorted({f for r in records for f in (r.get("flags") or "").split(",") if f})
    return {
        "madbench_version": __version__,
        "mad_score": mad_score(scores),
        "confidence_interval": bootstrap_interval(best, metric),
        "metric": metric,
        "tasks": scores,
        "settings": settings,
        "architecture": {"name": first["arch_name"], "hash": first["arch_hash"],
                         "spec": first["architecture"],
                         "checks": first.get("checks", {})},
        "protocol": {**first["protocol"], "hash": first["protocol_hash"]},
        "flags": flags,
        "runs": len(records),
        "provenance": first["provenance"],
    }


def group_records(records: Sequence[dict[str, Any]]) -> dict[tuple[str, str], list[dict]]:
    """Records grouped by (architecture hash, protocol hash)."""
    groups: dict[tuple[str, str], list[dict]] = {}
    for r in records:
        groups.setdefault((r["arch_hash"], r["protocol_hash"]), []).append(r)
    return groups
