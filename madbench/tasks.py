"""The task contract: a task has a name, a version, a baseline setting, one-at-a-time changes
and a vectorised generator. Settings are named ``baseline`` or ``<variable>=<value>``.

Data generation is a pure function of (task, version, setting, split, seed): each split has its
own random stream from ``numpy.random.SeedSequence``; no global RNG is touched. Data shared by
both splits (memorization's fact table) comes from a third stream, ``shared``.
"""
from __future__ import annotations

import hashlib
import numbers
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Mapping

import numpy as np

from .errors import MadbenchError, UsageError
from .hashing import content_hash
from .plugins import get_registry
from .suggest import did_you_mean

IGNORE = -100  #: target value of a position that is not scored
SPLITS = ("train", "test")
#: the parameters every task's baseline sets (``Setting`` reads them)
TASK_PARAMS = ("vocab_size", "seq_len", "num_train_examples", "num_test_examples")


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

    @property
    def hash(self) -> str:
        """Content hash of the generated arrays (shapes and bytes)."""
        digest = hashlib.sha256()
        for array in (self.inputs, self.targets):
            digest.update(str(array.shape).encode())
            digest.update(np.ascontiguousarray(array, dtype=np.int64).tobytes())
        return digest.hexdigest()[:16]


class Task:
    """Base class for tasks. Subclasses set the class attributes and implement ``sample``.

    - ``name``, ``version`` (bump when the generated data change), ``description``;
    - ``baseline``: dict with at least ``TASK_PARAMS``: ``vocab_size``, ``seq_len``,
      ``num_train_examples``, ``num_test_examples``;
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
               rng: np.random.Generator, shared: Any = None) -> tuple[np.ndarray, np.ndarray]:
        """Return ``num`` sequences as (inputs, targets), int64 arrays [num, L]. ``shared`` is
        what :meth:`shared` returned for this (setting, seed)."""
        raise NotImplementedError

    def shared(self, params: Mapping[str, Any], rng: np.random.Generator) -> Any:
        """Data shared by the train and test split of one (setting, seed), drawn from its own
        stream (memorization's fact table). None by default."""
        return None

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
        names = [s.name for s in self.settings()]
        raise UsageError(f"task {self.name!r} has no setting {name!r} "
                         f"({did_you_mean(name, names)}choose from: {', '.join(names)})")


def task_problem(name: str, task: Any) -> str | None:
    """Why ``task`` cannot be registered as ``name``, or None: it must be a ``Task`` instance
    named ``name``, its baseline must set ``TASK_PARAMS`` and each change a baseline variable
    (checked when a plugin registers it, so that a slip is one warning naming the plugin)."""
    if isinstance(task, type):
        return (f"task {name!r} is the class {task.__name__}; register an instance: "
                f"register({name!r}, {task.__name__}())")
    if not isinstance(task, Task):
        return f"task {name!r} must be a madbench.tasks.Task instance, not a {type(task).__name__}"
    if task.name != name:
        return f"task {task.name!r} is registered as {name!r}; register it under its name"
    missing = [p for p in TASK_PARAMS if p not in task.baseline]
    if missing:
        return (f"task {name!r}: its baseline lacks {', '.join(missing)} (every baseline sets "
                f"{', '.join(TASK_PARAMS)})")
    unknown = [v for v in task.changes if v not in task.baseline]
    if unknown:
        return (f"task {name!r}: changes vary {', '.join(map(repr, unknown))}, which the "
                f"baseline does not set ({did_you_mean(unknown[0], task.baseline)}baseline: "
                f"{', '.join(task.baseline)})")
    return None


def split_rng(setting: Setting, split: str, seed: int) -> np.random.Generator:
    """The random stream of one split, seeded from (task, version, setting, split, seed).

    The test stream ignores the train-set size, so settings that differ only in
    ``num_train_examples`` share their test set."""
    if split not in SPLITS:
        raise UsageError(f"split must be one of {', '.join(SPLITS)}, not {split!r}")
    return _stream_rng(setting, split, seed)


def _stream_rng(setting: Setting, stream: str, seed: int) -> np.random.Generator:
    """A named random stream of one (setting, seed); only ``train`` depends on the train size."""
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise UsageError(f"seed must be a non-negative integer, not {seed!r}")
    params = dict(setting.params)
    if stream != "train":
        params.pop("num_train_examples", None)
    key = content_hash({"task": setting.task, "version": setting.version, "params": params,
                        "split": stream})
    words = [int(key[i:i + 8], 16) for i in range(0, len(key), 8)]
    return np.random.default_rng(np.random.SeedSequence([int(seed), *words]))


def shared_data(task: Task, setting: Setting, seed: int) -> Any:
    """What both splits of (setting, seed) share (see :meth:`Task.shared`)."""
    return task.shared(setting.params, _stream_rng(setting, "shared", seed))


def generate(task: Task, setting: Setting | str, split: str, seed: int = 0,
             train_inputs: np.ndarray | None = None) -> Dataset:
    """Generate one split of one setting. The test split does not depend on the train size,
    and no test input sequence occurs verbatim in the train split of the same seed (pass
    ``train_inputs`` to skip regenerating the train split for that check)."""
    if isinstance(setting, str):
        setting = task.setting(setting)
    rng = split_rng(setting, split, seed)
    shared = shared_data(task, setting, seed)
    num = setting.num_train if split == "train" else setting.num_test
    inputs, targets = _sample(task, setting, num, split, rng, shared)
    if split == "test":
        if train_inputs is None:
            train_inputs = _sample(task, setting, setting.num_train, "train",
                                   split_rng(setting, "train", seed), shared)[0]
        inputs, targets = _resample_overlap(task, setting, inputs, targets, seed, train_inputs,
                                            shared)
    if len(targets) and not np.any(np.asarray(targets) != IGNORE):
        raise MadbenchError(f"task {task.name!r} ({setting.name}, {split} split): every target "
                            f"is {IGNORE} (unscored), so nothing would be trained or scored")
    return Dataset(np.ascontiguousarray(inputs, dtype=np.int64),
                   np.ascontiguousarray(targets, dtype=np.int64), setting, split, seed)


def _sample(task: Task, setting: Setting, num: int, split: str, rng: np.random.Generator,
            shared: Any) -> tuple[np.ndarray, np.ndarray]:
    """``task.sample``; ``shared`` is passed only when the task has any, so that tasks written
    as ``sample(params, num, split, rng)`` keep working."""
    where = f"task {task.name!r} ({setting.name}, {split} split)"
    try:
        if shared is None:
            returned = task.sample(setting.params, num, split, rng)
        else:
            returned = task.sample(setting.params, num, split, rng, shared)
    except MadbenchError:
        raise
    except Exception as exc:  # noqa: BLE001 - a plugin's generator: named in the one line
        raise MadbenchError(f"{where} failed to sample: {type(exc).__name__}: {exc}"
                            .splitlines()[0]) from exc
    if not (isinstance(returned, (tuple, list)) and len(returned) == 2):
        size = f" of {len(returned)}" if isinstance(returned, (tuple, list)) else ""
        raise MadbenchError(f"{where}: sample returned {type(returned).__name__}{size}; "
                            "expected a pair (inputs, targets)")
    inputs, targets = returned
    if np.ndim(inputs) != 2 or np.shape(inputs) != np.shape(targets) or len(inputs) != num:
        raise MadbenchError(f"task {task.name!r} returned inputs {np.shape(inputs)} and targets "
                            f"{np.shape(targets)} for {num} sequences; expected two equal "
                            "[num, length] arrays")
    _check_tokens(where, np.asarray(inputs), np.asarray(targets), setting.vocab_size)
    return inputs, targets


def _check_tokens(where: str, inputs: np.ndarray, targets: np.ndarray, vocab_size: int) -> None:
    """Token ids are integers in [0, vocab_size), targets too where not IGNORE: the model's
    embedding and head have vocab_size rows (else an index error in the middle of training)."""
    for kind, ids in (("inputs", inputs), ("targets", targets)):
        if ids.size and ids.dtype.kind not in "iu":
            raise MadbenchError(f"{where}: {kind} are {ids.dtype}; expected integer token ids")
    scored = targets[targets != IGNORE]
    for kind, ids in (("inputs", inputs), ("targets", scored)):
        if ids.size and (ids.min() < 0 or ids.max() >= vocab_size):
            bad = ids.min() if ids.min() < 0 else ids.max()
            raise MadbenchError(f"{where}: {kind} hold token {bad}, outside [0, {vocab_size}) "
                                f"(vocab_size {vocab_size}; unscored targets are {IGNORE})")


def vocabulary_layout(task: Task, setting: Setting) -> dict[str, Any]:
    """``task.vocabulary`` at ``setting``, checked: each name maps to a token id or a
    ``[start, stop)`` range within ``[0, vocab_size)``; else a one-line error naming the task."""
    layout = task.vocabulary(setting.params)
    size = setting.vocab_size

    def is_id(x: Any) -> bool:
        return isinstance(x, numbers.Integral) and not isinstance(x, bool)

    def fits(where: Any) -> bool:
        if is_id(where):
            return 0 <= where < size
        return (isinstance(where, (list, tuple)) and len(where) == 2 and all(map(is_id, where))
                and 0 <= where[0] <= where[1] <= size)
    if isinstance(layout, Mapping) and all(isinstance(k, str) and k and fits(w)
                                           for k, w in layout.items()):
        return dict(layout)
    text = repr(layout)
    raise MadbenchError(f"task {task.name!r} ({setting.name}): vocabulary() returned "
                        f"{text if len(text) <= 80 else text[:77] + '...'}; expected a dict of "
                        f"name -> token id or [start, stop) range within [0, {size})")


def model_length(task: Task, setting: Setting) -> int:
    """The length of the sequences the model reads on ``setting`` (in-context and noisy recall
    give it ``seq_len - 1`` tokens): one test sequence is drawn to find out."""
    inputs, _ = _sample(task, setting, 1, "test", split_rng(setting, "test", 0),
                        shared_data(task, setting, 0))
    return int(np.shape(inputs)[1])


def generate_splits(task: Task, setting: Setting | str, seed: int = 0) -> tuple[Dataset, Dataset]:
    """Both splits of one setting, (train, test), generating the train split only once."""
    train = generate(task, setting, "train", seed)
    return train, generate(task, train.setting, "test", seed, train_inputs=train.inputs)


def _row_hashes(rows: np.ndarray) -> np.ndarray:
    """A 64-bit hash per row (a random linear form, wrapping); equal rows hash equal."""
    weights = np.random.default_rng(0x5EED).integers(1, 2**63, rows.shape[1], dtype=np.uint64)
    return np.ascontiguousarray(rows, dtype=np.int64).view(np.uint64) @ (weights | np.uint64(1))


def _in_train(inputs: np.ndarray, train: np.ndarray, train_hashes: np.ndarray) -> np.ndarray:
    """Which rows of ``inputs`` occur verbatim in ``train`` (hash match, then exact check)."""
    found = np.zeros(len(inputs), dtype=bool)
    if train.shape[1:] != inputs.shape[1:] or len(train) == 0:
        return found
    for i in np.flatnonzero(np.isin(_row_hashes(inputs), train_hashes)):
        found[i] = bool((train == inputs[i]).all(axis=1).any())
    return found


def _resample_overlap(task, setting, inputs, targets, seed, train, shared=None,
                      max_rounds: int = 100):
    """Replace test sequences that also occur in the train split by fresh ones."""
    train = np.ascontiguousarray(train, dtype=np.int64)
    train_hashes = _row_hashes(train)
    inputs = np.array(inputs, dtype=np.int64)
    targets = np.array(targets, dtype=np.int64)
    rng = None
    for _ in range(max_rounds):
        dup = _in_train(inputs, train, train_hashes)
        if not dup.any():
            return inputs, targets
        if rng is None:
            rng = _stream_rng(setting, "test-resample", seed)
        new_in, new_t = _sample(task, setting, int(dup.sum()), "test", rng, shared)
        inputs[dup], targets[dup] = new_in, new_t
    raise MadbenchError(f"{setting.task}/{setting.name}: could not draw test sequences "
                        "disjoint from the train set")


def suite_hash(tasks: list[Task]) -> str:
    """One hash over every (task, version, setting) of the suite."""
    return content_hash(sorted(s.hash for t in tasks for s in t.settings()))


def get_task(name: str) -> Task:
    """The registered task called ``name`` (bundled or from a plugin)."""
    reg = get_registry()
    tasks = reg.tasks
    if name not in tasks:
        known = ", ".join(tasks) or "none"
        raise UsageError(f"unknown task {name!r} ({did_you_mean(name, tasks)}known tasks: "
                         f"{known}){reg.failure_note()}")
    return tasks[name].obj


def all_tasks() -> list[Task]:
    """Every registered task, in registration order (the bundled six first)."""
    return [entry.obj for entry in get_registry().tasks.values()]
