"""The results store: one Parquet file per finished run under ``RUN_DIR/records/``, named by
the run's content key and written atomically (temporary file, fsync, rename). A killed process
loses at most the run in flight; a record is never half-written or duplicated, and re-running a
command skips every run whose key is already stored."""
from __future__ import annotations

import functools
import json
import os
import tempfile
from pathlib import Path
from typing import Any, Iterable

import pyarrow as pa
import pyarrow.parquet as pq

from .errors import UsageError
from .hashing import content_hash

RECORDS = "records"


def run_key(arch_hash: str, setting_hash: str, protocol_hash: str, lr: float,
            weight_decay: float, seed: int, madbench_version: str) -> str:
    """The content key of one run: everything that determines its outcome."""
    return content_hash({"arch": arch_hash, "setting": setting_hash, "protocol": protocol_hash,
                         "lr": lr, "weight_decay": weight_decay, "seed": seed,
                         "madbench": madbench_version}, length=24)


class ResultsStore:
    """Run records of one run directory."""

    def __init__(self, run_dir: str | os.PathLike, create: bool = True):
        self.root = Path(run_dir)
        self.dir = self.root / RECORDS
        if create:
            self.dir.mkdir(parents=True, exist_ok=True)
        elif not self.dir.is_dir():
            raise UsageError(f"{run_dir}: not a madbench run directory (no {RECORDS}/ folder)")

    def path(self, key: str) -> Path:
        return self.dir / f"{key}.parquet"

    def has(self, key: str) -> bool:
        return self.path(key).exists()

    def _files(self) -> list[Path]:
        """Finished record files (temporary files of an interrupted write start with '.')."""
        return sorted(p for p in self.dir.glob("*.parquet") if not p.name.startswith("."))

    def keys(self) -> set[str]:
        return {p.stem for p in self._files()}

    def append(self, record: dict[str, Any]) -> None:
        """Write one record atomically; a record with the same key is left as it is."""
        key = record["run_key"]
        if self.has(key):
            return
        table = pa.Table.from_pylist([encode_row(record)])
        fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".parquet", dir=self.dir)
        try:
            os.fchmod(fd, 0o666 & ~_umask())     # mkstemp's 0600 would hide it from the group
            with os.fdopen(fd, "wb") as fh:
                pq.write_table(table, fh)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, self.path(key))
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)

    def records(self) -> list[dict[str, Any]]:
        """Every stored record, JSON columns decoded."""
        out = []
        for p in self._files():
            for row in pq.read_table(p).to_pylist():
                out.append({k: _decode(k, v) for k, v in row.items()})
        return out


@functools.lru_cache(maxsize=1)
def _umask() -> int:
    """The process's umask (read by setting it and setting it back, once)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


_JSON_COLUMNS = {"provenance", "architecture", "protocol", "checks", "setting_params"}


def encode_row(record: dict[str, Any]) -> dict[str, Any]:
    """A record as a flat Parquet row: dict and list values as JSON text."""
    return {k: json.dumps(v) if isinstance(v, (dict, list)) else v for k, v in record.items()}


def _decode(key: str, value: Any) -> Any:
    if key in _JSON_COLUMNS and isinstance(value, str):
        return json.loads(value)
    return value


def load_records(run_dirs: Iterable[str | os.PathLike]) -> list[dict[str, Any]]:
    out = []
    for d in run_dirs:
        out.extend(ResultsStore(d, create=False).records())
    return out
