"""Memorization (paper §3.1.6): a fixed key-to-value table, the "facts", shared by every
sequence; values never appear in the inputs, so the table has to be stored in the weights.

Inputs: L/2 keys, uniform with replacement, each followed by the insert token. Target at each
insert token: the value of the key before it (no shift); keys are not scored. The fact table pairs
the (V-1)//2 keys with as many distinct value tokens drawn at random (one value token stays
unused when V-1 is odd); it is fixed per (setting, seed) and shared by train and test.
"""
from __future__ import annotations

from types import MappingProxyType
from typing import Any, Mapping

import numpy as np

from madbench.tasks import IGNORE, Task


def fact_table(rng: np.random.Generator, vocab_size: int) -> np.ndarray:
    """value_of[key]: a random injection of keys [0, K) into values [K, V-1), K = (V-1)//2."""
    num_keys = (vocab_size - 1) // 2
    table = num_keys + rng.permutation(vocab_size - 1 - num_keys)[:num_keys]
    table.setflags(write=False)
    return table


def memorization_sequences(rng: np.random.Generator, num: int, seq_len: int, vocab_size: int,
                           facts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Keys [0, K), values [K, V-1), insert V-1. Returns (inputs, targets), int64 [num, L]."""
    if seq_len % 2:
        raise ValueError(f"seq_len must be even, not {seq_len}")
    keys = rng.integers(0, len(facts), (num, seq_len // 2))
    inputs = np.empty((num, seq_len), dtype=np.int64)
    inputs[:, 0::2] = keys
    inputs[:, 1::2] = vocab_size - 1
    targets = np.full((num, seq_len), IGNORE, dtype=np.int64)
    targets[:, 1::2] = facts[keys]
    return inputs, targets


class Memorization(Task):
    name = "memorization"
    version = 1
    description = "Recall values from a fixed key-value table seen only in training."
    baseline = MappingProxyType({"vocab_size": 256, "seq_len": 32,
                                 "num_train_examples": 256, "num_test_examples": 1_280})
    changes = MappingProxyType({"vocab_size": (512, 1024, 2048, 4096, 8192)})

    def vocabulary(self, params: Mapping[str, Any]) -> dict[str, Any]:
        v = int(params["vocab_size"])
        return {"keys": [0, (v - 1) // 2], "values": [(v - 1) // 2, v - 1], "insert": v - 1}

    def shared(self, params, rng):
        return fact_table(rng, int(params["vocab_size"]))

    def sample(self, params, num, split, rng, shared=None):
        if shared is None:
            raise ValueError("memorization needs its fact table (Task.shared)")
        return memorization_sequences(rng, num, int(params["seq_len"]),
                                      int(params["vocab_size"]), shared)
