"""How long a sweep will take, before it starts: the training steps of every run not yet
stored (from the protocol and each setting's sizes) times a time per step measured on the
device, with the engine the sweep will use (on CUDA the graphed engine, its configurations
side by side), at the shortest, the middle and the longest of the lengths the pending runs'
models read, and taken piecewise linear in length between them (a step is not linear in
tokens: at L 32 fixed costs dominate it). The probe times two step counts and takes the
difference, so start-up, capture and evaluation costs drop out. A rough figure, printed so
that nobody starts a day of CPU work unaware. Workers that share one device are not counted
as faster together."""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Callable, Sequence

import numpy as np
import torch

from .architecture import ArchitectureSpec
from .errors import MadbenchError, add_note
from .loop import epoch_plan
from .model import build_model
from .protocol import Protocol
from .sweep import Job, choose_engine, group_jobs
from .tasks import Setting, model_length
from .trainer import resolve_device, resolve_precision, train

#: protocols sized for a GPU: starting one on CPU warns
GPU_PROTOCOLS = ("paper", "mad-lab", "quick")
PROBE_STEPS = 4
PROBE_TOKENS = 2048          #: tokens per probe step on CPU (a GPU probes the protocol's batch)
PROBE_SECONDS = 1.0


@dataclass(frozen=True)
class SweepEstimate:
    total: int                   #: runs of the sweep
    stored: int                  #: runs already in the run directory
    tokens: int                  #: training tokens of the runs to train
    seconds: float | None        #: estimated wall time (None when nothing is left to train)
    #: (length the model reads, measured seconds per training step of one run at the protocol's
    #: batch), shortest first: one probe per distinct length, at most three (the pending runs'
    #: shortest, middle and longest)
    probes: tuple[tuple[int, float], ...]
    batch: int | None            #: the protocol's batch (sequences per step)
    device: str
    workers: int = 1             #: processes training at once
    devices: int = 1             #: distinct devices they train on (what the time is divided by)
    #: Ray: probed on the driver for the local Ray instance that a dry run did not start
    local_stand_in: bool = False

    @property
    def pending(self) -> int:
        return self.total - self.stored


def setting_steps(setting: Setting, protocol: Protocol) -> int:
    """Training steps of one run on ``setting`` (as trained, the protocol's caps applied)."""
    steps_per_epoch, epochs = epoch_plan(setting.num_train, protocol)
    return steps_per_epoch * epochs


def setting_tokens(setting: Setting, protocol: Protocol) -> int:
    """Training tokens of one run on ``setting``: steps x batch x sequence length."""
    return setting_steps(setting, protocol) * protocol.batch_size * setting.seq_len


def seconds_at(length: int, probes: Sequence[tuple[int, float]]) -> float:
    """Seconds per step at ``length``: piecewise linear through the probes (shortest first)."""
    return float(np.interp(length, [p[0] for p in probes], [p[1] for p in probes]))


def group_seconds(group: Sequence[Job], protocol: Protocol,
                  probes: Sequence[tuple[int, float]]) -> float:
    """Estimated training seconds of one group (one setting and seed): its runs' steps times
    the probed seconds per run-step at the length its model reads."""
    first = group[0]
    return (setting_steps(first.effective, protocol) * len(group)
            * seconds_at(model_length(first.task, first.effective), probes))


def run_tokens(job: Job, protocol: Protocol) -> int:
    """Training tokens of one run: steps x batch x sequence length."""
    return setting_tokens(job.effective, protocol)


def costly_stops(pending: Sequence[Job], protocol: Protocol) -> list[str]:
    """The pending settings ("task setting") where a convergence stop
    (``early_stop_accuracy``) evaluates a test set of at least as many batches as an epoch has
    steps: evaluating every epoch may then cost more time than stopping saves (memorization
    under ``paper``: 1.4x the time, docs/protocol.md). Empty without a convergence stop."""
    if protocol.early_stop_accuracy is None or protocol.eval_every_epoch:
        return []
    names = []
    for job in pending:
        eff = job.effective
        steps, _ = epoch_plan(eff.num_train, protocol)
        name = f"{job.task.name} {eff.name}"
        if -(-eff.num_test // protocol.batch_size) >= steps and name not in names:
            names.append(name)
    return names


def step_seconds(spec: ArchitectureSpec, group: Sequence[Job], protocol: Protocol,
                 device: torch.device, precision: str, engine: str = "auto",
                 steps: int = PROBE_STEPS) -> float:
    """Seconds per training step of one run of ``group`` (one setting and seed), trained as
    the sweep will train it: ``engine`` chosen as ``run_group`` chooses it, the group's
    configurations together. Random tokens, as many per sequence as the model reads
    (in-context and noisy recall: seq_len - 1; some kernels are slower at odd lengths); on CPU
    at most ``PROBE_TOKENS`` a step, scaled to the protocol's batch. Seconds per step by
    ``differenced``, divided by the runs trained together. An engine that cannot train
    the probe is timed plain; ``compiled`` is timed as graphed (compiling for a probe would
    cost more than the probe measures)."""
    from .batched import train_batched
    from .graphed import train_graphed
    first = group[0]
    eff = first.effective
    length = model_length(first.task, eff)     # what the model reads (e.g. 127 of 128)
    batch = probe_batch(protocol.batch_size, length, device)
    probe = replace(protocol, epochs=1, min_steps=0, eval_every_epoch=False,
                    early_stop_accuracy=None, batch_size=batch)
    chosen = choose_engine(engine, probe, device)
    configs = [(job.lr, job.weight_decay) for job in group]
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(0)
        tokens = torch.randint(0, eff.vocab_size, (batch * (1 + steps), length),
                               device=device)
        test = (tokens[:1], tokens[:1])

        def make_model():
            return build_model(spec, eff.vocab_size, eff.seq_len, first.task.model)

        def timed(n: int, how: str) -> float:
            data = (tokens[:batch * n], tokens[:batch * n])
            if how == "plain":
                return train(make_model().to(device), data, test, eff.vocab_size, first.lr,
                             first.weight_decay, probe, 0, precision).seconds
            trainer = train_batched if how == "batched" else train_graphed
            return trainer(make_model, data, test, eff.vocab_size, configs, probe, 0,
                           precision)[0].seconds

        try:
            warm = timed(1, chosen)
        except Exception:  # noqa: BLE001 - the sweep falls back likewise; time the plain step
            chosen = "plain"
            try:
                warm = timed(1, chosen)
            except Exception as exc:  # noqa: BLE001 - named in the one-line error
                if not isinstance(exc, MadbenchError):
                    add_note(exc, f"while timing a training step of {first.task.name} "
                                  f"{eff.name} for the time estimate")
                raise
        per_step = differenced(lambda n: timed(n, chosen), steps, warm)
    together = 1 if chosen == "plain" else len(configs)
    return per_step / together * protocol.batch_size / batch


def probe_batch(batch: int, length: int, device: torch.device) -> int:
    """The batch a probe times: ``batch`` on a GPU; on CPU at most ``PROBE_TOKENS`` tokens of
    ``length`` (the caller scales the step back to ``batch``)."""
    return batch if device.type == "cuda" else max(1, min(batch, PROBE_TOKENS // length))


def differenced(timed: Callable[[int], float], steps: int = PROBE_STEPS,
                warm: float | None = None) -> float:
    """Seconds per step from ``timed(n)``, the seconds of a call that trains ``n`` steps: a
    warm-up call of one step (``warm``: its time, when the caller made it), then one step and
    ``1 + steps`` steps (when the warm-up took over ``PROBE_SECONDS``, it serves as the
    one-step call and the other takes two): their difference per step, so that start-up costs
    drop out; the whole longer call per step when noise outweighs the difference."""
    warm = timed(1) if warm is None else warm
    if warm > PROBE_SECONDS:         # a slow step: the warm-up serves as the one-step call
        one, more = warm, 1
    else:
        one, more = timed(1), steps
    many = timed(1 + more)
    per_step = max(many - one, 0.0) / more
    return per_step if per_step > 0.0 else many / (1 + more)


def estimate_sweep(spec: ArchitectureSpec, jobs: Sequence[Job], pending: Sequence[Job],
                   protocol: Protocol, device: str = "auto", precision: str = "auto",
                   workers: int = 1, devices: int = 1, engine: str = "auto") -> SweepEstimate:
    """The runs left, their training tokens and, when any are left, the estimated time on
    ``device`` with ``precision`` and ``engine``, both resolved here when Ray left them open
    (``auto``, ``cuda``); the time is divided by ``devices``, the distinct devices the
    ``workers`` train on."""
    if device in ("auto", "cuda") or precision == "auto":     # as Ray leaves them
        resolved = resolve_device(device)
        device, precision = str(resolved), resolve_precision(resolved, precision)
    dev = torch.device(device)
    tokens = sum(run_tokens(job, protocol) for job in pending)
    if not pending:
        return SweepEstimate(len(jobs), len(jobs), 0, None, (), None, str(dev), workers,
                             devices)
    groups = group_jobs(pending)             # pending order: the first group comes first
    lengths = [model_length(group[0].task, group[0].effective) for group in groups]
    distinct = sorted(set(lengths))
    picks = sorted({distinct[0], distinct[len(distinct) // 2], distinct[-1]})
    first_at = {length: groups[lengths.index(length)] for length in picks}
    probes = tuple((length, step_seconds(spec, group, protocol, dev, precision, engine))
                   for length, group in first_at.items())
    seconds = sum(group_seconds(group, protocol, probes) for group in groups)
    return SweepEstimate(len(jobs), len(jobs) - len(pending), tokens,
                         seconds / max(devices, 1), probes, protocol.batch_size, str(dev),
                         workers, devices)
