"""Models built to be inspected (counted by ``madbench.accounting``, checked by
``madbench.checks``), not trained: initialised from a fixed seed, the caller's random state
left untouched, so that two inspections of one architecture see the same weights."""
from __future__ import annotations

import torch

from .architecture import ArchitectureSpec
from .model import LanguageModel

INIT_SEED = 0


def build_language_model(spec: ArchitectureSpec, vocab_size: int,
                         seq_len: int | None = None) -> LanguageModel:
    """The language model of ``spec`` (mixers that take a ``max_length`` get ``seq_len``),
    initialised from ``INIT_SEED``."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(INIT_SEED)
        return LanguageModel(spec, vocab_size, seq_len)
