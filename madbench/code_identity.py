"""What identifies the code a mixer runs, for result keys.

- A class from a plugin installed as a regular (non-editable) distribution is identified by
  ``distribution==version``: installed files do not change under a fixed version.
- Anything else (the bundled plugins, an editable install, an import path into a checkout or a
  local file) is identified by a hash of the source of its whole top-level package (every
  ``.py`` file below it), so an edit to a kernel or reference op the mixer calls changes the
  key, not only an edit to the mixer's own module. A top-level module that is a single file is
  hashed alone.
"""
from __future__ import annotations

import hashlib
import json
import sys
from importlib import metadata
from pathlib import Path
from . import __version__

UNKNOWN = "unknown"
_digests: dict[tuple, str] = {}


def package_root(module_name: str) -> Path | None:
    """The directory of the top-level package of ``module_name`` (or the file of a top-level
    module), from the imported module; None when it has no file."""
    top = sys.modules.get(module_name.split(".")[0])
    path = getattr(top, "__file__", None)
    if not path:
        return None
    path = Path(path).resolve()
    return path.parent if path.name == "__init__.py" else path


def source_files(root: Path) -> list[Path]:
    """The ``.py`` files of a package directory (sorted, caches skipped), or ``[root]``."""
    if root.is_file():
        return [root]
    return sorted(p for p in root.rglob("*.py")
                  if "__pycache__" not in p.parts and p.is_file())


def source_digest(root: Path) -> str:
    """SHA-256 (16 hex digits) over the relative paths and bytes of ``source_files(root)``;
    recomputed only when a file's size or modification time changes."""
    files = source_files(root)
    base = root.parent if root.is_file() else root
    stamp = []
    for p in files:
        info = p.stat()
        stamp.append((p.relative_to(base).as_posix(), info.st_size, info.st_mtime_ns))
    key = (str(root), tuple(stamp))
    if key not in _digests:
        digest = hashlib.sha256()
        for p, (rel, _, _) in zip(files, stamp):
            digest.update(rel.encode() + b"\0")
            digest.update(p.read_bytes())
            digest.update(b"\0")
        _digests[key] = digest.hexdigest()[:16]
    return _digests[key]


def is_editable(dist: metadata.Distribution) -> bool:
    """Whether a distribution is an editable (development) install (PEP 610)."""
    try:
        text = dist.read_text("direct_url.json")
        return bool(text and json.loads(text).get("dir_info", {}).get("editable"))
    except (OSError, ValueError):
        return False


def installed_version(distribution: str | None) -> str | None:
    """``distribution``'s installed version when it is installed and not editable, else
    None."""
    if not distribution:
        return None
    try:
        dist = metadata.distribution(distribution)
    except metadata.PackageNotFoundError:
        return None
    return None if is_editable(dist) else dist.version


def code_identity(module_name: str, distribution: str | None = None,
                  bundled: bool = False) -> str:
    """``dist==version`` for a non-bundled, non-editable installed distribution; else the
    source digest of the module's top-level package (``unknown`` when it has no files)."""
    if not bundled:
        version = installed_version(distribution)
        if version is not None:
            return f"{distribution}=={version}"
    root = package_root(module_name)
    if root is None or not root.exists():
        return UNKNOWN
    try:
        return source_digest(root)
    except OSError:
        return UNKNOWN



#: madbench's own modules that decide a run's outcome besides the mixers, the task data and the
#: protocol (each hashed in its own key): the backbones and the training loops.
TRAINING_MODULES = ("model.py", "loop.py", "trainer.py", "graphed.py", "batched.py",
                    "cuda_graphs.py", "metrics.py")


def run_version() -> str:
    """madbench's version plus a hash of ``TRAINING_MODULES``: what run keys and records carry,
    so that a change to the backbone or a training loop never reuses a stored result."""
    here = Path(__file__).resolve().parent
    digest = hashlib.sha256()
    for name in TRAINING_MODULES:
        digest.update(name.encode() + b"\0" + (here / name).read_bytes() + b"\0")
    return f"{__version__}+{digest.hexdigest()[:12]}"
