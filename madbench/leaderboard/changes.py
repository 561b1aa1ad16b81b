"""Which submission files a pull request adds or changes: git's view of the working tree
against the merge base of a base ref and ``HEAD`` (uncommitted and untracked files included),
so that CI re-runs only the new or changed entries."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Iterable

from ..errors import UsageError


def _git(cwd: Path, *args: str) -> str:
    try:
        out = subprocess.run(["git", *args], cwd=cwd, capture_output=True, timeout=60,
                             encoding=sys.getfilesystemencoding(),   # names as os.listdir
                             errors=sys.getfilesystemencodeerrors())  # decodes them
    except (OSError, subprocess.SubprocessError) as exc:
        raise UsageError(f"git {' '.join(args)}: {exc}") from None
    if out.returncode != 0:
        message = (out.stderr.strip().splitlines() or ["failed"])[-1]
        raise UsageError(f"git {' '.join(args)}: {message}")
    return out.stdout


def changed_files(paths: Iterable[str | Path], base: str) -> set[Path]:
    """Resolved paths of the files below ``paths`` that differ from the merge base of
    ``base`` and HEAD (added, copied, modified or renamed), or that git does not track yet.
    Raises UsageError when git cannot answer (not a repository, unknown base)."""
    paths = [Path(p).resolve() for p in paths]
    where = paths[0] if paths[0].is_dir() else paths[0].parent
    root = Path(_git(where, "rev-parse", "--show-toplevel").strip())
    merge_base = _git(root, "merge-base", base, "HEAD").strip()
    specs = [str(p) for p in paths]
    # -z: names exactly as they are (without it git quotes and escapes non-ASCII names)
    names = _git(root, "diff", "-z", "--name-only", "--diff-filter=ACMR", merge_base, "--",
                 *specs).split("\0")
    names += _git(root, "ls-files", "-z", "--others", "--exclude-standard", "--", *specs
                  ).split("\0")
    return {(root / n).resolve() for n in names if n}
