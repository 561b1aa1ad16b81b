"""Checks of command-line arguments that must hold before any work starts, each failing in one
line (exit 2): a file to write at the end can be written, a run directory can be written, a
device string names a device here. ``madbench eval`` runs them before the first run trains, so
that a bad argument costs no training."""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

from ..errors import UsageError


def _named(path: str | os.PathLike, option: str) -> None:
    """An empty path names nothing (``Path('')`` would be the current folder)."""
    if not os.fspath(path):
        raise UsageError(f"{option} '': an empty path names no file or folder")


def writable_file(path: str | os.PathLike, option: str) -> Path:
    """``path`` can be created or overwritten: its folder exists and a file can be created in
    it (probed with a temporary file, removed at once: permission bits do not tell, e.g. for
    root or on a read-only or virtual file system), and it is not a folder. ``path`` itself is
    not touched."""
    _named(path, option)
    path = Path(path)
    parent = path.parent if str(path.parent) else Path(".")
    if path.is_dir():
        raise UsageError(f"{option} {path}: is a directory")
    if not parent.is_dir():
        raise UsageError(f"{option} {path}: the folder {parent} does not exist")
    if path.exists() and not os.access(path, os.W_OK):
        raise UsageError(f"{option} {path}: not writable")
    try:
        with tempfile.NamedTemporaryFile(dir=parent, prefix=".probe-"):
            pass
    except OSError as exc:
        raise UsageError(f"{option} {path}: the folder {parent} is not writable "
                         f"({exc.strerror or type(exc).__name__})") from None
    return path


def writable_dir(path: str | os.PathLike, option: str) -> Path:
    """A file can be created in folder ``path`` (probed with a temporary file, removed at
    once, as are the folders made for the probe: a command refused later leaves nothing)."""
    _named(path, option)
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise UsageError(f"{option} {path}: is a file, not a folder")
    made = [p for p in (path, *path.parents) if not p.exists()]
    try:
        for attempt in range(5):     # another process's probe may remove the folder between
            try:
                path.mkdir(parents=True, exist_ok=True)
                with tempfile.NamedTemporaryFile(dir=path, prefix=".probe-"):
                    break
            except (FileNotFoundError, FileExistsError):
                if attempt == 4:
                    raise
    except OSError as exc:
        raise UsageError(f"{option} {path}: cannot write there "
                         f"({exc.strerror or type(exc).__name__})") from None
    finally:
        for folder in made:          # innermost first; one another process filled stays
            try:
                folder.rmdir()
            except OSError:
                break
    return path


def distinct_paths(paths, follow_links: bool = True) -> list:
    """``paths`` each once (the same file or folder by its resolved path), as first given: a
    path given twice (``r r``, ``r ./r``, ``r r/.``, a folder and a file listed under it) is
    read, warned about and reported once. With ``follow_links`` false a symbolic link is kept
    apart from its target (``leaderboard validate`` fails a link, never drops it)."""
    seen: dict[Path, object] = {}
    for p in paths:
        path = Path(p)
        key = (path.parent.resolve() / path.name if not follow_links and path.is_symlink()
               else path.resolve())
        seen.setdefault(key, p)
    return list(seen.values())


def run_dir_of(path: str | os.PathLike, kind: str, option: str) -> None:
    """``path``, if it is a run directory already, holds records of ``kind``
    (``madbench.records.record_kind``): one command's runs never land among another's, where
    its reports cannot read them. Cheap: one readable record is read (a directory holds one
    kind, since every command that writes one checks this)."""
    from ..records import record_kind, wrong_kind
    from ..store import RECORDS, ResultsStore
    if not Path(path, RECORDS).is_dir():
        return
    store = ResultsStore(path, create=False)
    for key in sorted(store.keys()):
        row = store.record(key)
        if row is None:                 # unreadable: the command that heals says so
            continue
        found = record_kind(row)
        if found != kind:
            raise UsageError(wrong_kind(path, found, kind, option))
        return
