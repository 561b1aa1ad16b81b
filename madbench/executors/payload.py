"""Work shipped as plain data: what a worker process or a Ray task receives (the architecture and
protocol as dicts, job names and numbers), how a worker re-resolves and trains it, and how the
groups of a sweep are handed out (a group trained one run at a time is split into single runs)."""
from __future__ import annotations

import os
import sys
from typing import Any, Sequence

import torch

from .. import __version__, errors
from ..architecture import ArchitectureSpec
from ..code_identity import run_version
from ..errors import MadbenchError, UsageError
from ..estimate import SweepEstimate, estimate_sweep, run_tokens
from ..protocol import Protocol
from ..store import ResultsStore, run_key
from ..sweep import Job, ProgressFn, choose_engine, job_from_dict, train_claimed
from ..trainer import resolve_precision


def sweep_payload(spec: ArchitectureSpec, protocol: Protocol, run_dir: str | os.PathLike,
                  precision: str, checks: dict | None, engine: str) -> dict[str, Any]:
    """What every worker needs besides its jobs, as plain data, with the driver's hashes."""
    return {"spec": spec.to_dict(), "spec_flags": list(spec.flags), "arch_hash": spec.hash,
            "protocol": protocol.to_dict(), "protocol_hash": protocol.hash,
            "run_dir": os.path.realpath(run_dir), "precision": precision, "checks": checks,
            "engine": engine, "sys_path": list(sys.path), "madbench_version": __version__}


def _resolve_payload(payload: dict) -> tuple[ArchitectureSpec, Protocol]:
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
    return spec, protocol


def _shipped_jobs(spec: ArchitectureSpec, protocol: Protocol,
                  job_dicts: Sequence[dict]) -> list[Job]:
    """The jobs re-resolved here, each checked to have the driver's run key."""
    jobs = [job_from_dict(d, protocol) for d in job_dicts]
    for job in jobs:
        if run_key(spec.hash, job.effective.hash, protocol.hash, job.lr, job.weight_decay,
                   job.seed, run_version()) != job.key:
            raise MadbenchError(f"{job.task.name} {job.setting.name}: a worker generates "
                                "different data (another task version): install the same "
                                "plugins everywhere")
    return jobs


def estimate_shipped(payload: dict, job_dicts: Sequence[dict], device: str, workers: int,
                     devices: int) -> SweepEstimate:
    """The worker's side of an estimate: the shipped (pending) jobs' training time, probed on
    this worker's ``device`` (``total`` and ``stored`` count the shipped jobs only)."""
    spec, protocol = _resolve_payload(payload)
    jobs = _shipped_jobs(spec, protocol, job_dicts)
    return estimate_sweep(spec, jobs, jobs, protocol, device, payload["precision"], workers,
                          devices, payload["engine"])


def train_shipped_group(payload: dict, job_dicts: Sequence[dict], device: str,
                        progress: ProgressFn | None = None,
                        verdicts: dict | None = None, wait: bool = True) -> int | None:
    """The worker's side: re-resolve the group, skip the jobs already stored (by a worker that
    died), train the rest on ``device`` and store them. Returns how many were trained, or None
    when another process holds the group and ``wait`` is False."""
    spec, protocol = _resolve_payload(payload)
    jobs = _shipped_jobs(spec, protocol, job_dicts)
    store = ResultsStore(payload["run_dir"])
    if all(store.has(job.key) for job in jobs):
        return 0
    dev = torch.device(device)
    if dev.type == "cuda":
        if dev.index is None:
            dev = torch.device("cuda", torch.cuda.current_device())
        torch.cuda.set_device(dev)
    precision = resolve_precision(dev, payload["precision"])
    return train_claimed(spec, jobs, protocol, store, dev, precision, payload["checks"],
                         payload["engine"], progress, {} if verdicts is None else verdicts,
                         wait)


def handout_groups(groups: list[list[Job]], protocol: Protocol, engine: str, device: str
                   ) -> list[list[Job]]:
    """What an executor hands out, longest first: the groups, except that a group that
    ``device`` trains one run at a time anyway (``choose_engine`` says plain) is split into single
    runs, so that its runs train in parallel (each such run generates its data again; cheap)."""
    dev = torch.device(device)
    handed = [part for group in groups for part in
              ([group] if choose_engine(engine, protocol, dev) != "plain"
               else [[job] for job in group])]
    # longest first: with few groups of unequal length (the long-sequence settings dominate),
    # handing out the long ones first keeps a GPU from finishing alone on the last long group
    return sorted(handed, key=lambda group: -group_cost(group, protocol))


def group_cost(group: Sequence[Job], protocol: Protocol) -> int:
    """Training tokens of a group as handed out, a proxy for its time: runs x steps x batch
    x seq_len."""
    return len(group) * run_tokens(group[0], protocol)


def describe_group(group: Sequence[Job]) -> str:
    job = group[0]
    run = f" lr {job.lr} wd {job.weight_decay}" if len(group) == 1 else ""
    return f"{job.task.name} {job.setting.name} seed {job.seed}{run}"


def error_from_worker(name: str, message: str, trace: str, where: str) -> MadbenchError:
    """A worker's exception, as the madbench error it was, or a MadbenchError naming it (its
    traceback printed to stderr)."""
    cls = getattr(errors, name, None)
    if isinstance(cls, type) and issubclass(cls, MadbenchError):
        return cls(message)
    print(trace, file=sys.stderr)
    return MadbenchError(f"a worker on {where} failed: {name}: {message}".splitlines()[0])
