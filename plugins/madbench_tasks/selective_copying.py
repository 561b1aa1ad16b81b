"""Selective copying (paper §3.1.4): copy the data tokens scattered among blanks, in order, at
the insert tokens that close the sequence.

Layout of one sequence of L tokens with n tokens to copy: n data tokens with L - 2n blanks
inserted among them, then n insert tokens. The target at insert token i is data token i (no
shift); nothing else is scored. Each blank goes before a data token chosen uniformly (mad-lab's
``np.insert`` scheme, so the last data token is never followed by a blank), drawn from the
split's own stream instead of NumPy's global RNG.
"""
from __future__ import annotations

from types import MappingProxyType
from typing import Any, Mapping

import numpy as np

from madbench.tasks import IGNORE, Task


def selective_copying_sequences(rng: np.random.Generator, num: int, seq_len: int,
                                vocab_size: int, num_tokens_to_copy: int
                                ) -> tuple[np.ndarray, np.ndarray]:
    """Data tokens [0, V-2), blank V-2, insert V-1. Returns (inputs, targets), int64 [num, L]."""
    n, blank, insert = num_tokens_to_copy, vocab_size - 2, vocab_size - 1
    num_blanks = seq_len - 2 * n
    if n < 1 or num_blanks < 1:
        raise ValueError(f"need 1 <= num_tokens_to_copy < seq_len / 2, got {n} and {seq_len}")
    if blank < 1:
        raise ValueError(f"vocab_size {vocab_size} leaves no data tokens")
    data = rng.integers(0, blank, (num, n))
    blanks_before = rng.multinomial(num_blanks, np.full(n, 1.0 / n), size=num)
    position = np.arange(n) + np.cumsum(blanks_before, axis=1)
    inputs = np.full((num, seq_len), blank, dtype=np.int64)
    np.put_along_axis(inputs, position, data, axis=1)
    inputs[:, seq_len - n:] = insert
    targets = np.full((num, seq_len), IGNORE, dtype=np.int64)
    targets[:, seq_len - n:] = data
    return inputs, targets


class SelectiveCopying(Task):
    name = "selective-copying"
    version = 1
    description = "Copy the data tokens scattered among blanks, in order, at the insert tokens."
    baseline = MappingProxyType({"vocab_size": 16, "seq_len": 256, "num_tokens_to_copy": 16,
                                 "num_train_examples": 12_800, "num_test_examples": 1_280})
    changes = MappingProxyType({"vocab_size": (32, 64, 128),
                                "seq_len": (512, 1024),
                                "num_train_examples": (6400, 3200, 1600, 800),
                                "num_tokens_to_copy": (32, 64, 96)})

    def vocabulary(self, params: Mapping[str, Any]) -> dict[str, Any]:
        v = int(params["vocab_size"])
        return {"data": [0, v - 2], "blank": v - 2, "insert": v - 1}

    def sample(self, params, num, split, rng, shared=None):
        return selective_copying_sequences(rng, num, int(params["seq_len"]),
                                           int(params["vocab_size"]),
                                           int(params["num_tokens_to_copy"]))
