"""The results store: atomic one-file-per-run records, idempotent by run key."""
import math

import numpy as np
import pytest
from helpers import eval_record, scaling_record

from madbench.store import ResultsStore, run_key


def test_append_is_idempotent_and_round_trips(tmp_path):
    store = ResultsStore(tmp_path)
    key = run_key("a", "s", "p", 1e-3, 0.0, 0, "0.1.0")
    rec = eval_record(run_key=key, accuracy=0.5, provenance={"torch": "x"}, task="t")
    store.append(rec)
    store.append({**rec, "accuracy": 0.9})          # same key: the first record stays
    assert store.keys() == {key}
    assert store.records() == [rec]


def test_run_key_covers_every_input():
    base = ("a", "s", "p", 1e-3, 0.0, 0, "0.1.0")
    keys = {run_key(*base)}
    for i, other in enumerate(["b", "t", "q", 5e-4, 0.1, 1, "0.2.0"]):
        changed = list(base)
        changed[i] = other
        keys.add(run_key(*changed))
    assert len(keys) == 8


def test_leftover_temporary_files_are_not_records(tmp_path):
    store = ResultsStore(tmp_path)
    (store.dir / ".tmp-abc.parquet").write_bytes(b"half a file")   # a killed writer's leftover
    assert store.keys() == set() and store.records() == []


def test_records_are_readable_as_the_umask_allows(tmp_path):
    """Not mkstemp's 0600: a shared run directory is readable by the group (umask 002/022)."""
    import os
    import stat
    old = os.umask(0o002)
    try:
        from madbench import store as store_module
        store_module._umask.cache_clear()
        store = ResultsStore(tmp_path)
        key = run_key("a", "s", "p", 1e-3, 0.0, 0, "0.1.0")
        store.append(eval_record(run_key=key, accuracy=0.5))
        assert stat.S_IMODE(store.path(key).stat().st_mode) == 0o664
    finally:
        os.umask(old)
        store_module._umask.cache_clear()


def test_run_keys_follow_the_training_code(monkeypatch):
    """A change to the backbone or a training loop (their source is hashed into the version the
    keys carry) gives every run a new key: stored results are never reused across it."""
    from madbench import __version__, code_identity, sweep
    from madbench.architecture import resolve_architecture
    from madbench.protocol import get_protocol
    from madbench.tasks import get_task
    version = code_identity.run_version()
    assert version.startswith(__version__ + "+")
    monkeypatch.setattr(code_identity, "TRAINING_MODULES", ("model.py",))
    assert code_identity.run_version() != version          # the hash covers each module
    monkeypatch.undo()
    spec, proto = resolve_architecture("mh-attention-swiglu"), get_protocol("smoke")
    task = get_task("memorization")
    before = {j.key for j in sweep.plan(spec, [task], proto, [0])}
    monkeypatch.setattr(sweep, "run_version", lambda: version + "-edited")
    assert before.isdisjoint({j.key for j in sweep.plan(spec, [task], proto, [0])})


@pytest.mark.parametrize("record, why", [
    (eval_record(run_key="a" * 24, accuracy=None), "'accuracy' is null"),
    ({k: v for k, v in eval_record(run_key="a" * 24).items() if k != "loss"}, "no 'loss'"),
    (scaling_record(run_key="a" * 24, loss="nan"), "'loss' is str 'nan'"),
    (scaling_record(run_key="a" * 24, architecture=[1]), "'architecture' is list")])
def test_a_record_without_its_shape_is_refused_on_write_not_only_on_read(tmp_path, record, why):
    """It used to be written, and only every later read skipped it ("not a record")."""
    store = ResultsStore(tmp_path)
    with pytest.raises(ValueError, match=f"not writing a record of run 'a{{24}}'.*{why}"):
        store.append(record)
    assert list(store.dir.iterdir()) == []
    store.append(scaling_record(run_key="b" * 24, loss=float("nan"), diverged=True))
    store.append(scaling_record(run_key="c" * 24, params=np.int64(10), flops=np.int64(1200),
                                loss=np.float32(2.5), diverged=np.bool_(False)))
    diverged, numpy = store.records()                # NaN and NumPy numbers: numbers, stored
    assert diverged["diverged"] is True and math.isnan(diverged["loss"])
    assert (numpy["params"], numpy["flops"], numpy["loss"], numpy["diverged"]) == (
        10, 1200, 2.5, False)
