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

#: pair draws per block of rows (bounds memory, keeps the working set in cache)
_BLOCK_DRAWS = 1 << 17
#: flag bit on a laid-out token whose position is scored
SCORED = 1 << 16
#: pairs drawn per row at first, as a multiple of the expected number needed; the rare row that
#: needs more gets further draws appended (so every row sees one unbroken stream of draws)
FIRST_DRAWS = 1.2


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
    shortest_key = 1 if train else max_key
    longest_body = seq_len - (shortest_key + 1) - (max_key + max_value)
    enough = longest_body // (shortest_key + 1) + 2     # pairs that fill any row
    mean_pair = (shortest_key + max_key) / 2 + (1 + max_value) / 2
    likely = min(enough, int(FIRST_DRAWS * longest_body / mean_pair) + 8)
    block = max(1, _BLOCK_DRAWS // likely)
    inputs = np.empty((num, seq_len), dtype=np.int64)
    targets = np.empty((num, seq_len), dtype=np.int64)
    for lo in range(0, num, block):
        hi = min(num, lo + block)
        inputs[lo:hi], targets[lo:hi] = _block(rng, hi - lo, seq_len, vocab_size, max_key,
                                               max_value, train, likely, enough)
    return inputs, targets


def _block(rng, num, seq_len, vocab_size, max_key, max_value, train, likely, enough):
    num_keys = (vocab_size - 1) // 2
    num_values = vocab_size - 1 - num_keys
    probe = _draw_pairs(rng, num, 1, num_keys, num_values, max_key, max_value, train)
    probe = {name: a[:, 0] for name, a in probe.items()}
    probe_len = probe["key_len"] + probe["value_len"]
    probe["index"] = rng.integers(0, seq_len - 2 * probe_len)
    pairs = _draw_pairs(rng, num, likely, num_keys, num_values, max_key, max_value, train)
    inputs, targets, done = _lay_out(probe, pairs, seq_len, vocab_size, max_key, max_value)
    late = np.flatnonzero(~done)
    if late.size:
        more = _draw_pairs(rng, late.size, enough - likely, num_keys, num_values, max_key,
                           max_value, train)
        pairs = {name: np.concatenate([a[late], more[name]], axis=1) for name, a in pairs.items()}
        probe = {name: a[late] for name, a in probe.items()}
        inputs[late], targets[late], done = _lay_out(probe, pairs, seq_len, vocab_size,
                                                     max_key, max_value)
        assert done.all(), "too few pair draws"
    return inputs, targets


def _draw_pairs(rng, num, draws, num_keys, num_values, max_key, max_value, train):
    """Independent key-value pair draws: sizes (keys of ``max_key`` tokens at test) and
    distinct-token tuples, [num, draws(, max size)]."""
    key_len = (rng.integers(1, max_key + 1, (num, draws), dtype=np.int16) if train
               else np.full((num, draws), max_key, dtype=np.int16))
    return {"key_len": key_len,
            "value_len": rng.integers(1, max_value + 1, (num, draws), dtype=np.int16),
            "key": distinct_tuples(rng, num_keys, (num, draws), max_key),
            "value": distinct_tuples(rng, num_values, (num, draws), max_value) + num_keys}


def _key_codes(sizes: np.ndarray, tokens: np.ndarray, base: int) -> np.ndarray:
    """One integer per key: its size and its tokens (a size-2 key never equals a size-3 one)."""
    code = sizes.astype(np.int64)
    for j in range(tokens.shape[-1]):
        code = code * base + np.where(j < sizes, tokens[..., j], 0)
    return code


def _lay_out(probe, pairs, seq_len, vocab_size, max_key, max_value):
    """Replay mad-lab's loop over the drawn pairs and lay the sequences out. Returns (inputs,
    targets, done); rows whose draws ran out before the body was full are not done (and left
    as padding)."""
    L, pad = seq_len, vocab_size - 1
    num, draws = pairs["key_len"].shape
    rows, steps = np.arange(num), np.arange(draws)
    num_keys = (vocab_size - 1) // 2
    probe_len = probe["key_len"] + probe["value_len"]
    limit = L - probe_len - (max_key + max_value)

    # a key's value is the one drawn where the key first appears; the probe key's is the probe's
    codes = _key_codes(pairs["key_len"], pairs["key"], num_keys)
    is_probe = codes == _key_codes(probe["key_len"], probe["key"], num_keys)[:, None]
    first = first_occurrence(codes)
    key_len = pairs["key_len"]
    value_len = np.where(is_probe, probe["value_len"][:, None],
                         np.take_along_axis(pairs["value_len"], first, axis=1))
    value = np.where(is_probe[..., None], probe["value"][:, None, :],
                     np.take_along_axis(pairs["value"], first[..., None], axis=1))

    # where the probe goes, which pairs fit
    pair_len = key_len + value_len
    start = np.cumsum(pair_len, axis=1, dtype=np.int32) - pair_len  # running length before
    probe_seen_at = np.where(is_probe.any(axis=1), is_probe.argmax(axis=1), draws)
    reached = start >= probe["index"][:, None]
    insert_at = np.where(reached.any(axis=1), reached.argmax(axis=1), draws)
    insert_start = start[rows, np.minimum(insert_at, draws - 1)]
    inserted = (insert_at <= probe_seen_at) & (insert_at < draws) & (insert_start < limit)
    after_insert = inserted[:, None] & (steps >= insert_at[:, None])
    start = start + np.where(after_insert, probe_len[:, None], 0)
    runs = start < limit[:, None]
    num_pairs = runs.sum(axis=1)
    done = num_pairs < draws
    runs &= done[:, None]
    inserted &= done
    body_len = np.where(done, start[rows, np.minimum(num_pairs, draws - 1)], 0)
    scored = (first < steps) | (is_probe & after_insert)
    query_scored = inserted | (probe_seen_at < num_pairs)

    # lay out right-aligned in L + 1 tokens; a token carries SCORED when it is a target
    out = np.full(num * (L + 1) + 1, pad, dtype=np.int32)    # the last element is a sink
    sink = num * (L + 1)
    origin = rows * (L + 1) + (L + 1) - (body_len + probe_len)

    def put(at, tokens, length, use):
        """Write tokens[..., :length] at at + j where ``use``; unused slots go to the sink."""
        j = np.arange(tokens.shape[-1])
        out[np.where(use[..., None] & (j < length[..., None]), at[..., None] + j, sink)] = tokens

    body_at = origin[:, None] + start
    put(body_at, pairs["key"], key_len, runs)
    put(body_at + key_len, value | (scored[..., None] * SCORED), value_len, runs)
    probe_at = origin + insert_start
    put(probe_at, probe["key"], probe["key_len"], inserted)
    put(probe_at + probe["key_len"], probe["value"], probe["value_len"], inserted)
    query_at = origin + body_len
    put(query_at, probe["key"], probe["key_len"], done)
    put(query_at + probe["key_len"], probe["value"] | (query_scored[:, None] * SCORED),
        probe["value_len"], done)
    out = out[:-1].reshape(num, L + 1)
    tokens = out & (SCORED - 1)
    targets = np.where(out & SCORED, tokens, IGNORE)
    return tokens[:, :-1], targets[:, 1:], done


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
