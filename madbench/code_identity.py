"""What identifies the code a mixer runs, for result keys.

- A class from a plugin installed as a regular (non-editable) distribution is identified by
  ``distribution==version``: installed files do not change under a fixed version.
- A bundled plugin's class (``madbench_layers``) is identified by a hash of its own module and
  of every module of its package that it imports, directly or through those modules
  (``import_closure``: imports read from the source, anywhere in a file, with the ``__init__``
  of each subpackage on the way), so an edit to a kernel or op the mixer calls changes the key,
  and an edit to an unrelated layer's module does not.
- Anything else (an editable install, an import path into a checkout or a local file) is
  identified by a hash of the source of its whole top-level package (every ``.py`` file below
  it): its imports may be dynamic, so nothing narrower is safe. A top-level module that is a
  single file is hashed alone.
"""
from __future__ import annotations

import ast
import hashlib
import json
import sys
from importlib import metadata
from pathlib import Path
from . import __version__

UNKNOWN = "unknown"
_digests: dict[tuple, str] = {}
_closures: dict[tuple, list[Path]] = {}


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


def _imported_files(path: Path, package: str, root: Path) -> list[Path]:
    """The files of the package at ``root`` (named ``package``) that the source of ``path``
    imports: the modules named, the subpackages' ``__init__`` on the way, and, for ``from X
    import name``, ``X.name`` where that is a module."""
    here = list(path.relative_to(root).with_suffix("").parts[:-1])   # path's own package
    targets = []
    for node in ast.walk(ast.parse(path.read_bytes())):
        if isinstance(node, ast.Import):
            targets += [a.name.split(".")[1:] for a in node.names
                        if a.name.split(".")[0] == package]
        elif isinstance(node, ast.ImportFrom):
            module = node.module.split(".") if node.module else []
            if node.level:
                if node.level - 1 > len(here):
                    continue                                   # above the package
                mod = here[:len(here) - node.level + 1] + module
            elif module[0] == package:
                mod = module[1:]
            else:
                continue
            targets += [mod] + [mod + [a.name] for a in node.names if a.name != "*"]
            if any(a.name == "*" for a in node.names) and root.joinpath(*mod).is_dir():
                targets += [list(p.relative_to(root).with_suffix("").parts)
                            for p in source_files(root.joinpath(*mod))]
    files = []
    for parts in targets:
        for i in range(1, len(parts) + 1):
            for candidate in (root.joinpath(*parts[:i]).with_suffix(".py"),
                              root.joinpath(*parts[:i], "__init__.py")):
                if candidate.is_file():
                    files.append(candidate)
    return files


def import_closure(module_name: str) -> list[Path]:
    """The source file of ``module_name`` (with its subpackages' ``__init__``) and of every module
    of its top-level package that it imports, transitively, and the package's own ``__init__``
    (hashed but not followed: a registering ``__init__`` imports every module); sorted. A star
    import of a subpackage reaches all of it."""
    package = module_name.split(".")[0]
    root = package_root(module_name)
    key = (str(root), module_name, _stamp(source_files(root), root))   # parsed again after an edit
    if key not in _closures:
        parts = module_name.split(".")[1:]
        start = [p for p in (root.joinpath(*parts).with_suffix(".py"),
                             root.joinpath(*parts, "__init__.py")) if parts and p.is_file()]
        start += [root.joinpath(*parts[:i], "__init__.py") for i in range(1, len(parts))]
        seen, todo = set(start), list(start)
        while todo:
            for f in _imported_files(todo.pop(), package, root):
                if f not in seen:
                    seen.add(f)
                    if f != root / "__init__.py":     # hashed, not followed: it imports all
                        todo.append(f)
        _closures[key] = sorted(seen | {root / "__init__.py"})
    return list(_closures[key])


def _stamp(files: list[Path], base: Path) -> tuple:
    """(path relative to ``base``, size, modification time) of each file."""
    return tuple((p.relative_to(base).as_posix(), info.st_size, info.st_mtime_ns)
                 for p, info in ((p, p.stat()) for p in files))


def files_digest(files: list[Path], base: Path) -> str:
    """SHA-256 (16 hex digits) over the paths (relative to ``base``) and bytes of ``files``;
    recomputed only when a file's size or modification time changes."""
    stamp = _stamp(files, base)
    key = (str(base), stamp)
    if key not in _digests:
        digest = hashlib.sha256()
        for p, (rel, _, _) in zip(files, stamp):
            digest.update(rel.encode() + b"\0")
            digest.update(p.read_bytes())
            digest.update(b"\0")
        _digests[key] = digest.hexdigest()[:16]
    return _digests[key]


def source_digest(root: Path) -> str:
    """``files_digest`` of ``source_files(root)``: a whole package (or a single-file module)."""
    return files_digest(source_files(root), root.parent if root.is_file() else root)


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
    """``dist==version`` for a non-bundled, non-editable installed distribution; for a bundled
    module the digest of its ``import_closure``; else the source digest of the module's
    top-level package (``unknown`` when it has no files)."""
    if not bundled:
        version = installed_version(distribution)
        if version is not None:
            return f"{distribution}=={version}"
    root = package_root(module_name)
    if root is None or not root.exists():
        return UNKNOWN
    try:
        if bundled and root.is_dir() and "." in module_name:
            try:
                return files_digest(import_closure(module_name), root)
            except (SyntaxError, ValueError):   # unreadable imports: the whole package then
                pass
        return source_digest(root)
    except OSError:
        return UNKNOWN



#: madbench's own modules that decide a run's outcome besides the mixers, the task data and the
#: protocol (each hashed in its own key): the backbones, the training loops, and the fla adapter
#: and guard (they wrap every fla layer and pick the kernels of the bundled DeltaNet-class ops).
TRAINING_MODULES = ("model.py", "loop.py", "trainer.py", "graphed.py", "batched.py",
                    "cuda_graphs.py", "metrics.py", "fla_adapter.py", "fla_guard.py")


def run_version() -> str:
    """madbench's version plus a hash of ``TRAINING_MODULES``: what run keys and records carry,
    so that a change to the backbone or a training loop never reuses a stored result."""
    here = Path(__file__).resolve().parent
    digest = hashlib.sha256()
    for name in TRAINING_MODULES:
        digest.update(name.encode() + b"\0" + (here / name).read_bytes() + b"\0")
    return f"{__version__}+{digest.hexdigest()[:12]}"
