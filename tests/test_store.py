"""The results store: atomic one-file-per-run records, idempotent by run key."""
from madbench.store import ResultsStore, run_key


def test_append_is_idempotent_and_round_trips(tmp_path):
    store = ResultsStore(tmp_path)
    key = run_key("a", "s", "p", 1e-3, 0.0, 0, "0.1.0")
    rec = {"run_key": key, "accuracy": 0.5, "provenance": {"torch": "x"}, "task": "t"}
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
