"""The task contract: a task has a name, a version, a baseline setting, one-at-a-time changes
and a vectorised generator. Settings are named ``baseline`` or ``<variable>=<value>``.

Data generation is a pure function of (task, version, setting, split, seed): each split has its
own random stream from ``numpy.random.SeedSequence``; no global RNG is touched.
"""
from __future__ import annotations

from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Mapping

import numpy as np

from .errors import UsageError
from .hashing import content_hash

IGNORE = -100  #: target value of a position that is not scored
SPLITS = ("train", "test")


@dataclass(frozen=True)
class Setting:
    """One point of a task's difficulty grid, with every parameter resolved."""

    task: str
    version: int
    name: str
    params: Mapping[str, Any]

    @property
    def seq_len(self) -> int:
        return int(self.params["seq_len"])

    @property
    def vocab_size(self) -> int:
        return int(self.params["vocab_size"])

    @property
    def num_train(self) -> int:
        return int(self.params["num_train_examples"])

    @property
    def num_test(self) -> int:
        return int(self.params["num_test_examples"])

    @property
    def hash(self) -> str:
        return content_hash({"task": self.task, "version": self.version,
                             "setting": self.name, "params": dict(self.params)})


@dataclass(frozen=True)
class Dataset:
    """Generated sequences: int64 arrays of shape [N, L]; targets are IGNORE where unscored."""

    inputs: np.ndarray
    targets: np.ndarray
    setting: Setting
    split: str
    seed: int


class Task:
    """Base class for tasks. Subclasses set the class attributes and implement ``sample``.

    - ``name``, ``version`` (bump when the generated data change), ``description``;
    - ``baseline``: dict with at least ``vocab_size``, ``seq_len``, ``num_train_examples``,
      ``num_test_examples``;
    - ``changes``: ordered dict ``variable -> tuple of values``, each varied alone;
    - ``model``: ``"lm"`` (language-model backbone) or ``"autoencoder"`` (compression decoder).
    """

    name: str = ""
    version: int = 1
    description: str = ""
    baseline: Mapping[str, Any] = MappingProxyType({})
    changes: Mapping[str, tuple] = MappingProxyType({})
    model: str = "lm"

    def sample(self, params: Mapping[str, Any], num: int, split: str,
               rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """Return ``num`` sequences as (inputs, targets), int64 arrays [num, L]."""
        raise NotImplementedError

    def vocabulary(self, params: Mapping[str, Any]) -> dict[str, Any]:
        """The vocabulary layout: ids (or [start, stop) ranges) of keys, values, specials."""
        return {}

    # -- the grid -------------------------------------------------------------------------
    def settings(self) -> list[Setting]:
        """The baseline, then each change in order (one variable at a time)."""
        out = [Setting(self.name, self.version, "baseline", MappingProxyType(dict(self.baseline)))]
        for variable, values in self.changes.items():
            for value in values:
                params = dict(self.baseline)
                params[variable] = value
                out.append(Setting(self.name, self.version, f"{variable}={value}",
                                   MappingProxyType(params)))
        return out

    def setting(self, name: str) -> Setting:
        for s in self.settings():
            if s.name == name:
                return s
        names = ", ".join(s.name for s in self.settings())
        raise UsageError(f"task {self.name!r} has no setting {name!r} (choose from: {names})")


def split_rng(setting: Setting, split: str, seed: int) -> np.random.Generator:
    """The random stream of one split, seeded from (task, version, setting, split, seed).

    The test stream ignores the train-set size, so settings that differ only in
    ``num_train_examples`` share their test set."""
    if split not in SPLITS:
        raise UsageError(f"split must be one of {', '.join(SPLITS)}, not {split!r}")
    params = dict(setting.params)
    if split == "test":
        params.pop("num_train_examples", None)
    key = content_hash({"task": setting.task, "version": setting.version, "params": params,
                        "split": split})
    words = [int(key[i:i + 8], 16) for i in range(0, len(key), 8)]
    return np.random.default_rng(np.random.SeedSequence([int(seed), *words]))


def generate(task: Task, setting: Setting | str, split: str, seed: int = 0,
             train_inputs: np.ndarray | None = None) -> Dataset:
    """Generate one split of one setting. The test split does not depend on the train size,
    and no test input sequence occurs verbatim in the train split of the same seed (pass
    ``train_inputs`` to skip regenerating the train split for that check)."""
    if isinstance(setting, str):
        setting = task.setting(setting)
    num = setting.num_train if split == "train" else setting.num_test
    inputs, targets = task.sample(setting.params, num, split, split_rng(setting, split, seed))
    if split == "test":
        if train_inputs is None:
            train_inputs = task.sample(setting.params, setting.num_train, "train",
                                       split_rng(setting, "train", seed))[0]
        inputs, targets = _resample_overlap(task, setting, inputs, targets, seed, train_inputs)
    return Dataset(np.ascontiguousarray(inputs, dtype=np.int64),
                   np.ascontiguousarray(targets, dtype=np.int64), setting, split, seed)


def generate_splits(task: Task, setting: Setting | str, seed: int = 0) -> tuple[Dataset, Dataset]:
    """Both splits of one setting, (train, test), generating the train split only once."""
    train = generate(task, setting, "train", seed)
    return train, generate(task, train.setting, "test", seed, train_inputs=train.inputs)


def _resample_overlap(task, setting, inputs, targets, seed, train, max_rounds: int = 100):
    """Replace test sequences that also occur in the train split by fresh ones."""
    seen = {row.tobytes() for row in np.ascontiguousarray(train, dtype=np.int64)}
    rng = split_rng(setting, "test", seed + 1_000_003)
    inputs = np.array(inputs, dtype=np.int64)
    targets = np.array(targets, dtype=np.int64)
    for _ in range(max_rounds):
        dup = np.array([row.tobytes() in seen for row in inputs])
        if not dup.any():
            return inputs, targets
        new_in, new_t = task.sample(setting.params, int(dup.sum()), "test", rng)
        inputs[dup], targets[dup] = new_in, new_t
    raise RuntimeError(f"{setting.task}/{setting.name}: could not draw test sequences disjoint "
                       "from the train set")


def suite_hash(tasks: list[Task]) -> str:
    """One hash over every (task, version, setting) of the suite."""
    return content_hash(sorted(s.hash for t in tasks for s in t.settings()))
