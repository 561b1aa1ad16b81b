"""Each task's defining properties, checked on generated data against independent
computations: plain Python scans of the sequences, and for fuzzy recall a per-sequence
re-implementation of the reference loop. Sizes are reduced (few sequences) to stay fast."""
from __future__ import annotations

from types import MappingProxyType

import numpy as np
import pytest

from madbench.tasks import IGNORE, Setting, generate_splits, get_task


def small(task_name: str, setting: str = "baseline", num_train: int = 96, num_test: int = 64,
          **overrides) -> tuple:
    """A task and a copy of one of its settings with few sequences (and optional overrides)."""
    task = get_task(task_name)
    params = dict(task.setting(setting).params, num_train_examples=num_train,
                  num_test_examples=num_test, **overrides)
    return task, Setting(task.name, task.version, setting, MappingProxyType(params))


def both_splits(task, setting, seed=0):
    train, test = generate_splits(task, setting, seed)
    return [(train.inputs, train.targets, "train"), (test.inputs, test.targets, "test")]


# -- in-context recall and noisy recall ------------------------------------------------------

def scan_recall(x: list[int], y: list[int], layout: dict) -> int:
    """Scan one sequence pair by pair. Property: a key's target is the value bound to it by an
    earlier pair when there is one, and not scored otherwise; values and noise are never scored;
    a key keeps one value; noise comes as whole pairs; the last input is a key shown before.
    Returns the number of noise pairs."""
    keys, values = range(*layout["keys"]), range(*layout["values"])
    noise = range(*layout.get("noise", (0, 0)))
    bound: dict[int, int] = {}
    noise_pairs = 0
    for i in range(0, len(x), 2):
        token = x[i]
        if token in noise:
            assert x[i + 1] in noise and y[i] == IGNORE
            noise_pairs += 1
        else:
            assert token in keys
            assert y[i] == bound.get(token, IGNORE)
            if i + 1 < len(x):
                assert x[i + 1] in values
                assert bound.setdefault(token, x[i + 1]) == x[i + 1]
        if i + 1 < len(x):
            assert y[i + 1] == IGNORE
    assert x[-1] in bound and y[-1] == bound[x[-1]]
    return noise_pairs


@pytest.mark.parametrize("task_name,setting", [
    ("in-context-recall", "baseline"), ("in-context-recall", "vocab_size=128"),
    ("noisy-in-context-recall", "baseline"), ("noisy-in-context-recall", "frac_noise=0.8"),
])
def test_recall_targets_are_values_bound_earlier(task_name, setting):
    task, s = small(task_name, setting)
    layout = task.vocabulary(s.params)
    for inputs, targets, _ in both_splits(task, s):
        assert inputs.shape[1] == s.seq_len - 1
        for x, y in zip(inputs.tolist(), targets.tolist()):
            scan_recall(x, y, layout)


def test_recall_baseline_scores_56_positions():
    """8 keys almost surely all appear among 63 pairs: 63 - 8 repeats + the final query."""
    task, s = small("in-context-recall", num_train=32, num_test=32)
    for _, targets, _ in both_splits(task, s):
        assert set((targets != IGNORE).sum(axis=1).tolist()) <= {56, 57}


@pytest.mark.parametrize("frac_noise", [0.2, 0.8])
def test_noise_share_matches_frac_noise(frac_noise):
    """Each of the P = L/2 - 1 pairs is noise with probability p, except one protected slot
    drawn uniformly from P + 1 slots: the expected noise share of the pairs is p * P / (P+1)."""
    task, s = small("noisy-in-context-recall", num_train=400, num_test=100,
                    frac_noise=frac_noise)
    layout = task.vocabulary(s.params)
    pairs = s.seq_len // 2 - 1
    counted = total = 0
    for inputs, targets, _ in both_splits(task, s):
        for x, y in zip(inputs.tolist(), targets.tolist()):
            counted += scan_recall(x, y, layout)
            total += pairs
    expected = frac_noise * pairs / (pairs + 1)
    assert abs(counted / total - expected) < 5 * np.sqrt(expected * (1 - expected) / total)


# -- fuzzy recall ----------------------------------------------------------------------------

def runs_of(x: list[int], layout: dict) -> tuple[int, list[tuple[str, int, int]]]:
    """Split a fuzzy-recall input into its pad prefix and maximal runs of key or value tokens:
    returns (pad count, [(kind, start, stop)])."""
    keys, values, pad = range(*layout["keys"]), range(*layout["values"]), layout["pad"]
    i = 0
    while i < len(x) and x[i] == pad:
        i += 1
    pads, runs = i, []
    while i < len(x):
        kind = "key" if x[i] in keys else "value"
        assert x[i] in keys or x[i] in values, f"unexpected token {x[i]}"
        j = i
        while j < len(x) and (x[j] in keys) == (kind == "key") and x[j] != pad:
            j += 1
        runs.append((kind, i, j))
        i = j
    return pads, runs


def scan_fuzzy(x: list[int], y: list[int], layout: dict, key_sizes: set[int]) -> dict:
    """Scan one fuzzy-recall sequence key run by value run. Property: the value tokens of a key
    shown earlier are scored and equal the value bound to it; a key keeps one value; nothing
    else is scored. The input lacks the sequence's last token (the final query's last value
    token), which is the last target when scored."""
    pads, runs = runs_of(x, layout)
    assert pads >= 2
    assert [kind for kind, _, _ in runs] == ["key", "value"] * (len(runs) // 2) + \
        ["key"] * (len(runs) % 2)
    pairs = [(tuple(x[runs[n][1]:runs[n][2]]),
              *(runs[n + 1][1:] if n + 1 < len(runs) else (len(x), len(x))))
             for n in range(0, len(runs), 2)]
    expected = [IGNORE] * len(x)
    bound: dict[tuple, tuple] = {}
    for n, (key, v0, v1) in enumerate(pairs):
        assert len(key) in key_sizes
        seen = tuple(x[v0:v1])
        if key in bound:
            value = bound[key]
            assert seen == (value[:-1] if n == len(pairs) - 1 else value)
            for j, token in enumerate(value):
                expected[v0 + j - 1] = token
        else:
            bound[key] = seen
    assert y == expected
    return {"pads": pads, "pairs": len(pairs), "scored": sum(t != IGNORE for t in y),
            "query_scored": y[-1] != IGNORE, "key_lengths": [len(key) for key, _, _ in pairs]}


@pytest.mark.parametrize("setting", ["baseline", "vocab_size=64", "seq_len=256"])
def test_fuzzy_targets_are_values_bound_earlier(setting):
    task, s = small("fuzzy-in-context-recall", setting)
    layout = task.vocabulary(s.params)
    for inputs, targets, split in both_splits(task, s):
        assert inputs.shape[1] == s.seq_len
        sizes = {1, 2, 3} if split == "train" else {3}
        for x, y in zip(inputs.tolist(), targets.tolist()):
            scan_fuzzy(x, y, layout, sizes)


def test_fuzzy_rows_that_need_more_draws_are_extended(monkeypatch):
    """With almost no pairs drawn up front every row takes the extension path; the
    sequences keep their properties."""
    from madbench_tasks import fuzzy_recall

    monkeypatch.setattr(fuzzy_recall, "FIRST_DRAWS", 0.01)
    task, s = small("fuzzy-in-context-recall", num_train=32, num_test=16)
    layout = task.vocabulary(s.params)
    for inputs, targets, split in both_splits(task, s):
        for x, y in zip(inputs.tolist(), targets.tolist()):
            scan_fuzzy(x, y, layout, {1, 2, 3} if split == "train" else {3})


def reference_fuzzy(rng, seq_len, vocab_size, train, max_key=3, max_value=3):
    """mad-lab's per-sequence loop (mad-protocol.md §4.3), in plain Python; a uniform row of a
    shuffled permutation table is drawn as ``rng.choice(pool, m, replace=False)``. Scores the
    final query only when its key was shown (madbench's rule)."""
    num_keys = (vocab_size - 1) // 2
    values = np.arange(num_keys, vocab_size - 1)

    def motif(pool, m):
        return tuple(rng.choice(pool, m, replace=False).tolist())

    kp = int(rng.integers(1, max_key + 1)) if train else max_key
    vp = int(rng.integers(1, max_value + 1))
    probe_key, probe_value = motif(num_keys, kp), motif(values, vp)
    probe_index = int(rng.integers(0, seq_len - 2 * (kp + vp)))
    seq, tgt, bound, shown, placed = [], [], {}, set(), False
    while len(seq) < seq_len - (kp + vp) - (max_key + max_value):
        ks = int(rng.integers(1, max_key + 1)) if train else max_key
        vs = int(rng.integers(1, max_value + 1))
        if len(seq) >= probe_index and not placed:
            seq += probe_key + probe_value
            tgt += [IGNORE] * (kp + vp)
            shown.add(probe_key)
            placed = True
            continue
        key = motif(num_keys, ks)
        if key == probe_key:
            value, placed = probe_value, True
        else:
            value = bound.setdefault(key, motif(values, vs))
        seq += key + value
        tgt += [IGNORE] * ks + (list(value) if key in shown else [IGNORE] * len(value))
        shown.add(key)
    seq += probe_key + probe_value
    tgt += [IGNORE] * kp + (list(probe_value) if probe_key in shown else [IGNORE] * vp)
    pad = seq_len + 1 - len(seq)
    seq, tgt = [vocab_size - 1] * pad + seq, [IGNORE] * pad + tgt
    return seq[:-1], tgt[1:]


@pytest.mark.parametrize("split", ["train", "test"])
def test_fuzzy_matches_the_reference_distribution(split):
    """The vectorised generator and the per-sequence reference loop agree in distribution:
    means of padding, pairs, scored positions, scored final queries and key lengths within 5
    standard errors."""
    task, s = small("fuzzy-in-context-recall", seq_len=64, num_train=3000, num_test=3000)
    layout = task.vocabulary(s.params)
    inputs, targets = task.sample(s.params, 3000, split, np.random.default_rng(1))
    rng = np.random.default_rng(2)
    reference = [reference_fuzzy(rng, 64, 16, split == "train") for _ in range(1500)]
    sizes = {1, 2, 3} if split == "train" else {3}

    def stats(pairs):
        rows = [scan_fuzzy(list(x), list(y), layout, sizes) for x, y in pairs]
        return {name: np.array([r[name] for r in rows], dtype=float)
                for name in ("pads", "pairs", "scored", "query_scored")} | {
            "short_keys": np.array([np.mean(np.array(r["key_lengths"]) < 3) for r in rows])}

    ours = stats(zip(inputs.tolist(), targets.tolist()))
    theirs = stats(reference)
    for name in ours:
        a, b = ours[name], theirs[name]
        se = np.sqrt(a.var() / len(a) + b.var() / len(b)) + 1e-12
        assert abs(a.mean() - b.mean()) < 5 * se, (name, a.mean(), b.mean())


# -- selective copying, compression, memorization ------------------------------------------

@pytest.mark.parametrize("setting", ["baseline", "num_tokens_to_copy=96", "vocab_size=128"])
def test_selective_copy_targets_are_the_data_tokens_in_order(setting):
    task, s = small("selective-copying", setting)
    layout = task.vocabulary(s.params)
    n, blank, insert = s.params["num_tokens_to_copy"], layout["blank"], layout["insert"]
    for inputs, targets, _ in both_splits(task, s):
        for x, y in zip(inputs.tolist(), targets.tolist()):
            head = x[:-n]
            data = [t for t in head if t != blank]
            assert len(data) == n and all(t in range(*layout["data"]) for t in data)
            assert head.count(blank) == s.seq_len - 2 * n
            assert head[-1] != blank            # blanks go before data tokens (mad-lab's scheme)
            assert x[-n:] == [insert] * n
            assert y[-n:] == data and y[:-n] == [IGNORE] * (s.seq_len - n)


@pytest.mark.parametrize("setting", ["baseline", "vocab_size=128", "seq_len=256"])
def test_compression_targets_are_the_inputs(setting):
    task, s = small("compression", setting)
    layout = task.vocabulary(s.params)
    for inputs, targets, _ in both_splits(task, s):
        for x, y in zip(inputs.tolist(), targets.tolist()):
            assert all(t in range(*layout["data"]) for t in x[:-1])
            assert x[-1] == layout["compression"]
            assert y[:-1] == x[:-1] and y[-1] == IGNORE


@pytest.mark.parametrize("setting", ["baseline", "vocab_size=8192"])
def test_memorization_uses_one_fact_table_and_hides_values(setting):
    task = get_task("memorization")
    s = task.setting(setting)
    layout = task.vocabulary(s.params)
    keys, values = range(*layout["keys"]), range(*layout["values"])
    facts: dict[int, int] = {}
    for inputs, targets, _ in both_splits(task, s):
        for x, y in zip(inputs.tolist(), targets.tolist()):
            assert all(t in keys for t in x[0::2]) and x[1::2] == [layout["insert"]] * 16
            assert not set(x) & set(values)     # values never appear in the inputs
            assert y[0::2] == [IGNORE] * 16
            for key, value in zip(x[0::2], y[1::2]):
                assert value in values
                assert facts.setdefault(key, value) == value   # one map, train and test
    assert len(set(facts.values())) == len(facts)           # distinct keys, distinct values


def test_memorization_fact_table_depends_on_seed():
    task = get_task("memorization")

    def table(seed):
        train, _ = generate_splits(task, "baseline", seed)
        return {k: v for x, y in zip(train.inputs.tolist(), train.targets.tolist())
                for k, v in zip(x[0::2], y[1::2])}

    a, b = table(0), table(1)
    common = set(a) & set(b)
    assert len(common) > 50 and any(a[k] != b[k] for k in common)
