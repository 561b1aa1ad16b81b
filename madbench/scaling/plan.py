"""Scaling-run plans: the runs of a family at fixed FLOP budgets, each fully determined before
it trains (``plan_runs``: a :class:`RunPlan` per budget and size), and ``scaling run``'s
causality check on them (``check_causal``).

For each budget C and model size (family, width, depth), a run takes
``steps = round(C / (F B L))`` steps of ``B`` sequences of ``L`` tokens, where ``F`` is the
analytic training FLOPs per token (``flops.py``: 3 x forward, embeddings in). The run's FLOPs
are ``F x tokens`` (within one step of the budget; both are recorded). Peak learning rate and
batch size are either the :class:`Recipe`'s or set per run by the paper's tables
(``recipe.py``: lr by model size, batch by budget). Parameters are counted on a model built on
the meta device (``model_skeleton``).
"""
from __future__ import annotations

from dataclasses import dataclass
from dataclasses import replace as dc_replace
from typing import Callable, Iterable, Sequence

import torch

from .. import __version__
from ..accounting import count_params
from ..architecture import ArchitectureSpec
from ..errors import UsageError
from ..hashing import content_hash
from ..model import LanguageModel
from .flops import architecture_flops
from .shapes import LADDER, Family, family_spec

VOCAB_SIZE = 256


@dataclass(frozen=True)
class Recipe:
    """Everything about training that is not the model or the budget."""

    seq_len: int = 256
    batch_size: int = 32
    lr: float = 1e-3
    betas: tuple[float, float] = (0.9, 0.95)
    weight_decay: float = 0.1
    warmup_fraction: float = 0.01
    final_lr_fraction: float = 0.1
    grad_clip: float = 1.0
    eval_tokens: int = 65536
    seed: int = 0

    def to_dict(self) -> dict:
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in self.__dict__.items()}


@dataclass(frozen=True)
class RunPlan:
    """One scaling run, fully determined."""

    family: str
    width: int
    depth: int
    budget: float
    spec: ArchitectureSpec
    recipe: Recipe
    training_flops_per_token: float
    flop_method: str
    steps: int
    corpus_sha256: str
    non_embedding_params: int
    vocab_size: int = VOCAB_SIZE
    lr_rule: str = "fixed"       #: "fixed" or "paper-size-table"
    batch_rule: str = "fixed"    #: "fixed" or "paper-budget-table"

    @property
    def tokens(self) -> int:
        return self.steps * self.recipe.batch_size * self.recipe.seq_len

    @property
    def flops(self) -> float:
        return self.training_flops_per_token * self.tokens

    @property
    def key(self) -> str:
        return content_hash({"kind": "scaling-run", "arch": self.spec.hash,
                             "budget": self.budget, "steps": self.steps,
                             "recipe": self.recipe.to_dict(), "corpus": self.corpus_sha256,
                             "madbench": __version__}, length=24)


#: tokens per non-embedding parameter a ladder size must see at a budget to be run (around the
#: compute-optimal ~20)
TOKENS_PER_PARAM: tuple[float, float] = (1.0, 1000.0)

LrRule = Callable[[float], float]                 #: total params -> peak learning rate
BatchRule = Callable[[float, float, int], int]     #: (budget, total params, seq_len) -> batch


def plan_runs(family: str | Family, budgets: Sequence[float],
              sizes: Sequence[tuple[int, int]] | None, recipe: Recipe, corpus_sha256: str,
              min_steps: int = 20, tokens_per_param: tuple[float, float] = TOKENS_PER_PARAM,
              vocab_size: int = VOCAB_SIZE, lr_rule: LrRule | None = None,
              batch_rule: BatchRule | None = None) -> list[RunPlan]:
    """The runs of one family: every (budget, size) pair. Without ``sizes``, the ladder sizes
    whose run would take at least ``min_steps`` steps and see between ``tokens_per_param``
    tokens per non-embedding parameter (around the compute-optimal ~20). ``lr_rule`` and
    ``batch_rule`` (``recipe.py``) set the peak learning rate per size and the batch per
    budget instead of the recipe's fixed ones."""
    name = family.name if isinstance(family, Family) else family
    for budget in budgets:
        if budget <= 0:
            raise UsageError(f"budgets must be positive, got {budget:g}")
    shapes = []                     # per size, once: the spec, its FLOPs and its parameters
    for width, depth in (sizes or LADDER):
        spec = family_spec(family, width, depth)
        shapes.append((width, depth, spec, architecture_flops(spec, recipe.seq_len, vocab_size),
                       non_embedding_params(spec),
                       count_params(model_skeleton(spec, vocab_size))))
    rules = {"lr_rule": "paper-size-table" if lr_rule else "fixed",
             "batch_rule": "paper-budget-table" if batch_rule else "fixed"}
    plans = []
    for budget in budgets:
        for width, depth, spec, fl, n, total in shapes:
            run_recipe = recipe
            if lr_rule:
                run_recipe = dc_replace(run_recipe, lr=float(lr_rule(total)))
            if batch_rule:
                run_recipe = dc_replace(run_recipe, batch_size=int(
                    batch_rule(budget, total, recipe.seq_len)))
            per_step = fl.training_per_token * run_recipe.batch_size * recipe.seq_len
            steps = max(1, round(budget / per_step))
            plan = RunPlan(name, width, depth, float(budget), spec, run_recipe,
                           fl.training_per_token, fl.method, steps, corpus_sha256, n,
                           vocab_size, **rules)
            if sizes is None:
                ratio = plan.tokens / n
                if steps < min_steps or not tokens_per_param[0] <= ratio <= tokens_per_param[1]:
                    continue
            plans.append(plan)
    return plans


def check_causal(specs: Iterable[ArchitectureSpec], lengths: Iterable[int]) -> None:
    """``madbench eval``'s causality gate (``verdict.causality_gate``: every layer builds, is
    causal and keeps the mixer contract at 32 tokens and each of ``lengths``) on the smallest
    of ``specs`` (width, then depth) with each set of mixers and their kwargs other than
    integers (sizes, which vary with width); raises CheckFailed (UsageError:
    a layer cannot be built). Only that part of eval's verdict: a scaling family's state and
    parameters change with its size on purpose, so iso-state and the parameter ratio do not
    apply. A layer that leaks only at larger widths is not caught."""
    from ..verdict import GUARD_LENGTH, causality_gate
    smallest: dict[frozenset, ArchitectureSpec] = {}
    for spec in specs:      # integer kwargs are sizes (heads, widths); any other is a switch
        mixers = frozenset((layer.mixer, *sorted(
            (k, repr(v)) for k, v in layer.kwargs.items()
            if isinstance(v, bool) or not isinstance(v, int))) for layer in spec.layers)
        other = smallest.get(mixers)
        if other is None or (spec.dim, len(spec.layers)) < (other.dim, len(other.layers)):
            smallest[mixers] = spec
    for spec in smallest.values():
        causality_gate(spec, {GUARD_LENGTH, *lengths})


def model_skeleton(spec: ArchitectureSpec, vocab_size: int = VOCAB_SIZE) -> LanguageModel:
    """The language model built on the meta device (no memory, no initialisation), or on the
    CPU for a mixer whose constructor needs real tensors."""
    try:
        with torch.device("meta"):
            return LanguageModel(spec, vocab_size)
    except Exception:  # noqa: BLE001 - e.g. a constructor that reads tensor values
        with torch.random.fork_rng(devices=[]):
            return LanguageModel(spec, vocab_size)


def non_embedding_params(spec: ArchitectureSpec) -> int:
    """Parameters of the residual blocks."""
    return count_params(model_skeleton(spec).encoder.blocks)
