"""Scaling runs: a planned run (``plan.py``) trained (``train_run``), and the runs of a run
directory driven (``run_plans``).

A run trains ``madbench.model.LanguageModel`` (the corpus's vocabulary: 256 for bytes) for its
planned steps of ``B`` sequences of ``L`` tokens. The paper's recipe (App. C.1): AdamW, betas
(0.9, 0.95), weight decay 0.1 on matrices except in Hyena layers (0 there), no dropout, cosine
schedule with 1% linear warm-up decaying to 10% of the peak learning rate (``recipe_lr_at``);
bf16 on CUDA (the Hyena and Mamba recurrences run in fp32 inside the layers), fp32 on CPU.
Gradients are clipped at norm 1 (madbench's choice, not the paper's).

The loss of a run is the mean cross-entropy in nats per token (per byte for byte corpora) on
the validation split (a fixed set of windows, ``eval_tokens`` tokens), after training.

Records go to ``RUN_DIR/records/`` through :class:`madbench.store.ResultsStore` (one Parquet
file per run, keyed by a content hash), so an interrupted ``madbench scaling run`` resumes, and
processes sharing the directory split its runs (a claim per run, ``madbench.claims``);
``RUN_DIR/isoflop.parquet`` is rewritten after every run with all of them as one table
(``table.export_table``; ``table.py`` reads and shapes it).
"""
from __future__ import annotations

import datetime as dt
import math
import time
from typing import Any, Callable, Iterable, Sequence

import numpy as np
import torch
from torch import nn

from .. import __version__
from ..accounting import count_params, layer_state
from ..architecture import ArchitectureSpec, mixer_kind
from ..claims import HELD, claim, contend
from ..cuda_graphs import (CaptureError, adamw, capture_enabled, capture_step,
                           warn_uncapturable)
from ..errors import UsageError
from ..loop import Engine, train_epochs
from ..model import LanguageModel
from ..provenance import provenance
from ..store import ResultsStore
from ..time_limit import TimeLimit
from ..trainer import autocast, parameter_groups, resolve_device, resolve_precision
from .corpus import Corpus
from .plan import VOCAB_SIZE, RunPlan
from .shapes import attention_fraction
from .table import export_table

STATE_SEQ_LEN = 8192   #: the paper measures state at sequence length 8k (Finding 8)


# -- training --------------------------------------------------------------------------------
def recipe_lr_at(step: int, total: int, peak: float, warmup_fraction: float = 0.01,
          final_fraction: float = 0.1) -> float:
    """Linear warm-up over ``warmup_fraction`` of the steps (at least one), then cosine decay
    from ``peak`` to ``final_fraction * peak`` at the last step."""
    warmup = max(1, round(warmup_fraction * total))
    if step < warmup:
        return peak * (step + 1) / warmup
    span = max(1, total - 1 - warmup)
    progress = min(1.0, (step - warmup) / span)
    floor = final_fraction * peak
    return floor + (peak - floor) * 0.5 * (1.0 + math.cos(math.pi * progress))


def recipe_parameter_groups(model: LanguageModel, spec: ArchitectureSpec,
                     weight_decay: float) -> list[dict]:
    """Decay on matrices outside Hyena layers (the paper exempts Hyena layers), none on
    vectors or parameters marked ``_no_weight_decay``."""
    exempt = frozenset(id(p) for layer, block in zip(spec.layers, model.encoder.blocks)
                       if "hyena" in layer.mixer for p in block.parameters())
    return parameter_groups(model, weight_decay, "matrices", exempt)


def _windows(data: torch.Tensor, starts: torch.Tensor, length: int):
    idx = starts[:, None] + torch.arange(length + 1, device=data.device)[None, :]
    chunk = data[idx].long()
    return chunk[:, :-1], chunk[:, 1:]


@torch.no_grad()
def validation_loss(model: nn.Module, val: torch.Tensor, seq_len: int, batch_size: int,
                    eval_tokens: int, autocast, vocab_size: int = VOCAB_SIZE) -> float:
    """Mean cross-entropy (nats per token) over the first ``eval_tokens // seq_len``
    non-overlapping windows of the validation split."""
    count = min(max(1, eval_tokens // seq_len), (val.numel() - 1) // seq_len)
    if count < 1:
        raise UsageError(f"the validation split ({val.numel()} bytes) is shorter than one "
                         f"sequence of {seq_len + 1}")
    starts = torch.arange(count, device=val.device) * seq_len
    model.eval()
    total, n = 0.0, 0
    for i in range(0, count, batch_size):
        x, y = _windows(val, starts[i:i + batch_size], seq_len)
        with autocast():
            logits = model(x)
        total += float(nn.functional.cross_entropy(logits.float().reshape(-1, vocab_size),
                                                   y.reshape(-1), reduction="sum"))
        n += y.numel()
    model.train()
    return total / n


def _autocast_factory(device: torch.device, precision: str):
    return lambda: autocast(device, precision)


class _Engine(Engine):
    """The step of one scaling run: ``batch_size`` random windows of the training split,
    forward, cross-entropy, backward, gradient clipping, AdamW; captured in a CUDA graph when
    ``capture`` (``madbench.cuda_graphs``), the window starts then read from a static buffer.
    Its evaluation is the validation loss. A run is never judged diverged mid-way: it always
    trains its planned steps (its tokens and FLOPs are the plan's)."""

    def __init__(self, plan: RunPlan, train: torch.Tensor, val: torch.Tensor,
                 device: torch.device, precision: str, capture: bool):
        r = self.recipe = plan.recipe
        self.plan, self.train_split, self.val = plan, train, val
        torch.manual_seed(r.seed)
        self.model = model = LanguageModel(plan.spec, plan.vocab_size).to(device)
        self.opt, self.set_lr = adamw(recipe_parameter_groups(model, plan.spec, r.weight_decay),
                                      r.lr, r.betas, 1e-8, device, capture)
        self.lrs = [recipe_lr_at(i, plan.steps, r.lr, r.warmup_fraction, r.final_lr_fraction)
                    for i in range(plan.steps)]
        self.autocast = _autocast_factory(device, precision)
        self.starts = torch.zeros(r.batch_size, dtype=torch.long, device=device)
        self.loss_sum = torch.zeros((), device=device)
        self.capture = capture
        self.graph = None
        if capture:
            self.graph = capture_step(self._step, [*model.parameters(), self.loss_sum],
                                      torch.cuda.Stream(device), optimizer=self.opt)

    def _step(self) -> None:
        r, model = self.recipe, self.model
        x, y = _windows(self.train_split, self.starts, r.seq_len)
        with self.autocast():
            logits = model(x)
        loss = nn.functional.cross_entropy(logits.float().reshape(-1, self.plan.vocab_size),
                                           y.reshape(-1))
        if not self.capture:
            self.opt.zero_grad(set_to_none=True)
        loss.backward()
        if r.grad_clip:
            nn.utils.clip_grad_norm_(model.parameters(), r.grad_clip)
        self.opt.step()
        self.loss_sum.add_(loss.detach())

    def start_epoch(self, live: list[int]) -> None:
        self.loss_sum.zero_()

    def step(self, starts: torch.Tensor, step: int, live: list[int]) -> None:
        self.set_lr(self.lrs[step])
        self.starts.copy_(starts)
        if self.graph is None:
            self._step()
        else:
            self.graph.replay()

    def end_epoch(self, live: list[int], steps: int) -> list[tuple[float, bool]]:
        return [(float(self.loss_sum) / steps, False)]          # one host sync per report

    def evaluate(self, runs: list[int]) -> list[dict]:
        r = self.recipe
        return [{"loss": validation_loss(self.model, self.val, r.seq_len, r.batch_size,
                                         r.eval_tokens, self.autocast, self.plan.vocab_size)}]


def random_windows(train: torch.Tensor, plan: RunPlan, every: int,
                   device: torch.device) -> Callable[[int], Iterable[torch.Tensor]]:
    """The batches of a scaling run in periods of ``every`` steps (the last may be shorter):
    each step ``batch_size`` window starts drawn uniformly from the training split by one
    generator seeded with the recipe's seed."""
    r = plan.recipe
    gen = torch.Generator(device=device).manual_seed(r.seed)

    def period(index: int):
        for _ in range(min(every, plan.steps - index * every)):
            yield torch.randint(0, train.numel() - r.seq_len - 1, (r.batch_size,),
                                generator=gen, device=device)
    return period


#: specs whose step failed to capture in this process: later runs skip the attempt
_UNCAPTURABLE: set[str] = set()


def run_engine(plan: RunPlan, train: torch.Tensor, val: torch.Tensor, device: torch.device,
               precision: str, capture: bool | None = None) -> _Engine:
    """The engine that trains ``plan``: its step captured in a CUDA graph where ``train_run``
    would capture it; a step that cannot be captured warns once and trains eagerly."""
    capture = capture_enabled(device, capture) and plan.spec.hash not in _UNCAPTURABLE
    try:
        return _Engine(plan, train, val, device, precision, capture)
    except CaptureError as exc:     # e.g. a layer that reads a count back on the host
        warn_uncapturable(plan.family, exc)
        _UNCAPTURABLE.add(plan.spec.hash)
        return _Engine(plan, train, val, device, precision, False)


def train_run(plan: RunPlan, train: torch.Tensor, val: torch.Tensor, device: torch.device,
              precision: str = "fp32",
              on_step: Callable[[int, int, float], None] | None = None,
              capture: bool | None = None) -> dict[str, Any]:
    """Train one planned run; returns the model's counts and the losses.

    On CUDA the step is captured in a CUDA graph (``madbench.cuda_graphs``) unless
    ``capture=False`` or MADBENCH_CUDA_GRAPHS=0, or the step cannot be captured (a warning
    says so); it computes the same step either way. The
    training loss is read (and ``on_step`` called) every ``steps // 50`` steps and at the
    last."""
    r = plan.recipe
    if train.numel() <= r.seq_len + 1:
        raise UsageError(f"the training split ({train.numel()} bytes) is shorter than one "
                         f"sequence of {r.seq_len + 1}")
    engine = run_engine(plan, train, val, device, precision, capture)
    every = max(1, plan.steps // 50)

    def on_period(period, periods, loss):
        if on_step:
            on_step(min(period * every, plan.steps), plan.steps, loss)

    start = time.perf_counter()
    (run,), training = train_epochs(engine, random_windows(train, plan, every, device),
                                    -(-plan.steps // every), on_epoch=on_period)
    train_loss = run.epoch_loss
    val_loss = engine.evaluate([0])[0]["loss"]
    seconds = time.perf_counter() - start
    model = engine.model
    fixed = dynamic = dynamic_8k = 0
    for layer, block in zip(plan.spec.layers, model.encoder.blocks):
        kind = mixer_kind(layer.mixer)
        at_len = layer_state(block.mixer, kind, r.seq_len)
        at_8k = layer_state(block.mixer, kind, STATE_SEQ_LEN)
        fixed += at_len["fixed_state"] or 0
        dynamic += at_len["dynamic_state"] or 0
        dynamic_8k += at_8k["dynamic_state"] or 0
    return {"params": count_params(model),
            "non_embedding_params": count_params(model.encoder.blocks),
            "loss": val_loss, "bits_per_token": val_loss / math.log(2),
            "train_loss": train_loss, "diverged": not math.isfinite(train_loss),
            "fixed_state": fixed, "dynamic_state": dynamic,
            "total_state_8k": fixed + dynamic_8k, "seconds": seconds,
            "training_seconds": training}


# -- driving ---------------------------------------------------------------------------------
ProgressFn = Callable[[str, dict[str, Any]], None]


def record_for(plan: RunPlan, corpus: Corpus, result: dict, device: torch.device,
               precision: str, provenance: dict) -> dict[str, Any]:
    r = plan.recipe
    return {
        "run_key": plan.key, "kind": "scaling", "arch": plan.family,
        "arch_name": plan.spec.name, "arch_hash": plan.spec.hash, "width": plan.width,
        "depth": plan.depth, "attention_fraction": attention_fraction(plan.spec),
        "budget": plan.budget, "flops": plan.flops, "tokens": plan.tokens,
        "steps": plan.steps, "training_flops_per_token": plan.training_flops_per_token,
        "flop_method": plan.flop_method, **result,
        "bits_per_byte": result["bits_per_token"] if corpus.unit == "byte" else None,
        "seq_len": r.seq_len, "batch_size": r.batch_size, "lr": r.lr, "seed": r.seed,
        "lr_rule": plan.lr_rule, "batch_rule": plan.batch_rule, "grad_clip": r.grad_clip,
        "corpus": corpus.name, "corpus_sha256": corpus.sha256, "vocab_size": plan.vocab_size,
        "corpus_unit": corpus.unit,
        "device": str(device), "precision": precision, "madbench_version": __version__,
        "created_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "architecture": plan.spec.to_dict(), "protocol": r.to_dict(),
        "provenance": provenance,
    }


def run_plans(plans: Sequence[RunPlan], corpus: Corpus, store: ResultsStore,
              device: str = "auto", precision: str = "auto",
              progress: ProgressFn | None = None, time_limit: TimeLimit | None = None) -> int:
    """Train every plan not yet in ``store`` (``pending_plans``); returns how many were
    trained. Rewrites ``isoflop.parquet`` beside the records after each run. Each run is
    trained holding its claim (``madbench.claims``): processes sharing a run directory train
    each run once, a run another process holds is left for the end and then waited for. With
    ``time_limit`` (its estimate taking a plan: ``madbench.scaling.estimate``), a run that
    would not finish in time is not started, later shorter ones may be, a run another process
    holds is waited for only while it would still fit (``claims.contend``), and
    ``TimeLimitReached`` says how many are left."""
    dev = resolve_device(device)
    precision = resolve_precision(dev, precision)
    todo = pending_plans(plans, store)
    if progress:
        progress("start", {"total": len(plans), "done": len(plans) - len(todo)})
    if not todo:
        return 0
    mismatch = [p for p in todo if p.vocab_size != corpus.vocab_size]
    if mismatch:
        raise UsageError(f"runs planned for a vocabulary of {mismatch[0].vocab_size}, corpus "
                         f"{corpus.name!r} has {corpus.vocab_size}")
    train_np, val_np = (a if a.dtype == np.uint8 else a.astype(np.int32)
                        for a in corpus.splits())
    longest = max(p.recipe.seq_len for p in todo)     # checked before any run trains
    for split, size in (("training", train_np.size), ("validation", val_np.size)):
        if size < longest + 2 - (split == "validation"):
            raise UsageError(f"corpus {corpus.name!r}: its {split} split ({size:,} tokens) is "
                             f"shorter than one sequence of {longest + 1}; give a larger "
                             "corpus or a shorter --seq-len")
    train = torch.from_numpy(train_np).to(dev)
    val = torch.from_numpy(val_np).to(dev)
    prov = provenance(dev)

    def on_step(step, steps, loss):
        if progress:
            progress("step", {"step": step, "steps": steps, "loss": loss})

    def attempt(plan: RunPlan, wait: bool):
        """Train ``plan`` holding its claim: "trained"; "stored" by another process; ``HELD``
        by another process (``wait`` False); "late": it would not finish in time."""
        with claim(store.root, f"scaling-{plan.key}", wait) as free:
            if not free:
                return HELD
            if store.has(plan.key):
                if progress:
                    progress("done", {"plan": plan, "loss": None})
                return "stored"
            if time_limit is not None and not time_limit.fits(plan):
                return "late"
            if progress:
                progress("run", {"plan": plan})
            started = time.monotonic()
            result = train_run(plan, train, val, dev, precision, on_step)
            store.append(record_for(plan, corpus, result, dev, precision, prov))
            with claim(store.root, "isoflop-table"):     # the last writer reads every record
                export_table(store, store.root / "isoflop.parquet")
        if time_limit is not None:
            time_limit.trained(plan, time.monotonic() - started, result["training_seconds"])
        if progress:
            progress("done", {"plan": plan, "loss": result["loss"]})
        return "trained"

    outcomes = contend(todo, attempt, time_limit)
    left = [plan for plan in todo if not store.has(plan.key)]
    if left and time_limit is not None:
        raise time_limit.stopped(left, len(left), len(plans), "run", store.root,
                                 held=len(time_limit.held))
    return outcomes.count("trained")


def pending_plans(plans: Sequence[RunPlan], store: ResultsStore,
                  heal: bool = True) -> list[RunPlan]:
    """The plans not yet stored, in order; the store healed first (an unreadable record moved
    aside, so that its run counts as not stored, as for a sweep). Without ``heal`` nothing is
    changed and an unreadable record counts as not stored."""
    missing = store.missing([plan.key for plan in plans], heal)
    return [plan for plan in plans if plan.key in missing]
