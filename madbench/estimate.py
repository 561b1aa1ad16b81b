"""How long a sweep will take, before it starts: the training tokens of every run not yet
stored (steps x batch x sequence length, from the protocol and each setting's sizes) times a
time per token measured on the device by a few training steps of the architecture at the
first pending setting's shape. A rough figure (longer sequences cost attention more per token,
compiled and batched engines less), printed so that nobody starts a day of CPU work unaware."""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Sequence

import torch

from .architecture import ArchitectureSpec
from .loop import epoch_plan
from .model import build_model
from .protocol import Protocol
from .sweep import Job
from .tasks import Setting
from .trainer import resolve_device, resolve_precision, train

#: protocols sized for a GPU: starting one on CPU warns
GPU_PROTOCOLS = ("paper", "mad-lab", "quick")
PROBE_STEPS = 3
PROBE_TOKENS = 2048
PROBE_SECONDS = 1.0


@dataclass(frozen=True)
class SweepEstimate:
    total: int                   #: runs of the sweep
    stored: int                  #: runs already in the run directory
    tokens: int                  #: training tokens of the runs to train
    seconds: float | None        #: estimated wall time (None when nothing is left to train)
    step_seconds: float | None   #: measured time of one training step of the probe shape
    probe_shape: tuple[int, int] | None   #: (batch, seq_len) of the probe
    device: str
    workers: int = 1

    @property
    def pending(self) -> int:
        return self.total - self.stored


def setting_tokens(setting: Setting, protocol: Protocol) -> int:
    """Training tokens of one run on ``setting`` (as trained, the protocol's caps applied):
    steps x batch x sequence length."""
    steps_per_epoch, epochs = epoch_plan(setting.num_train, protocol)
    return steps_per_epoch * epochs * protocol.batch_size * setting.seq_len


def run_tokens(job: Job, protocol: Protocol) -> int:
    """Training tokens of one run: steps x batch x sequence length."""
    return setting_tokens(job.effective, protocol)


def step_seconds(spec: ArchitectureSpec, job: Job, protocol: Protocol, device: torch.device,
                 precision: str, steps: int = PROBE_STEPS) -> float:
    """Seconds per training step of ``spec`` at ``job``'s shape, measured on at most
    ``PROBE_TOKENS`` tokens a step and scaled to the protocol's batch (random tokens, the plain
    trainer). One warm-up step first (the process's one-off start-up costs are not a run's),
    then ``steps`` timed ones, or one when the warm-up took over ``PROBE_SECONDS``."""
    eff = job.effective
    batch = max(1, min(protocol.batch_size, PROBE_TOKENS // eff.seq_len))
    probe = replace(protocol, epochs=1, min_steps=0, eval_every_epoch=False,
                    early_stop_accuracy=None, batch_size=batch)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        tokens = torch.randint(0, eff.vocab_size, (batch * steps, eff.seq_len), device=device)
        model = build_model(spec, eff.vocab_size, eff.seq_len, job.task.model).to(device)
        test = (tokens[:1], tokens[:1])

        def timed(n: int):
            data = tokens[:batch * n]
            return train(model, (data, data), test, eff.vocab_size, job.lr, job.weight_decay,
                         probe, 0, precision)

        warm = timed(1)
        result = timed(1 if warm.seconds > PROBE_SECONDS else steps)
    return result.seconds / max(result.steps, 1) * protocol.batch_size / batch


def estimate_sweep(spec: ArchitectureSpec, jobs: Sequence[Job], pending: Sequence[Job],
                   protocol: Protocol, device: str = "auto", precision: str = "auto",
                   workers: int = 1) -> SweepEstimate:
    """The runs left, their training tokens and, when any are left, the estimated time on
    ``device`` with ``precision``, both resolved here when Ray left them open (``auto``,
    ``cuda``; ``workers`` training in parallel)."""
    if device in ("auto", "cuda") or precision == "auto":     # as Ray leaves them
        resolved = resolve_device(device)
        device, precision = str(resolved), resolve_precision(resolved, precision)
    dev = torch.device(device)
    tokens = sum(run_tokens(job, protocol) for job in pending)
    if not pending:
        return SweepEstimate(len(jobs), len(jobs), 0, None, None, None, str(dev), workers)
    first = pending[0]
    eff = first.effective
    per_step = step_seconds(spec, first, protocol, dev, precision)
    per_token = per_step / (protocol.batch_size * eff.seq_len)
    return SweepEstimate(len(jobs), len(jobs) - len(pending), tokens,
                         tokens * per_token / max(workers, 1), per_step,
                         (protocol.batch_size, eff.seq_len), str(dev), workers)
