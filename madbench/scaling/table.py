"""Runs tables: the scaling runs as one table, read and shaped for the fits (``analysis``,
``state``), ``frontiers``, ``validate``, ``correlate`` and ``plots``.

A run directory's scaling records become one Parquet table (``export_table``: its
``isoflop.parquet``); ``read_runs`` reads runs from such a table, a CSV file or a run directory
and checks the columns every fit needs (a :class:`MalformedTable` names the first problem);
``by_arch``, ``columns``, ``arch_budget_groups`` and ``budgets_of`` shape the rows for the fits.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ..errors import UsageError, printable
from ..limits import is_number, positive_number
from ..records import of_kind
from ..store import ResultsStore, encode_row, write_table
from .fits import budget_groups

REQUIRED_COLUMNS = ("arch", "params", "tokens", "flops", "loss")


def scaling_records(store: ResultsStore) -> list[dict[str, Any]]:
    """The scaling records of ``store`` (``madbench.records.of_kind``: a directory of other
    records is a UsageError); an unreadable or misshapen one is skipped with a warning."""
    return of_kind(store.records(), "scaling", store.root)


def export_table(store: ResultsStore, path: str | Path) -> Path:
    """All scaling records of ``store`` as one Parquet table (JSON columns as text)."""
    import pyarrow as pa
    rows = [encode_row(r) for r in scaling_records(store)]
    path = Path(path)            # atomic; its temporary file where the store heals them
    write_table(pa.Table.from_pylist(rows), path, store.dir)
    return path


class MalformedTable(UsageError):
    """A table whose content is not runs (not CSV or Parquet, empty, a column missing, a value
    that is not a positive number): a usage error (exit 2) for the commands that read runs, an
    invalid submission (exit 3) for ``scaling validate``."""


def read_table(path: str | Path) -> list[dict[str, Any]]:
    """The rows of a CSV (``.csv``) or Parquet (``.parquet``, ``.pq``) file; a file that
    cannot be parsed is a :class:`MalformedTable`, one that cannot be opened a UsageError."""
    path = Path(path)
    kind = {".csv": "CSV", ".parquet": "Parquet", ".pq": "Parquet"}.get(path.suffix.lower())
    if kind is None:
        raise UsageError(f"{path}: a table must be a .parquet or .csv file")
    try:
        if kind == "CSV":
            import pyarrow.csv as pacsv
            return pacsv.read_csv(path).to_pylist()
        import pyarrow.parquet as pq
        return pq.read_table(path).to_pylist()
    except (FileNotFoundError, PermissionError, IsADirectoryError) as exc:
        raise UsageError(f"{path}: cannot read: {exc.strerror or exc}") from None
    except (ValueError, OSError, TypeError) as exc:   # pyarrow's ArrowInvalid is a ValueError
        why = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        if why.startswith("CSV parse error:"):      # the offending row, often binary, left out
            why = ":".join(why.split(":")[:2])
        raise MalformedTable(f"{path}: not a readable {kind} table: "
                             f"{printable(why[:120])}") from None


def read_runs(path: str | Path) -> list[dict[str, Any]]:
    """Runs from a Parquet file, a CSV file or a run directory (its scaling records,
    ``scaling_records``), checked for the columns every fit needs (a :class:`MalformedTable`
    names the first problem). A run whose loss is NaN or infinite (or null: a CSV's ``nan``
    or empty cell) or that is marked ``diverged`` is left out with a warning; a loss that is
    no number (text) makes the table malformed."""
    path = Path(path)
    if path.is_dir():
        rows = scaling_records(ResultsStore(path, create=False))
        if not rows:
            raise UsageError(f"{path}: no runs")
    elif not path.is_file():
        raise UsageError(f"{path}: no such file or run directory")
    elif path.suffix.lower() in (".csv", ".parquet", ".pq"):
        rows = read_table(path)
    else:
        raise UsageError(f"{path}: runs must be a .parquet or .csv file or a run directory")
    if not rows:
        raise MalformedTable(f"{path}: no runs")
    missing = [c for c in REQUIRED_COLUMNS if c not in rows[0]]
    if missing:
        raise MalformedTable(f"{path}: missing column(s) {', '.join(missing)} (need "
                             f"{', '.join(REQUIRED_COLUMNS)})")
    numbered = list(enumerate(rows, 1))
    bad = first_bad([(i, r.get("loss")) for i, r in numbered if r.get("loss") is not None],
                     is_number)
    if bad:
        i, v = bad
        raise MalformedTable(f"{path}: row {i} has loss={printable(repr(v))}; loss must be "
                             "a number (NaN or inf for a diverged run)")
    kept = [(i, r) for i, r in numbered
            if not r.get("diverged") and r.get("loss") is not None and math.isfinite(r["loss"])]
    if len(kept) < len(rows):
        import sys
        print(f"Warning: {path}: {len(rows) - len(kept)} diverged run(s) (non-finite loss) "
              "left out", file=sys.stderr)
    if not kept:
        raise MalformedTable(f"{path}: every run diverged")
    for c in REQUIRED_COLUMNS[1:] + ("budget",):       # budget: optional, checked where given
        bad = first_bad([(i, r.get(c)) for i, r in kept if c != "budget" or
                          r.get(c) is not None], positive_number)
        if bad:
            raise MalformedTable(f"{path}: row {bad[0]} has {c}={printable(repr(bad[1]))}; {c} "
                                 "must be a positive number")
    return [r for _, r in kept]


def require_numbers(rows: Sequence[dict[str, Any]], column: str, purpose: str,
                    zero: bool = False) -> None:
    """Every run's ``column`` is a finite positive number (or zero with ``zero``), for a
    column a fit reads beyond the required ones (``--params-column``, a state column): a
    :class:`MalformedTable` names the first run that breaks it."""
    if any(row.get(column) is None for row in rows):
        raise MalformedTable(f"{purpose} needs the column {column!r} in every run")
    bad = first_bad([(row["arch"], row[column]) for row in rows],
                     lambda v: positive_number(v) or (zero and is_number(v) and v == 0))
    if bad:
        raise MalformedTable(f"{purpose}: a run of {printable(repr(bad[0]))} has "
                             f"{column}={printable(repr(bad[1]))}; {column} must be a "
                             f"{'non-negative' if zero else 'positive'} number")


def first_bad(labelled: list[tuple[Any, Any]], ok) -> tuple[Any, Any] | None:
    """The first (label, value) that is not ``ok``; in a CSV column that one cell made text
    (every cell is then a string), the first cell that does not spell a number."""
    bad = [b for b in labelled if not ok(b[1])]
    return next((b for b in bad if not _spells_number(b[1])), bad[0]) if bad else None


def _spells_number(value: Any) -> bool:
    try:
        float(value)
    except (TypeError, ValueError):
        return False
    return True


def by_arch(rows: Sequence[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """The rows of each architecture. One architecture's runs are fitted as one set of curves,
    so they must share a corpus and a sequence length (where the rows say): a UsageError
    names the first that mixes them."""
    out: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        out.setdefault(str(row["arch"]), []).append(row)
    for arch, arch_rows in out.items():
        for column in ("corpus_sha256", "seq_len"):
            values = {r.get(column) for r in arch_rows} - {None, ""}
            if len(values) > 1:
                shown = ", ".join(sorted(str(v)[:12] for v in values))
                raise MalformedTable(f"the runs of {arch!r} mix {column} values ({shown}): "
                                     "one set of IsoFLOP curves needs one corpus and sequence "
                                     "length; give them separately")
    return out


def columns(rows: Sequence[dict[str, Any]], *names: str) -> list[np.ndarray]:
    return [np.array([float(r[n]) for r in rows]) for n in names]


def arch_budget_groups(rows: Sequence[dict[str, Any]]) -> dict[str, dict[float, list[int]]]:
    """Row indices per architecture and budget (the ``budget`` column, else FLOPs within a
    factor 1.25: :func:`madbench.scaling.fits.budget_groups`), budgets in increasing order."""
    out: dict[str, dict[float, list[int]]] = {}
    for arch in sorted({str(r["arch"]) for r in rows}):
        idx = [i for i, r in enumerate(rows) if str(r["arch"]) == arch]
        sub = [rows[i] for i in idx]
        labels = budget_groups(columns(sub, "flops")[0], budgets_of(sub))
        out[arch] = {float(c): [idx[j] for j in np.flatnonzero(labels == c)]
                     for c in np.unique(labels)}
    return out


def budgets_of(rows: Sequence[dict[str, Any]]) -> np.ndarray | None:
    """The rows' ``budget`` column, or None (group by FLOPs) unless every row has one."""
    if all(r.get("budget") for r in rows):
        return columns(rows, "budget")[0]
    return None
