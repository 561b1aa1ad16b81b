"""Executors: where the groups of a sweep are trained.

- ``LocalExecutor``: in this process on CPU or on one GPU; with several visible GPUs, one worker
  process per GPU (``runs_per_gpu`` per GPU), each fed one group at a time by the driver.
- ``RayExecutor``: each group is a Ray task holding ``1/runs_per_gpu`` of a GPU, retried when its
  worker dies.

A group (one setting and seed, see ``madbench.sweep.pending_groups``) is the unit of work;
a group that is trained one run at a time anyway is handed out as single runs. Workers receive
plain data (job names and numbers, the architecture and protocol as dicts), re-resolve tasks
and mixers from their own plugins, check that they compute the same run keys as the driver,
and write every record through the ResultsStore themselves. Records are atomic
and keyed by run, so a retried group skips what its dead predecessor stored and nothing is lost
or duplicated. Progress is reported to the driver.
"""
from __future__ import annotations

import os
import sys
import traceback
from collections import deque
from dataclasses import dataclass
from multiprocessing.connection import wait
from typing import Any, Sequence

import torch

from . import __version__, errors
from .code_identity import run_version
from .architecture import ArchitectureSpec
from .errors import MadbenchError, UsageError
from .errors import warn
from .sweep import (Job, ProgressFn, choose_engine, job_from_dict, job_to_dict, pending_groups,
                    run_sweep, train_claimed)
from .protocol import Protocol
from .store import ResultsStore, run_key
from .trainer import resolve_device, resolve_precision

EXECUTORS = ("local", "ray")


# -- shipping work as plain data -----------------------------------------------------------
def sweep_payload(spec: ArchitectureSpec, protocol: Protocol, store: ResultsStore,
                  precision: str, checks: dict | None, engine: str) -> dict[str, Any]:
    """What every worker needs besides its jobs, as plain data, with the driver's hashes."""
    return {"spec": spec.to_dict(), "spec_flags": list(spec.flags), "arch_hash": spec.hash,
            "protocol": protocol.to_dict(), "protocol_hash": protocol.hash,
            "run_dir": str(store.root.resolve()), "precision": precision, "checks": checks,
            "engine": engine, "sys_path": list(sys.path), "madbench_version": __version__}


def _resolve_payload(payload: dict) -> tuple[ArchitectureSpec, Protocol, ResultsStore]:
    for path in payload["sys_path"]:      # import-path mixers the driver could import
        if path not in sys.path and os.path.isdir(path or "."):
            sys.path.append(path)
    if payload["madbench_version"] != __version__:
        raise MadbenchError(f"this worker runs madbench {__version__}, the driver "
                            f"{payload['madbench_version']}: install the same version everywhere")
    try:
        spec = ArchitectureSpec.from_dict(payload["spec"], payload["spec_flags"])
        arch_hash = spec.hash
    except UsageError as exc:
        raise UsageError(f"on a worker: {exc} (plugins registered at run time are not seen by "
                         "worker processes: install them as a package, or give an import "
                         "path)") from None
    if arch_hash != payload["arch_hash"]:
        raise MadbenchError(f"the architecture {spec.name!r} hashes differently on a worker: it "
                            "imports different mixer code (install the same plugins everywhere)")
    protocol = Protocol.from_dict(payload["protocol"])
    if protocol.hash != payload["protocol_hash"]:
        raise MadbenchError("the protocol hashes differently on a worker")
    return spec, protocol, ResultsStore(payload["run_dir"])


def train_shipped_group(payload: dict, job_dicts: Sequence[dict], device: str,
                        progress: ProgressFn | None = None,
                        verdicts: dict | None = None) -> int:
    """The worker's side: re-resolve the group, skip the jobs already stored (by a worker that
    died), train the rest on ``device`` and store them. Returns how many were trained."""
    spec, protocol, store = _resolve_payload(payload)
    jobs = [job_from_dict(d, protocol) for d in job_dicts]
    for job in jobs:
        if run_key(spec.hash, job.effective.hash, protocol.hash, job.lr, job.weight_decay,
                   job.seed, run_version()) != job.key:
            raise MadbenchError(f"{job.task.name} {job.setting.name}: a worker generates "
                                "different data (another task version): install the same "
                                "plugins everywhere")
    if all(store.has(job.key) for job in jobs):
        return 0
    dev = torch.device(device)
    if dev.type == "cuda":
        if dev.index is None:
            dev = torch.device("cuda", torch.cuda.current_device())
        torch.cuda.set_device(dev)
    precision = resolve_precision(dev, payload["precision"])
    return train_claimed(spec, jobs, protocol, store, dev, precision, payload["checks"],
                         payload["engine"], progress, {} if verdicts is None else verdicts)


def work_units(groups: list[list[Job]], protocol: Protocol, engine: str, device: str
               ) -> list[list[Job]]:
    """What an executor hands out, longest first: the groups, except that a group that
    ``device`` trains one run at a time anyway (``choose_engine`` says plain) is split into single
    runs, so that its runs train in parallel (each unit generates its data again; cheap)."""
    dev = torch.device(device)
    units = [unit for group in groups for unit in
             ([group] if choose_engine(engine, protocol, dev, len(group)) != "plain"
              else [[job] for job in group])]
    # longest first: with few units of unequal length (the long-sequence settings dominate),
    # handing out the long ones first keeps a GPU from finishing alone on the last long unit
    return sorted(units, key=lambda unit: -unit_cost(unit, protocol))


def unit_cost(unit: Sequence[Job], protocol: Protocol) -> int:
    """Training tokens of a unit of work, a proxy for its time: runs x steps x batch x seq_len."""
    from .estimate import run_tokens
    return len(unit) * run_tokens(unit[0], protocol)


def _describe_group(group: Sequence[Job]) -> str:
    job = group[0]
    run = f" lr {job.lr} wd {job.weight_decay}" if len(group) == 1 else ""
    return f"{job.task.name} {job.setting.name} seed {job.seed}{run}"


def _error_from_worker(name: str, message: str, trace: str, where: str) -> MadbenchError:
    """A worker's exception, as the madbench error it was, or a MadbenchError naming it (its
    traceback printed to stderr)."""
    cls = getattr(errors, name, None)
    if isinstance(cls, type) and issubclass(cls, MadbenchError):
        return cls(message)
    print(trace, file=sys.stderr)
    return MadbenchError(f"a worker on {where} failed: {name}: {message}".splitlines()[0])


# -- local worker processes ----------------------------------------------------------------
def local_devices(device: str = "auto", runs_per_gpu: int = 1) -> list[str]:
    """The devices of local workers: every visible GPU for ``auto`` and ``cuda`` (or the one
    GPU of ``cuda:N``), each ``runs_per_gpu`` times, interleaved; otherwise ``["cpu"]``."""
    if device in ("auto", "cuda") and torch.cuda.is_available():
        gpus = [f"cuda:{i}" for i in range(torch.cuda.device_count())]
    else:
        dev = resolve_device(device)
        if dev.type != "cuda":
            return [str(dev)]
        gpus = [str(dev) if dev.index is not None else "cuda:0"]
    return [gpu for _ in range(runs_per_gpu) for gpu in gpus]


def _local_worker(worker_id: int, device: str, payload: dict, threads: int, inbox, outbox
                  ) -> None:
    """A worker process: train the groups the driver sends until it sends None. ``outbox`` is
    the worker's own pipe to the driver, so a worker killed mid-message can only garble its
    own channel, which the driver drops with it."""
    torch.set_num_threads(threads)
    verdicts: dict = {}
    group_id = None

    def progress(event: str, info: dict) -> None:
        outbox.send(("progress", worker_id, group_id, event, info))

    try:
        while (item := inbox.get()) is not None:
            group_id, job_dicts = item
            try:
                trained = train_shipped_group(payload, job_dicts, device, progress, verdicts)
            except Exception as exc:  # noqa: BLE001 - reported to the driver, which raises it
                outbox.send(("error", worker_id, type(exc).__name__, str(exc),
                             traceback.format_exc()))
                return
            outbox.send(("finished", worker_id, group_id, trained))
    except KeyboardInterrupt:
        return


@dataclass
class _Worker:
    id: int
    device: str
    label: str                    #: the device, numbered when several workers share it
    process: Any
    inbox: Any
    outbox: Any                   #: the driver's end of the worker's pipe
    group: int | None = None      #: the group it trains now


class LocalExecutor:
    """Train on this machine: in this process on CPU or one GPU, else one worker process per
    device (torch.multiprocessing, spawn), each fed one group at a time.

    ``devices`` overrides the devices taken from ``--device`` (e.g. ``["cpu", "cpu"]`` runs two
    CPU worker processes); a worker that dies is replaced and its group retried up to
    ``max_retries`` times."""

    name = "local"

    def __init__(self, runs_per_gpu: int = 1, devices: Sequence[str] | None = None,
                 max_retries: int = 2, threads_per_worker: int | None = None):
        if runs_per_gpu < 1:
            raise UsageError("--runs-per-gpu must be at least 1")
        self.runs_per_gpu = runs_per_gpu
        self.devices = list(devices) if devices is not None else None
        self.max_retries = max_retries
        self.threads_per_worker = threads_per_worker

    def run(self, spec: ArchitectureSpec, jobs: Sequence[Job], protocol: Protocol,
            store: ResultsStore, device: str = "auto", precision: str = "auto",
            checks: dict | None = None, progress: ProgressFn | None = None,
            engine: str = "auto") -> int:
        """Train every job not yet in the store; returns how many were trained."""
        devices = self.devices or local_devices(device, self.runs_per_gpu)
        if len(devices) == 1:
            dev = torch.device(devices[0])
            if dev.type == "cuda" and dev.index is not None:
                torch.cuda.set_device(dev)    # streams and kernels made on the current device
            return run_sweep(spec, jobs, protocol, store, devices[0], precision, checks,
                             progress, engine)
        groups = pending_groups(jobs, protocol, store)
        todo = sum(len(g) for g in groups)
        if progress:
            progress("start", {"total": len(jobs), "done": len(jobs) - todo})
        units = work_units(groups, protocol, engine, devices[0])
        if units:
            payload = sweep_payload(spec, protocol, store, precision, checks, engine)
            _WorkerPool(devices[:len(units)], payload, self._threads(len(devices)),
                        self.max_retries, progress).run(units)
        return todo

    def _threads(self, workers: int) -> int:
        if self.threads_per_worker:
            return self.threads_per_worker
        return max(1, (os.cpu_count() or 1) // workers)


class _WorkerPool:
    """The driver's side of LocalExecutor: start workers, hand out groups, forward progress,
    replace dead workers and retry their group."""

    def __init__(self, devices: Sequence[str], payload: dict, threads: int, max_retries: int,
                 progress: ProgressFn | None):
        import torch.multiprocessing as mp
        self.ctx = mp.get_context("spawn")
        self.devices = list(devices)
        self.payload = payload
        self.threads = threads
        self.max_retries = max_retries
        self.progress = progress
        self.workers: dict[int, _Worker] = {}
        self.next_id = 0

    def _start(self, device: str, label: str) -> _Worker:
        inbox = self.ctx.Queue()
        receive, send = self.ctx.Pipe(duplex=False)
        wid = self.next_id
        self.next_id += 1
        process = self.ctx.Process(target=_local_worker, name=f"madbench-worker-{device}",
                                   args=(wid, device, self.payload, self.threads, inbox, send),
                                   daemon=True)
        process.start()
        send.close()                      # the worker holds the only sending end
        self.workers[wid] = worker = _Worker(wid, device, label, process, inbox, receive)
        return worker

    def _assign(self, worker: _Worker) -> None:
        if self.queue:
            worker.group = self.queue.popleft()
            worker.inbox.put((worker.group, [job_to_dict(j) for j in self.groups[worker.group]]))
        else:
            worker.group = None
            worker.inbox.put(None)

    def run(self, groups: list[list[Job]]) -> None:
        self.groups = groups
        self.queue = deque(range(len(groups)))
        attempts = [0] * len(groups)
        reported = [0] * len(groups)      #: runs reported done, by any worker
        remaining = len(groups)
        try:
            for slot, device in enumerate(self.devices):
                shared = self.devices.count(device) > 1
                self._assign(self._start(device, f"{device}#{slot}" if shared else device))
            while remaining:
                by_channel = {w.outbox: w for w in self.workers.values()}
                for channel in wait(list(by_channel), timeout=0.5):
                    worker = by_channel[channel]
                    try:
                        message = channel.recv()
                    except (EOFError, OSError):   # the worker is gone (maybe mid-message)
                        self._replace(worker, attempts)
                        continue
                    remaining -= self._handle(message, worker, reported)
                for worker in list(self.workers.values()):
                    if not worker.process.is_alive() and not worker.outbox.poll():
                        self._replace(worker, attempts)
        finally:
            self._stop()

    def _handle(self, message: tuple, worker: _Worker, reported: list[int]) -> int:
        """Act on one worker message; returns 1 when a group is finished."""
        kind = message[0]
        if kind == "progress" and self.progress:
            group, event, info = message[2:5]
            reported[group] += event == "done"
            self.progress(event, {**info, "worker": worker.label})
        elif kind == "finished" and worker.group == message[2]:
            for _ in range(len(self.groups[worker.group]) - reported[worker.group]
                           if self.progress else 0):   # stored by a dead worker
                self.progress("done", {"accuracy": None})
            self._assign(worker)
            return 1
        elif kind == "error":
            name, text, trace = message[2:5]
            raise _error_from_worker(name, text, trace, worker.label)
        return 0

    def _replace(self, worker: _Worker, attempts: list[int]) -> None:
        """Drop a dead worker; retry its group, if any, in a new worker on its device."""
        if self.workers.pop(worker.id, None) is None:
            return
        worker.process.join(timeout=5)
        worker.outbox.close()
        group = worker.group
        if group is None:
            return
        attempts[group] += 1
        where = f"{_describe_group(self.groups[group])} on {worker.label}"
        if attempts[group] > self.max_retries:
            raise MadbenchError(f"a worker died {attempts[group]} times training {where} "
                                f"(exit code {worker.process.exitcode}); the runs stored "
                                "so far are kept: re-run to resume")
        warn(f"a worker died (exit code {worker.process.exitcode}) training {where}; "
             "retrying the group in a new worker")
        self.queue.appendleft(group)
        self._assign(self._start(worker.device, worker.label))

    def _stop(self) -> None:
        for worker in self.workers.values():
            worker.inbox.cancel_join_thread()     # never block exit on a dead reader
            if worker.process.is_alive():
                try:
                    worker.inbox.put(None)
                except (OSError, ValueError):
                    pass
        for worker in self.workers.values():
            worker.process.join(timeout=5 if worker.group is None else 0.1)
            if worker.process.is_alive():
                worker.process.terminate()
                worker.process.join(timeout=5)


# -- Ray ------------------------------------------------------------------------------------
_RAY_VERDICTS: dict = {}     #: per Ray worker process: engine verdicts (vmappable, capturable)


def _ray_train_group(payload: dict, job_dicts: list[dict], device: str, threads: int) -> int:
    """The body of one Ray task: one group, trained in the Ray worker process."""
    torch.set_num_threads(threads)
    return train_shipped_group(payload, job_dicts, device, None, _RAY_VERDICTS)


def _check_reachable(address: str | None, timeout: float = 5.0) -> None:
    """Fail fast on a ``host:port`` nobody listens on (Ray itself retries for minutes)."""
    host, sep, port = (address or "").rpartition(":")
    if not sep or "://" in address or not port.isdigit():
        return                        # None, "auto", "ray://..." or no port: left to Ray
    import socket
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout).close()
    except OSError as exc:
        raise MadbenchError(f"cannot reach a Ray cluster at {address}: {exc}") from None


def _import_ray():
    try:
        import ray
    except ImportError:
        raise UsageError("--executor ray needs Ray: pip install 'madbench[ray]'") from None
    return ray


class RayExecutor:
    """Train each group as a Ray task on a Ray cluster (``address``; None starts a local Ray
    instance, or joins the one ``RAY_ADDRESS`` names). A task holds ``1/runs_per_gpu`` of a GPU
    (none on CPU) and ``cpus_per_run`` CPUs; a task whose worker dies is retried up to
    ``max_retries`` times. Every node must see ``--run-dir`` (a shared filesystem) and have the
    same madbench and plugins installed."""

    name = "ray"

    def __init__(self, address: str | None = None, runs_per_gpu: int = 1, max_retries: int = 3,
                 cpus_per_run: int = 1, init_options: dict | None = None):
        if runs_per_gpu < 1:
            raise UsageError("--runs-per-gpu must be at least 1")
        self.address = address
        self.runs_per_gpu = runs_per_gpu
        self.max_retries = max_retries
        self.cpus_per_run = cpus_per_run
        self.init_options = init_options or {}

    def run(self, spec: ArchitectureSpec, jobs: Sequence[Job], protocol: Protocol,
            store: ResultsStore, device: str = "auto", precision: str = "auto",
            checks: dict | None = None, progress: ProgressFn | None = None,
            engine: str = "auto") -> int:
        """Train every job not yet in the store on the Ray cluster; returns how many."""
        ray = _import_ray()
        if device not in ("auto", "cuda", "cpu"):
            raise UsageError(f"--device {device}: with --executor ray use auto, cuda or cpu "
                             "(Ray assigns the GPUs)")
        if device == "cpu":
            resolve_precision(torch.device("cpu"), precision)   # refuses bf16 on CPU
        groups = pending_groups(jobs, protocol, store)
        todo = sum(len(g) for g in groups)
        if progress:
            progress("start", {"total": len(jobs), "done": len(jobs) - todo})
        if not groups:
            return 0
        started = not ray.is_initialized()
        if started:
            _check_reachable(self.address)
            options = {"include_dashboard": False, **self.init_options}
            try:
                ray.init(address=self.address, **options)
            except (ConnectionError, ValueError) as exc:
                raise MadbenchError(f"cannot connect to Ray at {self.address}: {exc}"
                                    .splitlines()[0]) from None
        try:
            self._run_groups(ray, groups, spec, protocol, store, device, precision, checks,
                             progress, engine)
        finally:
            if started:
                ray.shutdown()
        return todo

    def _run_groups(self, ray, groups, spec, protocol, store, device, precision, checks,
                    progress, engine) -> None:
        has_gpus = ray.cluster_resources().get("GPU", 0) > 0
        if device == "cuda" and not has_gpus:
            raise UsageError("--device cuda: the Ray cluster has no GPUs")
        use_gpu = has_gpus and device != "cpu"
        task = ray.remote(_ray_train_group).options(
            num_gpus=1 / self.runs_per_gpu if use_gpu else 0, num_cpus=self.cpus_per_run,
            max_retries=self.max_retries, retry_exceptions=False, name="madbench-group")
        payload = ray.put(sweep_payload(spec, protocol, store, precision, checks, engine))
        device = "cuda" if use_gpu else "cpu"
        pending = {task.remote(payload, [job_to_dict(j) for j in group], device,
                               self.cpus_per_run): group
                   for group in work_units(groups, protocol, engine, device)}
        try:
            while pending:
                if progress:
                    n = len(pending)
                    progress("status", {"text": f"{n} task{'s' * (n != 1)} queued or "
                                                "training on Ray"})
                ready, _ = ray.wait(list(pending), num_returns=1, timeout=1.0)
                for ref in ready:
                    group = pending.pop(ref)
                    self._collect(ray, ref, group, store)
                    for _ in range(len(group) if progress else 0):
                        progress("done", {"accuracy": None})
            if progress:
                progress("status", {"text": ""})
        finally:
            for ref in pending:
                ray.cancel(ref)

    def _collect(self, ray, ref, group: Sequence[Job], store: ResultsStore) -> None:
        """Wait for one finished task; raise its error as madbench would have raised it."""
        try:
            ray.get(ref)
        except ray.exceptions.RayTaskError as exc:
            cause = getattr(exc, "cause", None)
            if isinstance(cause, MadbenchError):
                raise type(cause)(str(cause)) from None
            raise
        except (ray.exceptions.WorkerCrashedError, ray.exceptions.NodeDiedError,
                ray.exceptions.TaskUnschedulableError) as exc:
            raise MadbenchError(f"Ray could not train {_describe_group(group)} "
                                f"({type(exc).__name__}, {self.max_retries} retries); the "
                                "runs stored so far are kept: re-run to resume") from None
        missing = [j for j in group if not store.has(j.key)]
        if missing:
            raise MadbenchError(f"a Ray worker trained {_describe_group(group)} but its records "
                                f"are not in {store.root}: --run-dir must be on a filesystem "
                                "every Ray node shares")


def make_executor(name: str, ray_address: str | None = None, runs_per_gpu: int = 1):
    """The executor the CLI names: ``local`` or ``ray``."""
    if name == "local":
        if ray_address:
            raise UsageError("--ray-address needs --executor ray")
        return LocalExecutor(runs_per_gpu)
    if name == "ray":
        return RayExecutor(ray_address, runs_per_gpu)
    raise UsageError(f"unknown executor {name!r} (choose from: {', '.join(EXECUTORS)})")
