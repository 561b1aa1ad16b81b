"""In-context recall and noisy in-context recall (paper §3.1.1 and §3.1.3).

A sequence of L tokens is L/2 slots: L/2 - 1 key-value pairs (or, with noise, pairs of noise
tokens), then a final query pair whose key was shown before. A key's value is drawn when the key
first appears and reused afterwards. The model reads the first L - 1 tokens; the target at a
key that appeared before is its value (the next token), every other position is not scored.
"""
from __future__ import annotations

from types import MappingProxyType
from typing import Any, Mapping

import numpy as np

from madbench.tasks import IGNORE, Task

from .sampling import kth_true


def recall_sequences(rng: np.random.Generator, num: int, seq_len: int, kv_tokens: int,
                     vocab_size: int, frac_noise: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """``num`` recall sequences: keys [0, kv/2), values [kv/2, kv), noise [kv, vocab_size).

    Returns (inputs, targets), int64 [num, seq_len - 1]. A sequence whose slots all came out as
    noise has no key to query; it is drawn again (mad-lab would fail on it)."""
    if seq_len % 2 or seq_len < 4:
        raise ValueError(f"seq_len must be even and at least 4, not {seq_len}")
    if frac_noise and vocab_size <= kv_tokens:
        raise ValueError("frac_noise > 0 needs noise tokens (vocab_size > kv_tokens)")
    inputs, targets, ok = _draw(rng, num, seq_len, kv_tokens, vocab_size, frac_noise)
    redo = np.flatnonzero(~ok)
    while redo.size:
        inputs[redo], targets[redo], ok = _draw(rng, redo.size, seq_len, kv_tokens, vocab_size,
                                                frac_noise)
        redo = redo[~ok]
    return inputs, targets


def _draw(rng, num, seq_len, kv_tokens, vocab_size, frac_noise):
    slots = seq_len // 2 - 1
    num_keys = kv_tokens // 2
    rows = np.arange(num)
    keys = rng.integers(0, num_keys, (num, slots), dtype=np.int16)
    value_of = rng.integers(num_keys, kv_tokens, (num, num_keys))  # drawn at first appearance
    values = np.take_along_axis(value_of, keys, axis=1)
    if frac_noise > 0:
        protected = rng.integers(0, slots + 1, num)  # == slots: the final pair, never noise
        noise = (rng.random((num, slots)) < frac_noise) & (np.arange(slots) != protected[:, None])
        noise_tokens = rng.integers(kv_tokens, vocab_size, (2, num, slots), dtype=np.int16)
        keys_or_noise = np.where(noise, noise_tokens[0], keys)
        values_or_noise = np.where(noise, noise_tokens[1], values)
    else:
        noise = np.zeros((num, slots), dtype=bool)
        keys_or_noise, values_or_noise = keys, values
    seen_before, shown = _seen_before(keys, ~noise, num_keys)
    count = shown.sum(axis=1)
    query_key = kth_true(shown, rng.integers(0, np.maximum(count, 1)))  # uniform over keys shown
    query_value = value_of[rows, query_key]

    # the model reads tokens 0 .. L-2: slots' keys at even positions, values at odd ones, and
    # the query key last; the target at a key shown before is its value
    inputs = np.empty((num, seq_len - 1), dtype=np.int64)
    inputs[:, 0:-1:2] = keys_or_noise
    inputs[:, 1::2] = values_or_noise
    inputs[:, -1] = query_key
    targets = np.full((num, seq_len - 1), IGNORE, dtype=np.int64)
    targets[:, 0:-1:2] = np.where(seen_before, values, IGNORE)
    targets[:, -1] = query_value
    return inputs, targets, count > 0


def _seen_before(keys: np.ndarray, real: np.ndarray, num_keys: int
                 ) -> tuple[np.ndarray, np.ndarray]:
    """Whether each slot's key was shown in an earlier slot of its row (noise slots show no
    key and are never "seen before"), and which keys each row shows, [num, num_keys]. One pass
    over the slots, vectorised over rows."""
    num, slots = keys.shape
    seen = np.zeros(num * num_keys, dtype=bool)
    index = np.ascontiguousarray(keys.T, dtype=np.int64) + np.arange(num) * num_keys
    real = np.ascontiguousarray(real.T)
    out = np.empty((slots, num), dtype=bool)
    for t in range(slots):
        out[t] = seen[index[t]]
        seen[index[t][real[t]]] = True
    return out.T & real.T, seen.reshape(num, num_keys)


class InContextRecall(Task):
    name = "in-context-recall"
    version = 1
    description = "Recall the value bound to each key shown earlier in the same sequence."
    baseline = MappingProxyType({"vocab_size": 16, "seq_len": 128,
                                 "num_train_examples": 12_800, "num_test_examples": 1_280})
    changes = MappingProxyType({"vocab_size": (32, 64, 128),
                                "seq_len": (256, 512, 1024),
                                "num_train_examples": (6400, 3200, 1600, 800)})

    def _kv_tokens(self, params: Mapping[str, Any]) -> int:
        return int(params["vocab_size"]) - int(params.get("noise_vocab_size", 0))

    def vocabulary(self, params: Mapping[str, Any]) -> dict[str, Any]:
        kv = self._kv_tokens(params)
        layout: dict[str, Any] = {"keys": [0, kv // 2], "values": [kv // 2, kv]}
        if params.get("noise_vocab_size", 0):
            layout["noise"] = [kv, int(params["vocab_size"])]
        return layout

    def sample(self, params, num, split, rng, shared=None):
        return recall_sequences(rng, num, int(params["seq_len"]), self._kv_tokens(params),
                                int(params["vocab_size"]), float(params.get("frac_noise", 0.0)))


class NoisyInContextRecall(InContextRecall):
    name = "noisy-in-context-recall"
    version = 1
    description = ("In-context recall with pairs of noise tokens, from a separate 16-token "
                   "vocabulary, in place of a share of the key-value pairs.")
    baseline = MappingProxyType({"vocab_size": 32, "noise_vocab_size": 16, "seq_len": 128,
                                 "frac_noise": 0.2,
                                 "num_train_examples": 12_800, "num_test_examples": 1_280})
    changes = MappingProxyType({"vocab_size": (48, 80, 144),
                                "seq_len": (256, 512, 1024),
                                "num_train_examples": (6400, 3200, 1600, 800),
                                "frac_noise": (0.4, 0.6, 0.8)})
