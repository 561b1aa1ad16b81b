"""Training on this machine: in this process on CPU or one GPU; with several visible GPUs, one
worker process per GPU (``runs_per_gpu`` per GPU), each fed one group at a time by the driver.
A worker that dies is replaced and its group retried; records are atomic and keyed by run, so
nothing is lost or trained twice."""
from __future__ import annotations

import os
import time
import traceback
from dataclasses import dataclass
from multiprocessing.connection import wait
from typing import Any, Sequence

import torch

from ..architecture import ArchitectureSpec
from ..errors import MadbenchError, note_suffix, warn
from ..estimate import SweepEstimate, estimate_sweep
from ..limits import check_runs_per_gpu
from ..protocol import Protocol
from ..store import ResultsStore
from ..sweep import Job, ProgressFn, job_to_dict, pending_groups, run_sweep
from ..time_limit import TimeLimit
from ..trainer import resolve_device
from .dispatch import Dispatch
from .payload import (describe_group, error_from_worker, handout_groups, sweep_payload,
                      train_shipped_group)


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
            group_id, job_dicts, wait_for_holder = item
            try:
                trained = train_shipped_group(payload, job_dicts, device, progress, verdicts,
                                              wait_for_holder)
            except Exception as exc:  # noqa: BLE001 - reported to the driver, which raises it
                first, *rest = str(exc).split("\n")   # its note (the run) on the first line
                text = "\n".join([first + note_suffix(exc), *rest])
                outbox.send(("error", worker_id, type(exc).__name__, text,
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
    assigned: float = 0.0         #: when it was handed that group (time.monotonic)
    idle: bool = False            #: waiting, without a group, for a held one's retry to fall due


class LocalExecutor:
    """Train on this machine: in this process on CPU or one GPU, else one worker process per
    device (torch.multiprocessing, spawn), each fed one group at a time.

    ``devices`` overrides the devices taken from ``--device`` (e.g. ``["cpu", "cpu"]`` runs two
    CPU worker processes); a worker that dies is replaced and its group retried up to
    ``max_retries`` times."""

    name = "local"

    def __init__(self, runs_per_gpu: int = 1, devices: Sequence[str] | None = None,
                 max_retries: int = 2, threads_per_worker: int | None = None):
        self.runs_per_gpu = check_runs_per_gpu(runs_per_gpu)
        self.devices = list(devices) if devices is not None else None
        self.max_retries = max_retries
        self.threads_per_worker = threads_per_worker

    def run(self, spec: ArchitectureSpec, jobs: Sequence[Job], protocol: Protocol,
            store: ResultsStore, device: str = "auto", precision: str = "auto",
            checks: dict | None = None, progress: ProgressFn | None = None,
            engine: str = "auto", time_limit: TimeLimit | None = None) -> int:
        """Train every job not yet in the store; returns how many were trained (with worker
        processes: how many of those pending are stored when it returns). With
        ``time_limit``, a group that would not finish in time is not started."""
        devices = self.devices or local_devices(device, self.runs_per_gpu)
        if len(devices) == 1:
            dev = torch.device(devices[0])
            if dev.type == "cuda" and dev.index is not None:
                torch.cuda.set_device(dev)    # streams and kernels made on the current device
            return run_sweep(spec, jobs, protocol, store, devices[0], precision, checks,
                             progress, engine, time_limit=time_limit)
        groups = pending_groups(jobs, store)
        todo = sum(len(g) for g in groups)
        if progress:
            progress("start", {"total": len(jobs), "done": len(jobs) - todo})
        handed = handout_groups(groups, protocol, engine, devices[0])
        if handed:
            payload = sweep_payload(spec, protocol, store.root, precision, checks, engine)
            _WorkerPool(devices[:len(handed)], payload, self._threads(len(devices)),
                        self.max_retries, progress, time_limit, store).run(handed)
        return sum(store.has(job.key) for group in groups for job in group)

    def estimate(self, spec: ArchitectureSpec, jobs: Sequence[Job], pending: Sequence[Job],
                 protocol: Protocol, run_dir: str, device: str = "auto",
                 precision: str = "auto", engine: str = "auto") -> SweepEstimate:
        """The estimate of the pending runs (``madbench.estimate.SweepEstimate``), probed on
        ``device`` here, divided by the distinct devices the worker processes train on."""
        workers = self.devices or local_devices(device, self.runs_per_gpu)
        return estimate_sweep(spec, jobs, pending, protocol, device, precision, len(workers),
                              len(set(workers)), engine)

    def _threads(self, workers: int) -> int:
        if self.threads_per_worker:
            return self.threads_per_worker
        return max(1, (os.cpu_count() or 1) // workers)


class _WorkerPool:
    """The driver's side of LocalExecutor: start workers, hand out groups (``Dispatch``: under
    a time limit only those that fit), forward progress, replace dead workers and retry their
    group."""

    def __init__(self, devices: Sequence[str], payload: dict, threads: int, max_retries: int,
                 progress: ProgressFn | None, time_limit: TimeLimit | None = None,
                 store: ResultsStore | None = None):
        import torch.multiprocessing as mp
        self.ctx = mp.get_context("spawn")
        self.devices = list(devices)
        self.payload = payload
        self.threads = threads
        self.max_retries = max_retries
        self.progress = progress
        self.time_limit, self.store = time_limit, store     # the store: what groups trained
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
        """Hand ``worker`` the next group (``Dispatch.next``). The worker idles while a held
        group would still fit but is not due, and is stopped (None) when nothing is left."""
        worker.group, worker.idle = self.dispatch.next()
        if worker.group is None:
            if not worker.idle:
                worker.inbox.put(None)
            return
        worker.assigned = time.monotonic()
        # without a limit a worker waits for a held group's holder; with one it hands it back
        worker.inbox.put((worker.group, [job_to_dict(j) for j in self.groups[worker.group]],
                          self.time_limit is None))

    def run(self, groups: list[list[Job]]) -> None:
        self.groups = groups
        self.dispatch = Dispatch(groups, self.time_limit, self.store)
        attempts = [0] * len(groups)
        reported = [0] * len(groups)      #: runs reported done, by any worker
        try:
            for slot, device in enumerate(self.devices):
                shared = self.devices.count(device) > 1
                self._assign(self._start(device, f"{device}#{slot}" if shared else device))
            while any(w.group is not None or w.idle for w in self.workers.values()):
                by_channel = {w.outbox: w for w in self.workers.values()}
                for channel in wait(list(by_channel), timeout=0.5):
                    worker = by_channel[channel]
                    try:
                        message = channel.recv()
                    except (EOFError, OSError):   # the worker is gone (maybe mid-message)
                        self._replace(worker, attempts)
                        continue
                    self._handle(message, worker, reported)
                for worker in list(self.workers.values()):
                    if not worker.process.is_alive() and not worker.outbox.poll():
                        self._replace(worker, attempts)
                    elif worker.idle:
                        self._assign(worker)
            self.dispatch.close()
        finally:
            self._stop()

    def _handle(self, message: tuple, worker: _Worker, reported: list[int]) -> None:
        """Act on one worker message."""
        kind = message[0]
        if kind == "progress" and self.progress:
            group, event, info = message[2:5]
            reported[group] += event == "done"
            self.progress(event, {**info, "worker": worker.label})
        elif kind == "finished" and worker.group == message[2] and message[3] is None:
            self.dispatch.hand_back(worker.group)
            self._assign(worker)
        elif kind == "finished" and worker.group == message[2]:
            for _ in range(len(self.groups[worker.group]) - reported[worker.group]
                           if self.progress else 0):   # stored by a dead worker
                self.progress("done", {"accuracy": None})
            self.dispatch.finished(worker.group, time.monotonic() - worker.assigned,
                                   message[3])
            self._assign(worker)
        elif kind == "error":
            name, text, trace = message[2:5]
            raise error_from_worker(name, text, trace, worker.label)

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
        where = f"{describe_group(self.groups[group])} on {worker.label}"
        if attempts[group] > self.max_retries:
            raise MadbenchError(f"a worker died {attempts[group]} times training {where} "
                                f"(exit code {worker.process.exitcode}); the runs stored "
                                "so far are kept: re-run to resume")
        warn(f"a worker died (exit code {worker.process.exitcode}) training {where}; "
             "retrying the group in a new worker")
        self.dispatch.retry(group)
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
