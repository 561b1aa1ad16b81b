"""The task contract and the 66-setting grid: names, values, hashes, determinism, independent
random streams, train/test disjointness, shapes and vocabularies."""
from __future__ import annotations

import csv
import random
from pathlib import Path
from types import MappingProxyType

import numpy as np
import pytest

from madbench.errors import MadbenchError, UsageError
from madbench.tasks import (IGNORE, Setting, all_tasks, generate, generate_splits, get_task,
                            split_rng, suite_hash)

REFERENCE_CSV = Path("/work/shared/reference/data/benchmark_settings.csv")
TASK_ORDER = ["in-context-recall", "noisy-in-context-recall", "fuzzy-in-context-recall",
              "memorization", "compression", "selective-copying"]
#: recall and noisy recall feed the model L - 1 tokens (mad-lab's convention)
INPUT_SHORTER_BY = {"in-context-recall": 1, "noisy-in-context-recall": 1}
N_TRAIN = ("num_train_examples", (6400, 3200, 1600, 800))

#: the grid as mad-protocol.md §5 (paper B.2) states it: baseline, then one change at a time
GRID = {
    "in-context-recall": ({"vocab_size": 16, "seq_len": 128, "num_train_examples": 12800},
                          [("vocab_size", (32, 64, 128)), ("seq_len", (256, 512, 1024)), N_TRAIN]),
    "noisy-in-context-recall": (
        {"vocab_size": 32, "noise_vocab_size": 16, "seq_len": 128, "num_train_examples": 12800,
         "frac_noise": 0.2},
        [("vocab_size", (48, 80, 144)), ("seq_len", (256, 512, 1024)), N_TRAIN,
         ("frac_noise", (0.4, 0.6, 0.8))]),
    "fuzzy-in-context-recall": (
        {"vocab_size": 16, "seq_len": 128, "num_train_examples": 12800, "k_motif_size": 3,
         "v_motif_size": 3},
        [("vocab_size", (32, 64, 128)), ("seq_len", (256, 512, 1024)), N_TRAIN]),
    "memorization": ({"vocab_size": 256, "seq_len": 32, "num_train_examples": 256},
                     [("vocab_size", (512, 1024, 2048, 4096, 8192))]),
    "compression": ({"vocab_size": 16, "seq_len": 32, "num_train_examples": 12800},
                    [("vocab_size", (32, 64, 128)), ("seq_len", (64, 128, 256)), N_TRAIN]),
    "selective-copying": (
        {"vocab_size": 16, "seq_len": 256, "num_train_examples": 12800, "num_tokens_to_copy": 16},
        [("vocab_size", (32, 64, 128)), ("seq_len", (512, 1024)), N_TRAIN,
         ("num_tokens_to_copy", (32, 64, 96))]),
}


def small(task_name, setting="baseline", num_train=48, num_test=32, **overrides):
    task = get_task(task_name)
    params = dict(task.setting(setting).params, num_train_examples=num_train,
                  num_test_examples=num_test, **overrides)
    return task, Setting(task.name, task.version, setting, MappingProxyType(params))


# -- registry and grid -----------------------------------------------------------------------

def test_six_tasks_registered_in_madlab_order():
    assert [t.name for t in all_tasks()] == TASK_ORDER
    assert get_task("compression").model == "autoencoder"
    assert {t.model for t in all_tasks() if t.name != "compression"} == {"lm"}


def test_unknown_task_is_a_usage_error_listing_known_names():
    with pytest.raises(UsageError, match="known tasks: in-context-recall, .*selective-copying"):
        get_task("recall")


def test_unknown_setting_is_a_usage_error():
    with pytest.raises(UsageError, match="no setting 'seq_len=100'"):
        get_task("in-context-recall").setting("seq_len=100")


def test_grid_has_66_settings_with_the_documented_values():
    counts = {t.name: len(t.settings()) for t in all_tasks()}
    assert counts == {"in-context-recall": 11, "noisy-in-context-recall": 14,
                      "fuzzy-in-context-recall": 11, "memorization": 6, "compression": 11,
                      "selective-copying": 13}
    for name, (baseline, changes) in GRID.items():
        expected = [("baseline", baseline)] + [
            (f"{var}={value}", {**baseline, var: value}) for var, values in changes
            for value in values]
        settings = get_task(name).settings()
        assert [s.name for s in settings] == [n for n, _ in expected]
        for s, (_, params) in zip(settings, expected):
            assert dict(s.params) == {**params, "num_test_examples": 1280}


@pytest.mark.skipif(not REFERENCE_CSV.exists(), reason="reference data not available")
def test_grid_matches_the_reference_table():
    rows = list(csv.DictReader(REFERENCE_CSV.open()))
    assert len(rows) == 66
    seen = set()
    for row in rows:
        name = ("baseline" if row["varied_variable"] == "baseline"
                else f"{row['varied_variable']}={row['varied_value']}")
        s = get_task(row["task"]).setting(name)
        seen.add((row["task"], name))
        for field in ("vocab_size", "seq_len", "num_train_examples", "num_test_examples",
                      "noise_vocab_size", "num_tokens_to_copy", "k_motif_size", "frac_noise"):
            if field in s.params:
                assert float(s.params[field]) == float(row[field]), (row["task"], name, field)
    assert seen == {(t.name, s.name) for t in all_tasks() for s in t.settings()}


def test_hashes_are_pinned():
    """Changing a setting, a task version or the hashing changes these: bump versions then."""
    from madbench_tasks import TASKS

    assert get_task("in-context-recall").setting("baseline").hash == "269b16de1a605128"
    assert suite_hash(list(TASKS)) == "147c87a3aaaafa2d"
    hashes = [s.hash for t in all_tasks() for s in t.settings()]
    assert len(set(hashes)) == 66


# -- shapes, vocabularies --------------------------------------------------------------------

@pytest.mark.parametrize("task_name", TASK_ORDER)
def test_every_setting_generates_int64_tokens_inside_its_vocabulary(task_name):
    task = get_task(task_name)
    for s in task.settings():
        layout = task.vocabulary(s.params)
        allowed = set()
        for where in layout.values():
            ids = range(*where) if isinstance(where, list) else [where]
            assert not allowed & set(ids), f"{s.name}: overlapping vocabulary entries"
            allowed |= set(ids)
        assert allowed <= set(range(s.vocab_size))
        for split in ("train", "test"):
            inputs, targets = task.sample(s.params, 3, split, np.random.default_rng(0),
                                          task.shared(s.params, np.random.default_rng(1)))
            width = s.seq_len - INPUT_SHORTER_BY.get(task_name, 0)
            assert inputs.shape == targets.shape == (3, width)
            assert inputs.dtype == targets.dtype == np.int64
            assert set(np.unique(inputs).tolist()) <= allowed
            assert set(np.unique(targets[targets != IGNORE]).tolist()) <= allowed
            assert (targets != IGNORE).any()


# -- random streams, determinism, disjointness ------------------------------------------------

@pytest.mark.parametrize("task_name", TASK_ORDER)
def test_same_seed_same_bytes_other_seed_other_data(task_name):
    task, s = small(task_name)
    a_train, a_test = generate_splits(task, s, seed=3)
    b_train, b_test = generate_splits(task, s, seed=3)
    c_train, c_test = generate_splits(task, s, seed=4)
    assert a_train.inputs.tobytes() == b_train.inputs.tobytes()
    assert a_test.targets.tobytes() == b_test.targets.tobytes()
    assert a_train.hash == b_train.hash and a_test.hash == b_test.hash
    assert a_train.hash != c_train.hash and a_test.hash != c_test.hash
    assert a_train.hash != a_test.hash
    # generate() alone gives the same test split as generate_splits()
    assert generate(task, s, "test", seed=3).hash == a_test.hash


@pytest.mark.parametrize("task_name", TASK_ORDER)
def test_generation_leaves_global_random_state_alone(task_name):
    task, s = small(task_name)
    np_state, py_state = np.random.get_state(), random.getstate()
    generate_splits(task, s, seed=0)
    after = np.random.get_state()
    assert all(np.array_equal(a, b) for a, b in zip(np_state, after))
    assert random.getstate() == py_state


@pytest.mark.parametrize("task_name", ["in-context-recall", "selective-copying", "compression"])
def test_test_split_does_not_depend_on_train_size(task_name):
    task, big = small(task_name, num_train=64)
    _, few = small(task_name, num_train=16)
    assert big.hash != few.hash
    assert generate(task, big, "test").hash == generate(task, few, "test").hash
    assert generate(task, big, "train").hash != generate(task, few, "train").hash


@pytest.mark.parametrize("task_name", TASK_ORDER)
def test_no_test_sequence_occurs_in_the_train_split(task_name):
    task, s = small(task_name, num_train=200, num_test=100)
    train, test = generate_splits(task, s)
    assert not {r.tobytes() for r in test.inputs} & {r.tobytes() for r in train.inputs}


def test_overlapping_test_sequences_are_redrawn():
    """Compression with 2 data tokens and 3 positions has 8 possible sequences: a train split
    of 5 overlaps any fresh test draw, and generate() redraws until it is disjoint."""
    task, s = small("compression", vocab_size=3, seq_len=4, num_train=5, num_test=3)
    train, test = generate_splits(task, s)
    raw = task.sample(s.params, 3, "test", split_rng(s, "test", 0))[0]
    train_rows = {tuple(r) for r in train.inputs.tolist()}
    assert train_rows & {tuple(r) for r in raw.tolist()}            # the first draw overlaps
    assert not train_rows & {tuple(r) for r in test.inputs.tolist()}
    assert (test.targets[:, :-1] == test.inputs[:, :-1]).all()
    assert generate_splits(task, s)[1].hash == test.hash


def test_impossible_disjointness_is_an_error():
    task, s = small("compression", vocab_size=3, seq_len=2, num_train=20, num_test=2)
    with pytest.raises(MadbenchError, match="disjoint"):
        generate_splits(task, s)


def test_bad_split_or_seed_is_a_usage_error():
    task, s = small("compression")
    with pytest.raises(UsageError, match="split"):
        generate(task, s, "valid")
    with pytest.raises(UsageError, match="seed"):
        generate(task, s, "train", seed=-1)
