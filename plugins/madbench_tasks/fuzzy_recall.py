"""Fuzzy in-context recall (paper §3.1.2): keys and values are runs of 1 to 3 distinct tokens.

The generator reproduces the distribution of mad-lab's per-sequence loop without its
permutation tables (a uniform row of a shuffled permutation table is a uniform ordered tuple of
distinct tokens, see :func:`distinct_tuples`) and without a Python loop per sequence:

1. A probe pair (key of 1-3 tokens in training, 3 at test; value of 1-3 tokens) and a probe
   index, uniform in [0, L - 2 * probe length).
2. A stream of independent pair draws per sequence: key size, value size, key tuple, value
   tuple. A key's value is the one drawn at its first appearance (the probe key's is the probe
   value); key tuples of different sizes are different keys.
3. The probe pair is inserted (unscored) before the first pair that would start at or after the
   probe index, unless the probe key came up earlier. Pairs are appended while the running
   length stays below L - probe length - 6 (mad-lab's loop, replayed with cumulative sums).
4. The probe pair is appended as the final query; the sequence is left-padded to L + 1 tokens
   and shifted: inputs are the first L tokens, targets the last L.

Scored: the value tokens of keys shown earlier, and the final query's value when its key was
shown earlier (mad-lab also scores it when the probe was never placed).
"""
from __future__ import annotations

from types import MappingProxyType
from typing import Any, Mapping

import numpy as np

from madbench.tasks import IGNORE, Task

from .sampling import distinct_tuples, first_occurrence

#: rows per block, times the number of pair draws per row (bounds memory, keeps caches warm)
_BLOCK_DRAWS = 1 << 17
#: flag bit on a laid-out token whose position is scored
SCORED = 1 << 16


def fuzzy_recall_sequences(rng: np.random.Generator, num: int, seq_len: int, vocab_size: int,
                           max_key: int = 3, max_value: int = 3, train: bool = True
                           ) -> tuple[np.ndarray, np.ndarray]:
    """``num`` fuzzy-recall sequences: keys [0, (V-1)//2), values [(V-1)//2, V-1), pad V-1.
    Returns (inputs, targets), int64 [num, seq_len]."""
    num_keys = (vocab_size - 1) // 2
    if num_keys < max_key or vocab_size - 1 - num_keys < max_value:
        raise ValueError(f"vocab_size {vocab_size} is too small for motifs of "
                         f"{max_key}/{max_value} distinct tokens")
    if seq_len <= 4 * (max_key + max_value):
        raise ValueError(f"seq_len {seq_len} is too short for motifs of {max_key}/{max_value}")
    shortest_probe = (1 if train else max_key) + 1
    longest_body = seq_len - shortest_probe - (max_key + max_value)
    draws = longest_body // shortest_probe + 2     # enough pairs for every row to fill up
    block = max(1, _BLOCK_DRAWS // draws)
    inputs = np.empty((num, seq_len), dtype=np.int64)
    targets = np.empty((num, seq_len), dtype=np.int64)
    for lo in range(0, num, block):
        hi = min(num, lo + block)
        inputs[lo:hi], targets[lo:hi] = _block(rng, hi - lo, seq_len, vocab_size, max_key,
                                               max_value, train, draws)
    return inputs, targets


def _key_codes(sizes: np.ndarray, tokens: np.ndarray, base: int) -> np.ndarray:
    """One integer per key: its size and its tokens (a size-2 key never equals a size-3 one)."""
    code = sizes.astype(np.int64)
    for j in range(tokens.shape[-1]):
        code = code * base + np.where(j < sizes, tokens[..., j], 0)
    return code


def _block(rng, num, seq_len, vocab_size, max_key, max_value, train, draws):
    L, pad = seq_len, vocab_size - 1
    num_keys = (vocab_size - 1) // 2
    num_values = vocab_size - 1 - num_keys
    rows = np.arange(num)
    steps = np.arange(draws)

    # 1. the probe pair
    probe_key_len = rng.integers(1, max_key + 1, num) if train else np.full(num, max_key)
    probe_value_len = rng.integers(1, max_value + 1, num)
    probe_key = distinct_tuples(rng, num_keys, (num,), max_key)
    probe_value = distinct_tuples(rng, num_values, (num,), max_value) + num_keys
    probe_len = probe_key_len + probe_value_len
    probe_index = rng.integers(0, L - 2 * probe_len)
    limit = L - probe_len - (max_key + max_value)

    # 2. the pair draws; a key's value is the one drawn where the key first appears
    key_len = (rng.integers(1, max_key + 1, (num, draws)) if train
               else np.full((num, draws), max_key))
    value_len_drawn = rng.integers(1, max_value + 1, (num, draws))
    key_tokens = distinct_tuples(rng, num_keys, (num, draws), max_key)
    value_tokens_drawn = distinct_tuples(rng, num_values, (num, draws), max_value) + num_keys
    codes = _key_codes(key_len, key_tokens, num_keys)
    is_probe = codes == _key_codes(probe_key_len, probe_key, num_keys)[:, None]
    first = first_occurrence(codes)
    value_len = np.where(is_probe, probe_value_len[:, None],
                         np.take_along_axis(value_len_drawn, first, axis=1))
    value_tokens = np.where(is_probe[..., None], probe_value[:, None, :],
                            np.take_along_axis(value_tokens_drawn, first[..., None], axis=1))

    # 3. replay the loop: where the probe goes, which pairs fit
    pair_len = key_len + value_len
    start = np.cumsum(pair_len, axis=1) - pair_len          # running length before each pair
    probe_seen_at = np.where(is_probe.any(axis=1), is_probe.argmax(axis=1), draws)
    reached = start >= probe_index[:, None]
    insert_at = np.where(reached.any(axis=1), reached.argmax(axis=1), draws)
    insert_start = start[rows, np.minimum(insert_at, draws - 1)]
    inserted = (insert_at <= probe_seen_at) & (insert_at < draws) & (insert_start < limit)
    after_insert = inserted[:, None] & (steps >= insert_at[:, None])
    start = start + np.where(after_insert, probe_len[:, None], 0)
    runs = start < limit[:, None]
    num_pairs = runs.sum(axis=1)
    assert (num_pairs < draws).all(), "too few pair draws"
    body_len = start[rows, num_pairs]                     # the running length when the loop ends
    scored = runs & ((first < steps) | (is_probe & after_insert))
    query_scored = inserted | (probe_seen_at < num_pairs)

    # 4. lay out, right-aligned in L + 1 tokens; a token carries SCORED when it is a target
    out = np.full(num * (L + 1) + 1, pad, dtype=np.int32)    # the last element is a sink
    sink = num * (L + 1)
    origin = rows * (L + 1) + (L + 1) - (body_len + probe_len)

    def put(at, tokens, length, use):
        """Write tokens[..., :length] at at + j where ``use``; unused slots go to the sink."""
        j = np.arange(tokens.shape[-1])
        out[np.where(use[..., None] & (j < length[..., None]), at[..., None] + j, sink)] = tokens

    body_at = origin[:, None] + start
    put(body_at, key_tokens, key_len, runs)
    put(body_at + key_len, value_tokens | (scored[..., None] * SCORED), value_len, runs)
    probe_at = origin + insert_start
    put(probe_at, probe_key, probe_key_len, inserted)
    put(probe_at + probe_key_len, probe_value, probe_value_len, inserted)
    query_at = origin + body_len
    everywhere = np.ones(num, dtype=bool)
    put(query_at, probe_key, probe_key_len, everywhere)
    put(query_at + probe_key_len, probe_value | (query_scored[:, None] * SCORED),
        probe_value_len, everywhere)
    out = out[:-1].reshape(num, L + 1)
    tokens = out & (SCORED - 1)
    targets = np.where(out & SCORED, tokens, IGNORE)
    return tokens[:, :-1], targets[:, 1:]


class FuzzyInContextRecall(Task):
    name = "fuzzy-in-context-recall"
    version = 1
    description = ("In-context recall where keys and values are runs of 1-3 tokens; "
                   "evaluated on keys of 3 tokens.")
    baseline = MappingProxyType({"vocab_size": 16, "seq_len": 128, "k_motif_size": 3,
                                 "v_motif_size": 3,
                                 "num_train_examples": 12_800, "num_test_examples": 1_280})
    changes = MappingProxyType({"vocab_size": (32, 64, 128),
                                "seq_len": (256, 512, 1024),
                                "num_train_examples": (6400, 3200, 1600, 800)})

    def vocabulary(self, params: Mapping[str, Any]) -> dict[str, Any]:
        v = int(params["vocab_size"])
        return {"keys": [0, (v - 1) // 2], "values": [(v - 1) // 2, v - 1], "pad": v - 1}

    def sample(self, params, num, split, rng, shared=None):
        return fuzzy_recall_sequences(rng, num, int(params["seq_len"]), int(params["vocab_size"]),
                                      int(params["k_motif_size"]), int(params["v_motif_size"]),
                                      train=split == "train")
