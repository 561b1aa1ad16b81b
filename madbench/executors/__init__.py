"""Executors: where the groups of a sweep are trained.

- ``LocalExecutor``: in this process on CPU or on one GPU; with several visible GPUs, one worker
  process per GPU (``runs_per_gpu`` per GPU), each fed one group at a time by the driver.
- ``RayExecutor``: each group is a Ray task holding ``1/runs_per_gpu`` of a GPU, retried when its
  worker dies.
- ``payload``: what both ship to a worker, as plain data, and the worker's side.

A group (one setting and seed, see ``madbench.sweep.pending_groups``) is what an executor
hands out; a group that is trained one run at a time anyway is handed out as single runs. Workers receive
plain data (job names and numbers, the architecture and protocol as dicts), re-resolve tasks
and mixers from their own plugins, check that they compute the same run keys as the driver,
and write every record through the ResultsStore themselves. Records are atomic
and keyed by run, so a retried group skips what its dead predecessor stored and nothing is lost
or duplicated. Progress is reported to the driver.
"""
from __future__ import annotations

from ..errors import UsageError
from .local import LocalExecutor, local_devices
from .payload import group_cost, handout_groups, sweep_payload, train_shipped_group
from .ray import RayExecutor, _check_reachable

EXECUTORS = ("local", "ray")


def make_executor(name: str, ray_address: str | None = None, runs_per_gpu: int = 1,
                  dry_run: bool = False):
    """The executor the CLI names: ``local`` or ``ray`` (for a dry run: one whose estimate
    starts no Ray instance)."""
    if name == "local":
        if ray_address:
            raise UsageError("--ray-address needs --executor ray")
        return LocalExecutor(runs_per_gpu)
    if name == "ray":
        return RayExecutor(ray_address, runs_per_gpu, estimate_starts_ray=not dry_run)
    raise UsageError(f"unknown executor {name!r} (choose from: {', '.join(EXECUTORS)})")


__all__ = ["EXECUTORS", "LocalExecutor", "RayExecutor", "local_devices", "make_executor",
           "sweep_payload", "train_shipped_group", "group_cost", "handout_groups",
           "_check_reachable"]
