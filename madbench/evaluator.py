"""``madbench.evaluate``: one architecture on the MAD tasks under a protocol, as one library
call. ``madbench eval``, leaderboard re-runs and notebooks all go through it:

    import madbench
    results = madbench.evaluate("hyena", tasks=["memorization"], protocol="smoke")
    print(results.score, results.task_scores)

``prepare`` does every check that needs no training (arguments, device and precision,
architecture gate, the plan of runs) and returns an ``Evaluation``; its ``run`` trains the
runs not yet stored in ``run_dir`` and scores them (``madbench.results.Results``).
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

from .architecture import ArchitectureSpec, resolve_architecture
from .errors import UsageError, warn
from .estimate import group_seconds
from .executors import make_executor
from .limits import MAX_SEED, check_group_size, positive_number
from .plugins import get_registry
from .protocol import Protocol, get_protocol
from .results import Results
from .store import ResultsStore
from .sweep import Job, ProgressFn, group_jobs, plan
from .tasks import Task, all_tasks, get_task
from .time_limit import TimeLimit
from .trainer import resolve_device, resolve_precision
from .verdict import architecture_checks, causality_gate, dry_run_lengths, guard_lengths_for


@dataclass(frozen=True)
class Placement:
    """Where the runs train, resolved once: ``device`` (``cpu``, ``cuda`` or ``cuda:N``; on Ray
    ``auto``, ``cuda`` or ``cpu``, Ray assigning the GPUs) and ``precision`` (``bf16`` or
    ``fp32``; ``auto`` only on Ray without a fixed device, resolved on each worker)."""
    device: str
    precision: str


def resolve_placement(device: str = "auto", precision: str = "auto",
                      executor: str = "local") -> Placement:
    """``--device`` and ``--precision`` resolved on this machine (a usage error when it has no
    such device, for an indexed cpu such as ``cpu:1``, or for bf16 off CUDA)."""
    if executor == "ray":
        if device == "cpu":
            return Placement("cpu", resolve_precision(resolve_device("cpu"), precision))
        return Placement(device, precision)
    dev = resolve_device(device)
    if dev.type == "cpu" and dev.index is not None:     # torch takes it; it names nothing more
        raise UsageError(f"--device {device!r}: the cpu takes no index (use --device cpu)")
    return Placement(str(dev), resolve_precision(dev, precision))


def select_tasks(tasks: str | Sequence[str | Task]) -> list[Task]:
    """``all``, or task names (a comma-separated string or a list), or Task objects; each
    task once, in the order first given."""
    if isinstance(tasks, str):
        if tasks == "all":
            if not all_tasks():         # else "the sweep is empty", with no reason given
                raise UsageError("--tasks all: no task is registered (a task plugin blocked "
                                 "by MADBENCH_DISABLE_PLUGINS or MADBENCH_LOAD_PLUGINS? "
                                 "'madbench plugins' lists what loaded)"
                                 + get_registry().failure_note())
            return all_tasks()
        names = [name.strip() for name in tasks.split(",") if name.strip()]
        if not names:
            raise UsageError(f"--tasks {tasks!r} names no task ('all' or comma-separated "
                             "names)")
        tasks = names
    chosen = [t if isinstance(t, Task) else get_task(t) for t in tasks]
    return list({t.name: t for t in chosen}.values())


def check_seeds(seeds: Sequence[int]) -> list[int]:
    """The seeds, sorted and unique: at least one, each in 0 .. 2**63 - 1."""
    if not seeds:
        raise UsageError("--seeds needs at least one seed (a non-negative integer)")
    negative = [s for s in seeds if s < 0]
    if negative:
        raise UsageError(f"--seeds: a seed is a non-negative integer, not {negative[0]}")
    if any(s > MAX_SEED for s in seeds):
        raise UsageError(f"--seeds: a seed is at most {MAX_SEED} (2**63 - 1)")
    return sorted(set(int(s) for s in seeds))


@dataclass(frozen=True)
class Evaluation:
    """A checked plan: the architecture passed the gate of ``madbench eval``; nothing is
    trained until ``run``."""
    spec: ArchitectureSpec
    protocol: Protocol
    jobs: tuple[Job, ...]
    checks: dict[str, Any]
    run_dir: Path
    placement: Placement
    executor: Any
    engine: str = "auto"
    #: sequence lengths a dry run's ``prepare`` left unchecked; ``run`` checks them first
    unchecked: tuple[int, ...] = ()

    def pending(self, heal: bool = True) -> list[Job]:
        """The runs not yet stored in ``run_dir`` (reading it creates nothing). The store is
        healed first (``ResultsStore.heal``); without ``heal`` nothing is changed and an
        unreadable record counts as not stored."""
        if not Path(self.run_dir, "records").is_dir():
            return list(self.jobs)
        missing = ResultsStore(self.run_dir).missing([job.key for job in self.jobs], heal)
        return [job for group in group_jobs(self.jobs) for job in group if job.key in missing]

    def unreadable(self) -> list[Path]:
        """The files under ``run_dir/records`` that healing would move aside (none moved)."""
        if not Path(self.run_dir, "records").is_dir():
            return []
        return [path for path, _ in ResultsStore(self.run_dir).problems()]

    def estimate(self, pending: Sequence[Job] | None = None):
        """The estimated time of the pending runs (``madbench.estimate.SweepEstimate``),
        from a few training steps measured with the sweep's engine on the device (on Ray, in
        a Ray task on a worker), divided by the devices that train at once."""
        pending = self.pending() if pending is None else pending
        return self.executor.estimate(self.spec, self.jobs, pending, self.protocol,
                                      str(self.run_dir), self.placement.device,
                                      self.placement.precision, self.engine)

    def time_limit(self, seconds: float, estimate=None, started: float | None = None
                   ) -> TimeLimit:
        """A ``TimeLimit`` of ``seconds`` from ``started`` (default now) for this sweep's
        groups, priced by ``estimate`` (a ``SweepEstimate``; default: probed now)."""
        estimate = self.estimate() if estimate is None else estimate
        probes = estimate.probes
        return TimeLimit(seconds, lambda group: group_seconds(group, self.protocol, probes),
                         started)

    def run(self, progress: ProgressFn | None = None,
            time_limit: TimeLimit | None = None) -> Results:
        """Train every run not yet stored (``train``), then score the sweep's records
        (``results``)."""
        return self.results(self.train(progress, time_limit))

    def train(self, progress: ProgressFn | None = None,
              time_limit: TimeLimit | None = None) -> list[dict[str, Any]]:
        """Train every run not yet stored (each record stored as it finishes; a re-run
        resumes) and return every record in ``run_dir`` then, read once: the sweep's for
        ``results``, the others for ``madbench eval`` to name it among them. With
        ``time_limit`` (``self.time_limit``), groups that would not finish in time are left
        untrained, and ``TimeLimitReached`` says how many runs are left."""
        if self.unchecked:                 # prepared for a dry run: checked before training
            causality_gate(self.spec, self.unchecked)
        store = ResultsStore(self.run_dir)
        self.executor.run(self.spec, list(self.jobs), self.protocol, store,
                          self.placement.device, self.placement.precision, self.checks,
                          progress, self.engine,
                          **({"time_limit": time_limit} if time_limit is not None else {}))
        records = store.records()
        stored = {r["run_key"] for r in records}
        left = [job for job in self.jobs if job.key not in stored] if time_limit else []
        if left:
            held = {job.key for group in time_limit.held for job in group}
            raise time_limit.stopped(group_jobs(left), len(left), len(self.jobs), "group",
                                     self.run_dir, held=sum(job.key in held for job in left))
        return records

    def results(self, records: Sequence[dict[str, Any]]) -> Results:
        """The sweep's records among ``records`` (``train``'s), scored."""
        keys = {job.key for job in self.jobs}
        return Results.from_records([r for r in records if r["run_key"] in keys],
                                    checks=self.checks)


def prepare(arch: str | ArchitectureSpec, *, tasks: str | Sequence[str | Task] = "all",
            protocol: str | Protocol = "paper", overrides: dict[str, str] | None = None,
            seeds: Sequence[int] = (0,), settings: str | Sequence[str] | None = None,
            configs: Sequence[tuple[float, float]] | None = None,
            run_dir: str | Path = "runs", device: str = "auto", precision: str = "auto",
            channel: str | None = None, striped: bool = False,
            mixer_kwargs: dict | str | None = None, allow_state_mismatch: bool = False,
            state_target: int = 4096, param_tolerance: float = 0.2, engine: str = "auto",
            executor: str | Any = "local", ray_address: str | None = None,
            runs_per_gpu: int = 1, group_size: int | None = None,
            preflight: Callable[[], None] | None = None,
            checks: dict | None = None, dry_run: bool = False) -> Evaluation:
    """Check everything that needs no training and plan the sweep (see ``evaluate`` for the
    arguments). ``preflight`` runs once every argument is known good (the architecture
    resolved and the sweep planned), before the architecture checks (the CLI checks and
    creates its output paths there). ``checks``: the architecture
    checks of this architecture already made (an earlier ``prepare``'s), not made again.
    ``dry_run``: causality is checked only at the lengths a dry run checks
    (``verdict.dry_run_lengths``); the others are kept in ``Evaluation.unchecked``; a Ray
    executor named by its name estimates without starting a Ray instance."""
    runner = make_executor(executor, ray_address, runs_per_gpu, dry_run) \
        if isinstance(executor, str) else executor
    if isinstance(protocol, str):
        protocol = get_protocol(protocol, overrides)
    elif overrides:
        raise UsageError("overrides apply to a preset name, not to a Protocol object")
    seed_list = check_seeds(list(seeds))
    group_size = check_group_size(group_size)
    placement = resolve_placement(device, precision, getattr(runner, "name", "local"))
    if runs_per_gpu > 1 and placement.device == "cpu":
        warn(f"--runs-per-gpu {runs_per_gpu} is for GPUs; on the CPU runs train one "
             "process at a time")
    task_list = select_tasks(tasks)
    spec = arch if isinstance(arch, ArchitectureSpec) else \
        resolve_architecture(arch, channel, striped, mixer_kwargs)
    jobs = plan(spec, task_list, protocol, seed_list, settings, group_size)
    if configs is not None:
        wanted = {(float(lr), float(wd)) for lr, wd in configs}
        jobs = [job for job in jobs if (job.lr, job.weight_decay) in wanted]
    if not jobs:
        raise UsageError("the sweep is empty: no (task, setting, seed, lr, weight decay) run "
                         "to train")
    if preflight:              # after every argument is known good: it may create folders
        preflight()
    lengths, unchecked = dry_run_lengths(guard_lengths_for(jobs), dry_run)
    if checks is None:
        checks = architecture_checks(spec, allow_state_mismatch, state_target, param_tolerance,
                                     lengths)
    return Evaluation(spec, protocol, tuple(jobs), checks, Path(run_dir), placement, runner,
                      engine, tuple(sorted(unchecked)))


def evaluate(arch: str | ArchitectureSpec, *, tasks: str | Sequence[str | Task] = "all",
             protocol: str | Protocol = "paper", seeds: Sequence[int] = (0,),
             run_dir: str | Path = "runs", progress: ProgressFn | None = None,
             time_limit: float | None = None, **options: Any) -> Results:
    """Evaluate an architecture on the MAD tasks with the standardized sweep, as
    ``madbench eval`` does, and return its ``Results``.

    :param arch: a registered architecture or mixer, ``pkg.module:Class``, a shorthand such
        as ``mH-Sg-mA-Sg``, or an ``ArchitectureSpec``.
    :param tasks: ``all``, task names, or Task objects.
    :param protocol: a preset name (``paper``, ``mad-lab``, ``quick``, ``smoke``) or a
        ``Protocol``; ``overrides={"epochs": "20"}`` changes fields of a preset.
    :param seeds: the seeds of every run.
    :param run_dir: where run records are stored; runs already stored there are not trained
        again.
    :param progress: called with ``(event, info)`` as runs start and finish.
    :param time_limit: seconds from this call: start no group of runs that would not finish
        in time (as ``madbench eval --time-limit``).
    :param options: ``settings`` (None: the protocol's; ``all``, ``baseline`` or setting
        names), ``configs`` (a subset of the protocol's (lr, weight decay) grid), ``device``,
        ``precision``, ``engine``, ``executor``, ``ray_address``, ``runs_per_gpu``,
        ``group_size``, ``channel``, ``striped``, ``mixer_kwargs``, ``allow_state_mismatch``,
        ``state_target``, ``param_tolerance`` (as the options of ``madbench eval``).
    :raises CheckFailed: the architecture is refused (not causal, or off the state target).
    :raises UsageError: an argument is invalid; nothing was trained.
    :raises TimeLimitReached: ``time_limit`` left runs untrained (those trained are stored;
        the same call resumes).
    """
    started = time.monotonic()
    if time_limit is not None and not positive_number(time_limit):
        raise UsageError(f"time_limit must be a positive number of seconds, not {time_limit!r}")
    evaluation = prepare(arch, tasks=tasks, protocol=protocol, seeds=seeds, run_dir=run_dir,
                         **options)
    limit = None
    if time_limit is not None:
        estimate = evaluation.estimate()
        if estimate.pending:
            limit = evaluation.time_limit(time_limit, estimate, started)
    return evaluation.run(progress, limit)


__all__ = ["Evaluation", "Placement", "evaluate", "prepare", "resolve_placement"]
