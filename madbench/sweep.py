"""The sweep of one architecture: plan every (task, setting, seed, lr, weight decay) run,
then train the runs not yet stored, one group (setting and seed) at a time, each record stored
as it finishes. A second process on the same run directory trains each run once (claims)."""
from __future__ import annotations

import time
from dataclasses import dataclass, replace
from types import MappingProxyType
from typing import Any, Callable, Sequence

import torch

from .architecture import ArchitectureSpec
from .claims import HELD, claim_all, contend
from .code_identity import run_version
from .errors import MadbenchError, UsageError, add_note, warn
from .model import build_model
from .protocol import Protocol
from .provenance import provenance
from .records import run_record
from .store import ResultsStore, run_key
from .suggest import did_you_mean
from .tasks import Setting, Task, generate_splits, get_task
from .time_limit import TimeLimit
from .batched import supports_batching, train_batched
from .cuda_graphs import CaptureError, capture_enabled, warn_uncapturable
from .graphed import CompileMismatch, train_graphed
from .loop import evaluates_every_epoch
from .trainer import resolve_device, resolve_precision, train


@dataclass(frozen=True)
class Job:
    """One run of a sweep: a task's setting, seed and (lr, weight decay), with the setting as
    trained (``effective``: the protocol's size caps applied) and its run key. ``part``: which
    of its setting's groups trains it (``plan``'s ``group_size``; 0 when one group holds them
    all); it is not part of the run key."""
    task: Task
    setting: Setting
    seed: int
    lr: float
    weight_decay: float
    key: str
    effective: Setting
    part: int = 0


def job_to_dict(job: Job) -> dict[str, Any]:
    """A job as plain data (names and numbers), to ship to a worker process or a Ray task."""
    return {"task": job.task.name, "setting": job.setting.name, "seed": job.seed,
            "lr": job.lr, "weight_decay": job.weight_decay, "key": job.key, "part": job.part}


def job_from_dict(data: dict[str, Any], protocol: Protocol) -> Job:
    """A job shipped as plain data, its task and setting re-resolved from this process's
    plugins (task objects come from plugins and are never pickled)."""
    task = get_task(data["task"])
    setting = task.setting(data["setting"])
    return Job(task, setting, int(data["seed"]), float(data["lr"]),
               float(data["weight_decay"]), data["key"], effective_setting(setting, protocol),
               int(data.get("part", 0)))


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


def select_settings(task: Task, which: str | Sequence[str]) -> list[Setting]:
    """``all``, ``baseline``, or the named settings of ``task`` (a name ``TASK:SETTING``
    applies to that task only; a bare name to every task that has it)."""
    settings = task.settings()
    if which == "all":
        return settings
    if which == "baseline":
        return settings[:1]
    wanted = {name.partition(":")[2] if ":" in name else name for name in which
              if ":" not in name or name.partition(":")[0] == task.name}
    return [s for s in settings if s.name in wanted]


def parse_settings(text: str) -> str | tuple[str, ...] | None:
    """``--settings``: ``preset`` (None: the protocol's), ``all``, ``baseline``, or a
    comma-separated list of setting names, each ``NAME`` or ``TASK:NAME``."""
    text = text.strip()
    if text in ("preset", "all", "baseline"):
        return None if text == "preset" else text
    names = tuple(dict.fromkeys(n.strip() for n in text.split(",") if n.strip()))
    if not names:
        raise UsageError("--settings takes preset, all, baseline, or setting names such as "
                         "baseline,vocab_size=512 or memorization:vocab_size=512")
    return names


def _check_setting_names(tasks: Sequence[Task], names: Sequence[str]) -> None:
    """Every name must select a setting of some task: a misspelling is an error, not an
    empty sweep. A selected task that no name selects a setting of is named in a warning."""
    by_task = {t.name: [s.name for s in t.settings()] for t in tasks}
    for name in names:
        task_name, sep, setting = name.partition(":")
        if sep:
            if task_name not in by_task:
                raise UsageError(f"--settings {name!r}: task {task_name!r} is not among the "
                                 f"selected tasks ({did_you_mean(task_name, by_task)}"
                                 f"selected: {', '.join(by_task)})")
            candidates = by_task[task_name]
        else:
            setting, candidates = name, sorted({n for ns in by_task.values() for n in ns})
        if setting not in candidates:
            where = f"task {task_name!r}" if sep else "no selected task"
            verb = "has no" if sep else "has a"
            raise UsageError(f"--settings: {where} {verb} setting {setting!r} "
                             f"({did_you_mean(setting, candidates)}see 'madbench tasks list')")
    empty = [t.name for t in tasks if not select_settings(t, names)]
    if empty:        # a name applies only to the tasks that have it: say who got nothing
        kept = [t.name for t in tasks if t.name not in empty]
        warn(f"--settings {','.join(names)} selects no setting of {len(empty)} of the "
             f"{len(tasks)} selected tasks ({', '.join(empty)}): they get no runs, and the "
             f"score is over {', '.join(kept)} only ('madbench tasks list' shows each task's "
             "settings; --tasks narrows the selection)")


def plan(spec: ArchitectureSpec, tasks: Sequence[Task], protocol: Protocol,
         seeds: Sequence[int], settings: str | Sequence[str] | None = None,
         group_size: int | None = None) -> list[Job]:
    """Every run of the sweep, in a stable order (task, setting, seed, lr, wd). ``settings``:
    None (the protocol's), ``all``, ``baseline`` or setting names (see ``select_settings``).
    ``group_size``: at most this many of a setting's (lr, wd) configurations in one group,
    in grid order (None: all of them)."""
    if settings not in (None, "all", "baseline"):
        _check_setting_names(tasks, settings)
    jobs = []
    arch_hash, version = spec.hash, run_version()
    for task in tasks:
        for setting in select_settings(task, settings or protocol.settings):
            eff = effective_setting(setting, protocol)
            for seed in seeds:
                for i, (lr, wd) in enumerate(protocol.configs()):
                    key = run_key(arch_hash, eff.hash, protocol.hash, lr, wd, seed, version)
                    part = i // group_size if group_size else 0
                    jobs.append(Job(task, setting, seed, lr, wd, key, eff, part))
    return jobs


ProgressFn = Callable[[str, dict[str, Any]], None]


def group_key(job: Job) -> tuple[str, int, int]:
    """What the runs of one group share: the setting as trained, the seed and the part."""
    return job.effective.hash, job.seed, job.part


def group_jobs(jobs: Sequence[Job]) -> list[list[Job]]:
    """``jobs`` grouped by (setting, seed, part), in their order: a group shares its data and
    is what an executor hands out."""
    groups: dict[tuple[str, int, int], list[Job]] = {}
    for job in jobs:
        groups.setdefault(group_key(job), []).append(job)
    return list(groups.values())


def pending_groups(jobs: Sequence[Job], store: ResultsStore
                   ) -> list[list[Job]]:
    """The jobs not yet stored, grouped (``group_jobs``). The store is healed first
    (unreadable records moved aside, so that their runs count as not stored)."""
    missing = store.missing([job.key for job in jobs])
    return group_jobs([job for job in jobs if job.key in missing])


def choose_engine(engine: str, protocol: Protocol, dev: torch.device) -> str:
    """The engine that trains a group: ``plain`` (one run at a time), ``batched`` (the
    configurations as one vmapped model) or ``graphed`` (the configurations side by side, each
    step a CUDA graph). ``auto``: graphed on CUDA, plain on CPU (where batched measured
    1.0-2.2x slower than plain, docs/protocol.md)."""
    if engine == "auto":
        return "graphed" if dev.type == "cuda" else "plain"
    if engine == "batched" and evaluates_every_epoch(protocol):
        return "plain"
    return engine


def run_group(spec: ArchitectureSpec, group: Sequence[Job], protocol: Protocol,
              store: ResultsStore, dev: torch.device, precision: str, checks: dict | None,
              engine: str = "auto", progress: ProgressFn | None = None,
              verdicts: dict | None = None) -> None:
    """Train one group of jobs (one setting and seed) and store each record as it finishes.

    ``engine``: ``plain``, ``batched``, ``graphed``, ``compiled`` or ``auto`` (see
    ``choose_engine``). Models that cannot be vmapped train plain instead of batched, models
    whose compiled outputs differ from eager train graphed, and models whose step cannot be
    captured (host synchronisation, e.g. data-dependent routing) train graphed without graphs;
    ``verdicts`` caches each per (engine, architecture)."""
    verdicts = {} if verdicts is None else verdicts
    prov = provenance(dev)
    first = group[0]
    eff = first.effective            # every job of a group shares its setting and seed
    train_ds, test_ds = generate_splits(first.task, eff, first.seed)
    data = tuple(torch.from_numpy(a).to(dev) for a in
                 (train_ds.inputs, train_ds.targets, test_ds.inputs, test_ds.targets))

    def make_model():
        return build_model(spec, eff.vocab_size, data[0].shape[1], first.task.model)

    def on_epoch(epoch, epochs, loss):
        if progress:
            progress("epoch", {"epoch": epoch, "epochs": epochs, "loss": loss})

    def finished(job, result, used):
        store.append(run_record(spec, job, protocol, result, dev, precision, checks, prov,
                                used))
        if progress:
            progress("done", {"task": job.task.name, "setting": job.setting.name,
                              "lr": job.lr, "wd": job.weight_decay, "seed": job.seed,
                              "accuracy": result.accuracy, "diverged": result.diverged,
                              "seconds": result.seconds,
                              "together": 1 if chosen == "plain" else len(group)})

    chosen = choose_engine(engine, protocol, dev)
    if chosen == "batched" and ("batched", spec.hash) not in verdicts:
        reason = supports_batching(make_model, data[0])
        verdicts[("batched", spec.hash)] = reason is None
        if reason:
            warn(f"{spec.name} cannot be trained as a batched sweep ({reason}); training one "
                 "configuration at a time")
    if chosen == "batched" and not verdicts[("batched", spec.hash)]:
        chosen = "plain"
    if chosen == "compiled" and not verdicts.get(("compiled", spec.hash), True):
        chosen = "graphed"
    if chosen in ("batched", "graphed", "compiled"):
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
            compiled = chosen == "compiled"
            capture = capture_enabled(dev, verdicts.get(("graphed", spec.hash)))
            try:
                try:
                    results = train_graphed(*args, capture=capture, compile_models=compiled)
                except CompileMismatch as exc:
                    warn(f"{spec.name}: not compiled ({exc}); training it with the graphed "
                         "engine")
                    verdicts[("compiled", spec.hash)] = compiled = False
                    used = "graphed"
                    results = train_graphed(*args, capture=capture)
            except CaptureError as exc:
                warn_uncapturable(spec.name, exc)
                verdicts[("graphed", spec.hash)] = capture = False
                results = train_graphed(*args, capture=False, compile_models=compiled)
            if not capture:
                used = f"{used}-eager"
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
              engine: str = "auto", verdicts: dict | None = None,
              time_limit: TimeLimit | None = None) -> int:
    """Train every job not yet in the store, in this process; returns how many were trained.
    ``verdicts`` (which engines this architecture's steps fit, learnt while training) may be
    shared by several calls for one architecture, so that a refused capture is tried once.
    A group another process holds is left for the end, then waited for (``claims.contend``;
    under ``time_limit``, only while it would still fit). With ``time_limit``, a group that would
    not finish in time is left untrained."""
    dev = resolve_device(device)
    precision = resolve_precision(dev, precision)
    groups = pending_groups(jobs, store)
    todo = sum(len(g) for g in groups)
    if progress:
        progress("start", {"total": len(jobs), "done": len(jobs) - todo})
    verdicts = {} if verdicts is None else verdicts

    def train_one(group, wait):
        started = time.monotonic()
        n = train_claimed(spec, group, protocol, store, dev, precision, checks, engine,
                          progress, verdicts, wait, time_limit)
        if n and time_limit is not None:
            time_limit.trained(group, time.monotonic() - started,
                               training_seconds(store, group))
        return HELD if n is None else n

    return sum(contend(groups, train_one, time_limit))


def training_seconds(store: ResultsStore, group: Sequence[Job]) -> float | None:
    """Seconds the stored runs of ``group`` spent training, by their records
    (``wall_seconds``); None when no record of the group reads."""
    records = [r for r in (store.record(job.key) for job in group) if r is not None]
    return wall_seconds(records) if records else None


def wall_seconds(records: Sequence[dict]) -> float:
    """Seconds the runs of these eval records (one setting and seed) spent training: each
    run's own on the plain engine, summed; a group's once for the configurations it trained
    side by side (a record's ``seconds`` is its group's), per part of a split setting
    (``--group-size``; a record without ``part`` was trained in one whole group)."""
    plain = sum(r["seconds"] for r in records if r["engine"] == "plain")
    parts: dict[int, float] = {}
    for r in records:
        if r["engine"] != "plain":
            part = int(r.get("part", 0))
            parts[part] = max(parts.get(part, 0.0), r["seconds"])
    return plain + sum(parts.values())


def train_claimed(spec: ArchitectureSpec, group: Sequence[Job], protocol: Protocol,
                  store: ResultsStore, dev: torch.device, precision: str, checks: dict | None,
                  engine: str, progress: ProgressFn | None, verdicts: dict,
                  wait: bool = True, time_limit: TimeLimit | None = None) -> int | None:
    """Holding the claims of the group's runs (``madbench.claims``; a part of a split group
    claims only its own, so that the parts train in parallel), train its jobs that no process
    has stored yet; returns how many were trained, or None when another process holds one of
    the claims and ``wait`` is False. Two processes on one run directory thus train each run
    once. With ``time_limit``, a group that would not finish in time is not trained (0)."""
    with claim_all(store.root, [job.key for job in group], wait) as held:
        if not held:
            return None
        todo = [job for job in group if not store.has(job.key)]
        for _ in range(len(group) - len(todo) if progress else 0):   # stored by another
            progress("done", {"accuracy": None, "stored": True})
        if todo and time_limit is not None and not time_limit.fits(group):
            return 0
        if todo:
            try:
                run_group(spec, todo, protocol, store, dev, precision, checks, engine,
                          progress, verdicts)
            except Exception as exc:  # noqa: BLE001 - named with its run in the one-line error
                if not isinstance(exc, MadbenchError):
                    job = todo[0]
                    add_note(exc, f"while training {job.task.name} {job.setting.name} seed "
                                  f"{job.seed}" + (f" lr {job.lr} wd {job.weight_decay}"
                                                   if len(todo) == 1 else ""))
                raise
        return len(todo)
