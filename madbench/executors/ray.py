"""Training on a Ray cluster: each group of a sweep is a Ray task holding ``1/runs_per_gpu`` of
a GPU, retried when its worker dies. Every node must see the run directory and have the same
madbench and plugins installed."""
from __future__ import annotations

import os
import signal
import threading
import time
from dataclasses import replace
from typing import Sequence

import torch

from ..architecture import ArchitectureSpec
from ..estimate import SweepEstimate, estimate_sweep
from ..errors import MadbenchError, UsageError
from ..limits import check_runs_per_gpu
from ..protocol import Protocol
from ..store import ResultsStore
from ..sweep import Job, ProgressFn, job_to_dict, pending_groups
from ..time_limit import TimeLimit
from ..trainer import resolve_precision
from .dispatch import Dispatch
from .payload import (describe_group, estimate_shipped, handout_groups, sweep_payload,
                      train_shipped_group)


_RAY_VERDICTS: dict = {}     #: per Ray worker process: engine verdicts (vmappable, capturable)


def _ray_train_group(payload: dict, job_dicts: list[dict], device: str, threads: int,
                     wait: bool = True) -> int | None:
    """The body of one Ray task: one group, trained in the Ray worker process (None: another
    process held it and ``wait`` is False)."""
    torch.set_num_threads(threads)
    return train_shipped_group(payload, job_dicts, device, None, _RAY_VERDICTS, wait)


def _ray_estimate(payload: dict, job_dicts: list[dict], device: str, threads: int,
                  workers: int, devices: int) -> SweepEstimate:
    """The body of the estimate's Ray task: the probe timed in a Ray worker."""
    torch.set_num_threads(threads)
    return estimate_shipped(payload, job_dicts, device, workers, devices)


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
    same madbench and plugins installed. With ``estimate_starts_ray`` false (a dry run),
    ``estimate`` joins a running cluster only: with none, it starts no Ray instance and probes
    here, for the local instance ``run`` would start."""

    name = "ray"

    def __init__(self, address: str | None = None, runs_per_gpu: int = 1, max_retries: int = 3,
                 cpus_per_run: int = 1, init_options: dict | None = None,
                 estimate_starts_ray: bool = True):
        self.address = address
        self.estimate_starts_ray = estimate_starts_ray
        self.runs_per_gpu = check_runs_per_gpu(runs_per_gpu)
        self.max_retries = max_retries
        self.cpus_per_run = cpus_per_run
        self.init_options = init_options or {}
        self._owned = False          #: this executor started the Ray connection

    def run(self, spec: ArchitectureSpec, jobs: Sequence[Job], protocol: Protocol,
            store: ResultsStore, device: str = "auto", precision: str = "auto",
            checks: dict | None = None, progress: ProgressFn | None = None,
            engine: str = "auto", time_limit: TimeLimit | None = None) -> int:
        """Train every job not yet in the store on the Ray cluster; returns how many of those
        pending are stored when it returns. With ``time_limit``, only as many tasks as the
        cluster runs at once are submitted, each only if its group would finish in time."""
        ray = _import_ray()
        self._check_device(device, precision)
        groups = pending_groups(jobs, store)
        todo = sum(len(g) for g in groups)
        if progress:
            progress("start", {"total": len(jobs), "done": len(jobs) - todo})
        if not groups:
            return 0
        self._connect(ray)
        try:
            self._run_groups(ray, groups, spec, protocol, store, device, precision, checks,
                             progress, engine, time_limit)
        finally:
            if self._owned:
                self._owned = False
                ray.shutdown()
        return sum(store.has(job.key) for group in groups for job in group)

    def estimate(self, spec: ArchitectureSpec, jobs: Sequence[Job], pending: Sequence[Job],
                 protocol: Protocol, run_dir: str, device: str = "auto",
                 precision: str = "auto", engine: str = "auto") -> SweepEstimate:
        """The estimate of the pending runs (``madbench.estimate.SweepEstimate``), probed in a
        Ray task on a worker like those that train (a whole GPU when the cluster has GPUs), not
        on this driver; the time is divided by the cluster's GPUs (one device on a CPU-only
        cluster). A connection opened here stays open for ``run``, which closes it. Without
        ``estimate_starts_ray`` and no running cluster to join, probed here instead, with the
        resources of the local instance ``run`` would start (``SweepEstimate.local_stand_in``)."""
        self._check_device(device, precision)
        if not pending:
            return SweepEstimate(len(jobs), len(jobs), 0, None, (), None, device)
        ray = _import_ray()
        if not self._connect(ray, start=self.estimate_starts_ray):
            resources = self._local_resources()
            use_gpu = self._use_gpu(resources, device)
            estimate = estimate_sweep(spec, jobs, pending, protocol, "cuda" if use_gpu else "cpu",
                                      precision, self._slots(resources, use_gpu),
                                      max(int(resources["GPU"]), 1) if use_gpu else 1, engine)
            return replace(estimate, local_stand_in=True)
        resources = ray.cluster_resources()
        use_gpu = self._use_gpu(resources, device)
        gpus = int(resources.get("GPU", 0)) if use_gpu else 1
        task = ray.remote(_ray_estimate).options(
            num_gpus=1 if use_gpu else 0, num_cpus=self.cpus_per_run,
            max_retries=self.max_retries, retry_exceptions=False, name="madbench-estimate")
        payload = sweep_payload(spec, protocol, run_dir, precision, None, engine)
        ref = task.remote(payload, [job_to_dict(j) for j in pending],
                          "cuda" if use_gpu else "cpu", self.cpus_per_run,
                          self._slots(resources, use_gpu), max(gpus, 1))
        estimate = self._get(ray, ref, "time a training step for the estimate")
        return replace(estimate, total=len(jobs), stored=len(jobs) - len(pending))

    @staticmethod
    def _check_device(device: str, precision: str) -> None:
        if device not in ("auto", "cuda", "cpu"):
            raise UsageError(f"--device {device}: with --executor ray use auto, cuda or cpu "
                             "(Ray assigns the GPUs)")
        if device == "cpu":
            resolve_precision(torch.device("cpu"), precision)   # refuses bf16 on CPU

    def _connect(self, ray, start: bool = True) -> bool:
        """Join (or start) the cluster unless this process is connected already; ``run``
        closes a connection opened here. Without ``start`` and no address given, only a
        running cluster is joined (Ray's ``auto``: ``RAY_ADDRESS``, else the latest one
        started on this machine); False when there is none."""
        if ray.is_initialized():
            return True
        address = "auto" if self.address is None and not start else self.address
        _check_reachable(address)
        options = {"include_dashboard": False, **self.init_options}
        ours = signal.getsignal(signal.SIGTERM)
        try:
            ray.init(address=address, **options)
        except (ConnectionError, ValueError) as exc:
            if address != self.address:         # no cluster running: none is started
                return False
            raise MadbenchError(f"cannot connect to Ray at {self.address}: {exc}"
                                .splitlines()[0]) from None
        finally:      # ray.init installs a SIGTERM handler that exits 1: keep the CLI's
            if threading.current_thread() is threading.main_thread() and ours is not None:
                signal.signal(signal.SIGTERM, ours)
        self._owned = True
        return True

    def _local_resources(self) -> dict:
        """The GPUs and CPUs of the local Ray instance ``run`` would start: this machine's
        (as torch sees them), or those ``init_options`` name."""
        return {"GPU": self.init_options.get("num_gpus", torch.cuda.device_count()),
                "CPU": self.init_options.get("num_cpus", os.cpu_count() or 1)}

    @staticmethod
    def _use_gpu(resources: dict, device: str) -> bool:
        """Whether the runs train on the cluster's GPUs (``resources``, Ray's
        ``cluster_resources``; ``--device cuda`` needs some)."""
        has_gpus = resources.get("GPU", 0) > 0
        if device == "cuda" and not has_gpus:
            raise UsageError("--device cuda: the Ray cluster has no GPUs")
        return has_gpus and device != "cpu"

    def _run_groups(self, ray, groups, spec, protocol, store, device, precision, checks,
                    progress, engine, time_limit) -> None:
        resources = ray.cluster_resources()
        use_gpu = self._use_gpu(resources, device)
        task = ray.remote(_ray_train_group).options(
            num_gpus=1 / self.runs_per_gpu if use_gpu else 0, num_cpus=self.cpus_per_run,
            max_retries=self.max_retries, retry_exceptions=False, name="madbench-group")
        payload = ray.put(sweep_payload(spec, protocol, store.root, precision, checks, engine))
        device = "cuda" if use_gpu else "cpu"
        handed = handout_groups(groups, protocol, engine, device)
        dispatch = Dispatch(handed, time_limit, store)
        # without a limit every task is submitted at once and Ray queues them; with one, only
        # what the cluster runs at once, so that each group's fit is judged when it starts
        slots = len(handed) if time_limit is None else self._slots(resources, use_gpu)
        pending: dict = {}          #: task -> (group index, when it was submitted)
        try:
            while True:
                waiting = False
                while len(pending) < slots:
                    index, waiting = dispatch.next()
                    if index is None:
                        break
                    ref = task.remote(payload, [job_to_dict(j) for j in handed[index]],
                                      device, self.cpus_per_run, time_limit is None)
                    pending[ref] = (index, time.monotonic())
                if not pending and not waiting:
                    break
                if progress:
                    n = len(pending)
                    progress("status", {"text": f"{n} task{'s' * (n != 1)} queued or "
                                        "training on Ray" if n else "waiting for groups "
                                        "another process holds"})
                if not pending:     # a held group falls due soon
                    time.sleep(0.5)
                    continue
                ready, _ = ray.wait(list(pending), num_returns=1, timeout=1.0)
                for ref in ready:
                    index, submitted = pending.pop(ref)
                    group = handed[index]
                    trained = self._collect(ray, ref, group, store)
                    if trained is None:
                        dispatch.hand_back(index)
                        continue
                    dispatch.finished(index, time.monotonic() - submitted, trained)
                    for _ in range(len(group) if progress else 0):
                        progress("done", {"accuracy": None})
            dispatch.close()
            if progress:
                progress("status", {"text": ""})
        finally:   # force: an interrupted task can leave a half-imported module in its
            for ref in pending:   # worker (sympy, triton), and Ray would reuse that worker
                ray.cancel(ref, force=True)

    def _get(self, ray, ref, what: str):
        """A finished task's value; its error raised as madbench would have raised it."""
        try:
            return ray.get(ref)
        except ray.exceptions.RayTaskError as exc:
            cause = getattr(exc, "cause", None)
            if isinstance(cause, MadbenchError):
                raise type(cause)(str(cause)) from None
            raise
        except (ray.exceptions.WorkerCrashedError, ray.exceptions.NodeDiedError,
                ray.exceptions.TaskUnschedulableError) as exc:
            raise MadbenchError(f"Ray could not {what} ({type(exc).__name__}, "
                                f"{self.max_retries} retries); the runs stored so far are "
                                "kept: re-run to resume") from None

    def _slots(self, resources: dict, use_gpu: bool) -> int:
        """How many tasks a cluster of ``resources`` runs at once."""
        if use_gpu:
            return max(1, int(resources.get("GPU", 0) * self.runs_per_gpu))
        return max(1, int(resources.get("CPU", 1) // self.cpus_per_run))

    def _collect(self, ray, ref, group: Sequence[Job], store: ResultsStore) -> int | None:
        """One finished task's result (None: another process held its group); its error
        raised as madbench would have raised it."""
        trained = self._get(ray, ref, f"train {describe_group(group)}")
        if trained is not None and not all(store.has(j.key) for j in group):
            raise MadbenchError(f"a Ray worker trained {describe_group(group)} but its records "
                                f"are not in {store.root}: --run-dir must be on a filesystem "
                                "every Ray node shares")
        return trained
