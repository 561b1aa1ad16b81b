"""Which code named by a submission may run here.

Validating a submission must not run code the submission chooses. A mixer named in a
submission is rebuilt only when its code is already trusted by this installation:

- a layer of madbench's bundled plugins (registered name, shorthand, or an import path
  ``module:Class`` into a bundled layer package);
- a mixer of an installed plugin distribution (one that declares ``madbench`` entry points),
  registered through them or given as an import path into that distribution's files, when the
  submission names that distribution and the version installed here
  (``architecture.distributions``).

An import path is trusted only as ``module:Class``: never a ``__main__`` module (importing it
runs a program) nor an attribute chain (``pkg.mod:torch.nn.X`` reaches any module).

Anything else (an import path to a module in the working directory, to the standard library,
to a package no installed distribution provides) is judged *untrusted*, and nothing of it is
imported: the decision is made from the registry and from ``importlib`` metadata and path
lookups, which execute no module. ``allow_untrusted`` (the CLI's ``--trust-code``, in the
spirit of ``trust_remote_code``) lifts this; even then modules are not searched in the working
directory unless it is on ``PYTHONPATH`` explicitly (``working_directory_excluded``).
"""
from __future__ import annotations

import contextlib
import functools
import importlib.util
import json
import os
import sys
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Iterator

from .. import architecture
from ..plugins import BUNDLED_DISTRIBUTION, get_registry


@dataclass(frozen=True)
class CodeVerdict:
    """Whether the code of one mixer named by a submission may be imported here, and why."""

    mixer: str
    trusted: bool
    reason: str


@functools.lru_cache(maxsize=1)
def _packages() -> dict[str, list[str]]:
    return metadata.packages_distributions()


def _bundled_layer_packages() -> set[str]:
    """The top-level packages that hold the mixers of madbench's bundled plugins (not
    madbench itself: its modules are the harness, and ``madbench.__main__`` runs the CLI)."""
    reg = get_registry()
    bundled = {p.name for p in reg.plugins if p.bundled}
    return {e.obj.__module__.split(".")[0] for e in reg.mixers.values()
            if e.plugin in bundled and hasattr(e.obj, "__module__")} - {"madbench"}


def _named(arch: dict) -> dict[str, tuple[str | None, str | None]]:
    """mixer name -> (distribution, version) as the submission names them."""
    return {d["name"]: (d["distribution"], d["version"]) for d in arch.get("distributions", [])}


def _registered(name: str):
    reg = get_registry()
    if name in reg.mixers:
        return reg.mixers[name]
    return next((e for e in reg.mixers.values() if e.metadata.get("shorthand") == name), None)


def _editable_root(dist: metadata.Distribution) -> Path | None:
    try:
        info = json.loads(dist.read_text("direct_url.json") or "{}")
    except (OSError, ValueError):
        return None
    url = info.get("url", "")
    if info.get("dir_info", {}).get("editable") and url.startswith("file://"):
        return Path(url[len("file://"):]).resolve()
    return None


def _origin(top: str) -> Path | None:
    """Where ``import top`` would load from, found without executing anything."""
    module = sys.modules.get(top)
    spec = getattr(module, "__spec__", None) if module is not None else None
    if spec is None:
        try:
            spec = importlib.util.find_spec(top)
        except (ImportError, ValueError):
            return None
    if spec is None:
        return None
    where = spec.origin if spec.origin not in (None, "namespace") else (
        next(iter(spec.submodule_search_locations or []), None))
    return Path(where).resolve() if where else None


def _provides(dist: metadata.Distribution, path: Path) -> bool:
    """Whether ``path`` is one of ``dist``'s installed files (or lies in its editable tree)."""
    files = dist.files or []
    if any(Path(dist.locate_file(f)).resolve() == path for f in files):
        return True
    root = _editable_root(dist)
    return root is not None and root in path.parents


def judge_mixer(name: str, named: dict[str, tuple[str | None, str | None]]) -> CodeVerdict:
    """The verdict for one mixer name of a submission (see the module docstring)."""
    entry = _registered(name)
    if entry is not None:
        info = next((p for p in get_registry().plugins if p.name == entry.plugin), None)
        if info is not None and info.bundled:
            return CodeVerdict(name, True, "bundled")
        if info is None or not info.distribution:
            return CodeVerdict(name, False, f"mixer {name!r} is registered at run time by "
                               f"{entry.plugin!r}, not by an installed distribution")
        claim = named.get(name)
        if claim != (info.distribution, info.version):
            return CodeVerdict(name, False, f"mixer {name!r} comes from {info.distribution} "
                               f"{info.version} here, but the submission names "
                               + (f"{claim[0]} {claim[1]}" if claim else "no distribution"))
        return CodeVerdict(name, True, f"{info.distribution}=={info.version}")
    module, sep, attr = name.partition(":")
    if not sep or not module or not attr:
        return CodeVerdict(name, False, f"mixer {name!r} is neither registered here nor an "
                           "import path")
    if "__main__" in module.split(".") or not attr.isidentifier():
        return CodeVerdict(name, False, f"{name!r} is not a module and a class defined in it "
                           "(a __main__ module runs a program when imported; an attribute "
                           "chain reaches code of any other module)")
    top = module.split(".")[0]
    if top in _bundled_layer_packages():
        return CodeVerdict(name, True, "bundled")
    dists = [d for d in _packages().get(top, []) if d != BUNDLED_DISTRIBUTION]
    claim = named.get(name)
    for dist_name in dists:
        try:
            dist = metadata.distribution(dist_name)
        except metadata.PackageNotFoundError:
            continue
        if not any(ep.group == "madbench" for ep in dist.entry_points):
            continue                  # not a madbench plugin distribution (torch, numpy...)
        if claim != (dist.metadata["Name"], dist.version) and claim != (dist_name, dist.version):
            continue
        origin = _origin(top)
        if origin is not None and _provides(dist, origin):
            return CodeVerdict(name, True, f"{dist_name}=={dist.version}")
        return CodeVerdict(name, False, f"{module!r} would load from {origin}, which is not "
                           f"part of the installed distribution {dist_name}")
    if dists:
        return CodeVerdict(name, False, f"{module!r} belongs to {', '.join(dists)}, which is "
                           "not a madbench plugin distribution named by the submission with the "
                           "version installed here")
    return CodeVerdict(name, False, f"{module!r} is in neither madbench's bundled layer "
                       "packages nor an installed plugin distribution")


def untrusted_mixers(arch: dict) -> list[CodeVerdict]:
    """The verdicts of the submission's mixers whose code is not trusted here (none: every
    mixer may be rebuilt). ``arch`` is the submission's ``architecture`` block."""
    named = _named(arch)
    names = list(dict.fromkeys(layer["mixer"] for layer in arch["spec"]["layers"]))
    return [v for v in map(lambda n: judge_mixer(n, named), names) if not v.trusted]


@contextlib.contextmanager
def working_directory_excluded() -> Iterator[None]:
    """No module is imported from the working directory implicitly: '' and the working
    directory are taken off ``sys.path`` (as ``python -m`` puts them there), and ``--arch``'s
    working-directory fallback is off, for the duration."""
    cwd = os.getcwd()
    explicit = {os.path.abspath(p) for p in os.environ.get("PYTHONPATH", "").split(os.pathsep)
                if p}
    saved, flag = list(sys.path), architecture.import_from_working_directory
    sys.path[:] = [p for p in sys.path if p not in ("", ".", cwd) or
                   (p and os.path.abspath(p) in explicit)]
    architecture.import_from_working_directory = False
    try:
        yield
    finally:
        sys.path[:] = saved
        architecture.import_from_working_directory = flag
