"""The results store: one Parquet file per finished run under ``RUN_DIR/records/``, named by
the run's content key and written atomically (temporary file, fsync, rename). A killed process
loses at most the run in flight; a record is never half-written or duplicated, and re-running a
command skips every run whose key is already stored.

A file under ``records/`` that is not a readable record of the key it is named by (truncated,
emptied, junk, another program's file, a row without the shape of a record:
``madbench.records.shape_problem``) is unreadable. Only a command that trains heals a run
directory (``heal``, run before it plans its work): such a file is moved to
``RUN_DIR/quarantine/`` with a one-line warning, so its run is trained again, and a temporary
file whose writer is gone (its process no longer runs on this host, or it is older than
``STALE_SECONDS``) is removed. Reading (``records``, ``load_records``) changes nothing: it skips
an unreadable file with a warning. Writing (``append``) refuses a record without that shape, so
that the store never holds one it would not read."""
from __future__ import annotations

import errno
import functools
import json
import os
import re
import socket
import tempfile
import time
from pathlib import Path
from typing import Any, Iterable

import pyarrow as pa
import pyarrow.parquet as pq

from .errors import MadbenchError, UsageError, warn
from .hashing import content_hash
from .records import JSON_FIELDS, of_kind, shape_problem

RECORDS = "records"
QUARANTINE = "quarantine"
#: a record file is named by its key: hex digits, ``.parquet``
RECORD_NAME = re.compile(r"^[0-9a-f]{16,64}\.parquet$")
#: temporary files: ``.tmp-<host>-<pid>-<random>.parquet`` (older ones: ``.tmp-<random>``)
TMP_PREFIX = ".tmp-"
TMP_NAME = re.compile(r"^\.tmp-(?P<host>[A-Za-z0-9_.]+)-(?P<pid>\d+)-")
#: a temporary file older than this is stale whoever wrote it (a writer on another host)
STALE_SECONDS = 6 * 3600
_HOST = re.sub(r"[^A-Za-z0-9_.]", "_", socket.gethostname()) or "host"


def write_table(table: pa.Table, path: Path, folder: Path | None = None) -> None:
    """Write ``table`` to ``path`` as Parquet atomically: a temporary file of its own in
    ``folder`` (default: beside ``path``; on the same file system), named by host and process
    so that ``heal`` removes it once its writer is gone, fsync, rename; nothing is left when
    the write fails."""
    tmp = None
    try:
        fd, tmp = tempfile.mkstemp(prefix=f"{TMP_PREFIX}{_HOST}-{os.getpid()}-",
                                   suffix=".parquet", dir=folder or path.parent)
        os.fchmod(fd, 0o666 & ~_umask())     # mkstemp's 0600 would hide it from the group
        with os.fdopen(fd, "wb") as fh:
            pq.write_table(table, fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        if tmp is not None and os.path.exists(tmp):
            os.unlink(tmp)


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

    def missing(self, keys, heal: bool = True) -> set[str]:
        """Those of ``keys`` without a readable record. The store is healed first (``heal``);
        without it nothing is changed (a dry run) and an unreadable record counts as missing."""
        if heal:
            self.heal()
            return {key for key in keys if not self.has(key)}
        bad = {path.stem for path, _ in self.problems()}
        return {key for key in keys if key in bad or not self.has(key)}

    def _files(self) -> list[Path]:
        """Finished record files (temporary files of an interrupted write start with '.')."""
        return sorted(p for p in self.dir.glob("*.parquet") if not p.name.startswith("."))

    def keys(self) -> set[str]:
        return {p.stem for p in self._files()}

    def append(self, record: dict[str, Any]) -> None:
        """Write one record atomically; a record with the same key is left as it is. A write
        that fails (read-only directory, full disk) raises one line and leaves no file. A
        record without the shape that reading checks (``shape_problem``) is a programming
        error: a ValueError, nothing written."""
        problem = shape_problem(record)
        if problem:
            raise ValueError(f"not writing a record of run {record.get('run_key')!r} under "
                             f"{self.dir}: {problem}")
        key = record["run_key"]
        if self.has(key):
            return
        try:
            write_table(pa.Table.from_pylist([encode_row(record)]), self.path(key))
        except OSError as exc:
            raise MadbenchError(f"cannot write the record of run {key} under {self.dir}: "
                                f"{exc.strerror or exc}; the runs stored so far are kept"
                                ) from None

    def record(self, key: str) -> dict[str, Any] | None:
        """The stored record of run ``key``, or None when there is none that reads."""
        rows, problem = _read_record(self.path(key)) if self.has(key) else ([], "absent")
        return None if problem else rows[0]

    def records(self) -> list[dict[str, Any]]:
        """Every stored record, JSON columns decoded; an unreadable file is skipped with a
        warning (nothing is moved: ``heal`` does that, for the commands that train)."""
        out = []
        for p in self._files():
            rows, problem = _read_record(p)
            if problem:
                warn(f"{p}: {problem}; skipped")
                continue
            out.extend(rows)
        return out

    # -- healing ---------------------------------------------------------------------------
    def heal(self) -> int:
        """Remove stale temporary files and move aside every file under ``records/`` that is
        not a readable record of the key it is named by; returns how many were moved aside.
        Their runs are no longer stored, so a sweep trains them again."""
        for p in self.dir.glob(f"{TMP_PREFIX}*"):
            if _stale_temporary(p):
                _unlink_quietly(p)
        return sum(self._set_aside(p, problem) for p, problem in self.problems())

    def problems(self) -> list[tuple[Path, str]]:
        """The files under ``records/`` that ``heal`` moves aside, with why; nothing moved."""
        out = []
        for p in sorted(self.dir.iterdir()):
            if p.name.startswith("."):
                continue
            if not p.is_file() or not RECORD_NAME.match(p.name):
                out.append((p, "not a madbench record"))
            elif (problem := _read_record(p)[1]):
                out.append((p, problem))
        return out

    def _set_aside(self, path: Path, problem: str) -> bool:
        """Move ``path`` to ``RUN_DIR/quarantine/`` (one warning line); False when it cannot
        be moved (then it is only skipped)."""
        target_dir = self.root / QUARANTINE
        try:
            target_dir.mkdir(exist_ok=True)
            target = target_dir / path.name
            n = 1
            while target.exists():
                target = target_dir / f"{path.stem}.{n}{path.suffix}"
                n += 1
            os.replace(path, target)
        except OSError as exc:
            if not path.exists():            # another process moved it first
                return False
            warn(f"{path}: {problem}; skipped (cannot move it aside: {exc.strerror or exc})")
            return False
        warn(f"{path}: {problem}; moved to {target}, its run will be trained again")
        return True


def _read_record(path: Path) -> tuple[list[dict[str, Any]], str | None]:
    """The decoded row of one record file, or the reason it is not a record of its key."""
    try:
        rows = pq.read_table(path).to_pylist()
    except Exception as exc:  # noqa: BLE001 - truncated, empty or junk files, of any kind
        return [], f"unreadable ({type(exc).__name__}: {str(exc).splitlines()[0][:100] if str(exc) else ''})"
    if len(rows) != 1 or rows[0].get("run_key") != path.stem:
        return [], "not a record of the run it is named by"
    try:
        row = {k: _decode(k, v) for k, v in rows[0].items()}
    except ValueError as exc:
        return [], f"unreadable (a JSON column: {exc})"
    problem = shape_problem(row)
    return ([], problem) if problem else ([row], None)


def _stale_temporary(path: Path) -> bool:
    """A temporary file whose writer is gone: a dead process of this host, or old."""
    try:
        age = time.time() - path.stat().st_mtime
    except OSError:
        return False
    match = TMP_NAME.match(path.name)
    if match and match["host"] == _HOST:
        return not _alive(int(match["pid"])) or age > STALE_SECONDS
    return age > STALE_SECONDS


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except OSError as exc:
        return exc.errno == errno.EPERM
    return True


def _unlink_quietly(path: Path) -> None:
    try:
        path.unlink()
    except OSError:
        pass


@functools.lru_cache(maxsize=1)
def _umask() -> int:
    """The process's umask (read by setting it and setting it back, once)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def encode_row(record: dict[str, Any]) -> dict[str, Any]:
    """A record as a flat Parquet row: dict and list values as JSON text."""
    return {k: json.dumps(v) if isinstance(v, (dict, list)) else v for k, v in record.items()}


def _decode(key: str, value: Any) -> Any:
    if key in JSON_FIELDS and isinstance(value, str):
        return json.loads(value)
    return value


def load_records(run_dirs: Iterable[str | os.PathLike]) -> list[dict[str, Any]]:
    """The eval records of ``run_dirs`` (report, compare, plot), each run once: a run key
    stored in several of them (a copy) is read from the first. A folder of other records
    (``madbench scaling run``'s) is a usage error (``madbench.records.of_kind``)."""
    out: dict[str, dict[str, Any]] = {}
    for d in run_dirs:
        for r in of_kind(ResultsStore(d, create=False).records(), "eval", d):
            out.setdefault(r["run_key"], r)
    return list(out.values())
