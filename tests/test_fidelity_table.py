"""benchmarks/fidelity.py's table logic: per setting only the newest training code's records
count, and several seeds are averaged (best of the sweep per seed, then the mean)."""
import importlib.util
from pathlib import Path

from madbench.store import ResultsStore

ROOT = Path(__file__).resolve().parents[1]


def load_fidelity():
    spec = importlib.util.spec_from_file_location("fidelity", ROOT / "benchmarks" / "fidelity.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def record(n, version, created, seed, lr, accuracy):
    return {"run_key": f"k{n}", "task": "in-context-recall", "setting": "s", "seed": seed,
            "lr": lr, "weight_decay": 0.0, "accuracy": accuracy, "loss": 1.0 - accuracy,
            "madbench_version": version, "created_at": created}


def test_newest_version_wins_and_seeds_are_averaged(tmp_path):
    store = ResultsStore(tmp_path / "arm")
    rows = [record(0, "old", "2026-01-01", 0, 1e-3, 0.99),     # older code: ignored
            record(1, "new", "2026-02-01", 0, 1e-3, 0.50),
            record(2, "new", "2026-02-01", 0, 1e-4, 0.70),     # seed 0's best
            record(3, "new", "2026-02-02", 1, 1e-3, 0.90),     # seed 1's best
            record(4, "new", "2026-02-02", 1, 1e-4, 0.20)]
    for r in rows:
        store.append(r)
    best = load_fidelity().best_per_setting(tmp_path / "arm")
    (only,) = best.values()
    assert only["madbench_version"] == "new"
    assert only["seeds"] == [0.70, 0.90]
    assert abs(only["accuracy"] - 0.80) < 1e-12
    assert only["lr"] == 1e-4                                  # the first seed's choice


def test_missing_run_directory_gives_nothing(tmp_path):
    assert load_fidelity().best_per_setting(tmp_path / "absent") == {}
