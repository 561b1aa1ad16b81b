"""Compression (paper §3.1.5): a random sequence closed by a compression token; the model's
output at that token alone must let a decoder reconstruct every token.

Inputs: L - 1 data tokens, uniform with replacement, then the compression token. Targets: the
data tokens themselves (no shift); the compression token's own position is not scored (mad-lab
scores it, though it is the same token in every sequence). Trained with the autoencoder backbone.
"""
from __future__ import annotations

from types import MappingProxyType
from typing import Any, Mapping

import numpy as np

from madbench.tasks import IGNORE, Task


def compression_sequences(rng: np.random.Generator, num: int, seq_len: int, vocab_size: int
                          ) -> tuple[np.ndarray, np.ndarray]:
    """Data tokens [0, V-1), compression token V-1. Returns (inputs, targets), int64 [num, L]."""
    if seq_len < 2 or vocab_size < 2:
        raise ValueError(f"need seq_len >= 2 and vocab_size >= 2, got {seq_len}, {vocab_size}")
    inputs = np.empty((num, seq_len), dtype=np.int64)
    inputs[:, :-1] = rng.integers(0, vocab_size - 1, (num, seq_len - 1))
    inputs[:, -1] = vocab_size - 1
    targets = inputs.copy()
    targets[:, -1] = IGNORE
    return inputs, targets


class Compression(Task):
    name = "compression"
    version = 1
    description = ("Compress a random sequence into the output at its last token; a decoder "
                   "reconstructs every token from it.")
    model = "autoencoder"
    baseline = MappingProxyType({"vocab_size": 16, "seq_len": 32,
                                 "num_train_examples": 12_800, "num_test_examples": 1_280})
    changes = MappingProxyType({"vocab_size": (32, 64, 128),
                                "seq_len": (64, 128, 256),
                                "num_train_examples": (6400, 3200, 1600, 800)})

    def vocabulary(self, params: Mapping[str, Any]) -> dict[str, Any]:
        v = int(params["vocab_size"])
        return {"data": [0, v - 1], "compression": v - 1}

    def sample(self, params, num, split, rng, shared=None):
        return compression_sequences(rng, num, int(params["seq_len"]), int(params["vocab_size"]))
