"""Plugin manager and registry: loads entry points in group ``madbench`` and collects what
they register.

Environment variables:

- ``MADBENCH_DISABLE_PLUGINS=a,b`` blocks the named plugins (entry-point names).
- ``MADBENCH_LOAD_PLUGINS=a,b`` loads only the bundled plugins plus the named ones; set and
  empty, it loads only the bundled plugins.

A name in either that no plugin has (a typo) is warned about once, in one line that lists
the plugins there are. Each plugin warning is given once per command: the worker processes a
command starts (local workers, a local Ray instance's) inherit ``MADBENCH_PLUGIN_WARNINGS``,
which lists the warnings given, and load the plugins again without repeating them.
"""
from __future__ import annotations

import hashlib
import importlib.metadata as md
import os
import sys
from dataclasses import dataclass, field
from typing import Any

import pluggy

from . import hookspecs
from .errors import PluginConflictError, raised_at, warn as _warn

BUNDLED_DISTRIBUTION = "madbench"
CATEGORIES = ("tasks", "mixers", "architectures", "corpora")
#: plugins inside the madbench package itself, registered before the entry points (name, module)
CORE_PLUGINS = (("scaling-corpora", "madbench.scaling.corpus"),)
_HOOKS = {c: f"madbench_register_{c}" for c in CATEGORIES}
#: short hashes of the plugin warnings this process, or the one that started it, gave
WARNED_ENV = "MADBENCH_PLUGIN_WARNINGS"


@dataclass
class Entry:
    """One registered item: a task, a mixer or an architecture."""

    name: str
    obj: Any
    plugin: str
    metadata: dict = field(default_factory=dict)


@dataclass
class PluginInfo:
    name: str
    distribution: str | None
    version: str | None
    bundled: bool
    hooks: list[str] = field(default_factory=list)
    registered: dict[str, list[str]] = field(default_factory=dict)


@dataclass
class Failure:
    name: str
    distribution: str | None
    error: str


@dataclass
class Registry:
    """Everything the loaded plugins registered, by category and name."""

    tasks: dict[str, Entry] = field(default_factory=dict)
    mixers: dict[str, Entry] = field(default_factory=dict)
    architectures: dict[str, Entry] = field(default_factory=dict)
    corpora: dict[str, Entry] = field(default_factory=dict)
    plugins: list[PluginInfo] = field(default_factory=list)
    failures: list[Failure] = field(default_factory=list)

    def category(self, name: str) -> dict[str, Entry]:
        return getattr(self, name)

    def failure_note(self) -> str:
        """For an 'unknown name' error: which plugins failed to load (what they register is
        missing), or ''."""
        names = sorted({f.name for f in self.failures})
        if not names:
            return ""
        return (f"; plugin {', '.join(map(repr, names))} failed to load, so what "
                f"{'it registers' if len(names) == 1 else 'they register'} is missing "
                "('madbench plugins' says why)")


_pm: pluggy.PluginManager | None = None
_registry: Registry | None = None
_dist_of: dict[str, tuple[str | None, str | None, bool]] = {}
_failures: list[Failure] = []


def _env_list(var: str) -> list[str] | None:
    value = os.environ.get(var)
    if value is None:
        return None
    return [v.strip() for v in value.split(",") if v.strip()]


def _warn_once(message: str) -> None:
    """``warn``, unless this process or the process that started it gave the same warning
    (``WARNED_ENV``, which worker processes inherit)."""
    key = hashlib.sha256(message.encode()).hexdigest()[:12]
    given = _env_list(WARNED_ENV) or []
    if key not in given:
        _warn(message)
        os.environ[WARNED_ENV] = ",".join([*given, key])


def _load_core_plugins(pm: pluggy.PluginManager) -> None:
    import importlib
    disabled = set(_env_list("MADBENCH_DISABLE_PLUGINS") or [])
    for name, module in CORE_PLUGINS:
        if name in disabled:
            continue
        pm.register(importlib.import_module(module), name=name)
        _dist_of[name] = (BUNDLED_DISTRIBUTION, _own_version(), True)


def _own_version() -> str | None:
    try:
        return md.version(BUNDLED_DISTRIBUTION)
    except md.PackageNotFoundError:
        return None


def _load_entry_points(pm: pluggy.PluginManager) -> set[str]:
    """Load the entry points that the switches allow; returns the names of all of them."""
    disabled = set(_env_list("MADBENCH_DISABLE_PLUGINS") or [])
    allow = _env_list("MADBENCH_LOAD_PLUGINS")
    seen: set[tuple[str | None, str]] = set()
    for ep in md.entry_points(group="madbench"):
        dist = ep.dist.name if ep.dist is not None else None
        version = ep.dist.version if ep.dist is not None else None
        key = (dist, ep.name)
        if key in seen:  # editable installs and lib64 symlinks list entry points twice
            continue
        seen.add(key)
        bundled = dist is not None and dist.lower() == BUNDLED_DISTRIBUTION
        if ep.name in disabled or pm.is_blocked(ep.name):
            continue
        if allow is not None and not bundled and ep.name not in allow:
            continue
        try:
            module = ep.load()
            pm.register(module, name=ep.name)
        except Exception as exc:  # noqa: BLE001 - one broken plugin must not break the rest
            err = f"{type(exc).__name__}: {exc}".splitlines()[0] + raised_at(exc)
            _failures.append(Failure(ep.name, dist, err))
            _warn_once(f"plugin {ep.name!r} ({dist or 'unknown distribution'}) failed to load: "
                       f"{err}")
            continue
        _dist_of[ep.name] = (dist, version, bundled)
    return {name for _, name in seen}


def _warn_unknown_names(known: set[str]) -> None:
    """One warning per switch that names a plugin no one has (the switch does nothing)."""
    for var in ("MADBENCH_DISABLE_PLUGINS", "MADBENCH_LOAD_PLUGINS"):
        unknown = [name for name in _env_list(var) or [] if name not in known]
        if unknown:
            _warn_once(f"{var}: no plugin is named {', '.join(map(repr, unknown))}; it has no "
                       f"effect (plugins: {', '.join(sorted(known)) or 'none'})")


def get_plugin_manager() -> pluggy.PluginManager:
    """The process-wide plugin manager, built (and entry points loaded) on first use."""
    global _pm
    if _pm is None:
        pm = pluggy.PluginManager("madbench")
        pm.add_hookspecs(hookspecs)
        _load_core_plugins(pm)
        entry_points = _load_entry_points(pm)
        _warn_unknown_names(entry_points | {name for name, _ in CORE_PLUGINS})
        pm.check_pending()
        _pm = pm
    return _pm


def register_plugin(plugin: Any, name: str) -> None:
    """Register a plugin object at run time (tests, notebooks); the registry is rebuilt."""
    global _registry
    get_plugin_manager().register(plugin, name=name)
    _registry = None


def unregister_plugin(name: str) -> None:
    global _registry
    pm = get_plugin_manager()
    plugin = pm.get_plugin(name)
    if plugin is not None:
        pm.unregister(plugin)
    _registry = None


def reset() -> None:
    """Forget the manager, the registry and the warnings given; the next call reloads entry
    points."""
    global _pm, _registry
    os.environ.pop(WARNED_ENV, None)
    _pm = None
    _registry = None
    _dist_of.clear()
    _failures.clear()


def _own_hook(pm: pluggy.PluginManager, hook_name: str, plugin: Any):
    """The hook ``hook_name`` as ``pm.hook`` calls it, with only ``plugin``'s implementation."""
    others = [p for _, p in pm.list_name_plugin() if p is not None and p is not plugin]
    return pm.subset_hook_caller(hook_name, remove_plugins=others)


def registration_problem(category: str, name: str, obj: Any, metadata: dict) -> str | None:
    """Why ``register(name, obj, **metadata)`` from a ``category`` hook is refused, or None: a
    corpus loader must be callable, a mixer an ``nn.Module`` class of a known kind, a task a
    ``madbench.tasks.Task`` instance (``madbench.tasks.task_problem``)."""
    if category == "corpora" and not callable(obj):
        return f"corpus {name!r}: the loader must be callable"
    if category == "mixers":
        # an nn.Module subclass exists only once torch.nn is imported: no import needed here
        nn = sys.modules.get("torch.nn")
        if not (isinstance(obj, type) and nn is not None and issubclass(obj, nn.Module)):
            what = (f"an instance of {type(obj).__name__} (register the class itself)"
                    if nn is not None and isinstance(obj, nn.Module) else _short_repr(obj))
            return f"mixer {name!r} must be an nn.Module class, not {what}"
        if metadata["kind"] not in ("sequence", "channel"):
            return (f"mixer {name!r}: kind must be 'sequence' or 'channel', not "
                    f"{metadata['kind']!r}")
    if category == "tasks":
        # likewise a Task instance exists only once madbench.tasks is imported (which imports
        # this module, so it cannot be imported here)
        tasks = sys.modules.get("madbench.tasks")
        if tasks is None:
            return f"task {name!r} must be a madbench.tasks.Task instance, not {_short_repr(obj)}"
        return tasks.task_problem(name, obj)
    return None


def _short_repr(obj: Any) -> str:
    """``obj`` named in a few words: a class by name, anything else by type and a short repr."""
    if isinstance(obj, type):
        return f"the class {obj.__name__}"
    text = repr(obj)
    return f"{type(obj).__name__} {text if len(text) <= 60 else text[:57] + '...'}"


def _collect(pm: pluggy.PluginManager) -> Registry:
    reg = Registry(failures=list(_failures))
    for plugin_name, plugin in pm.list_name_plugin():
        if plugin is None:
            continue
        dist, version, bundled = _dist_of.get(plugin_name, (None, None, False))
        info = PluginInfo(plugin_name, dist, version, bundled)
        for category in CATEGORIES:
            hook_name = _HOOKS[category]
            if not any(i.plugin is plugin
                       for i in getattr(pm.hook, hook_name).get_hookimpls()):
                continue
            info.hooks.append(hook_name)
            target = reg.category(category)
            names: list[str] = []

            def register(name: str, obj: Any, _t=target, _c=category, _n=names,
                         _p=plugin_name, **metadata: Any) -> None:
                if name in _t:
                    raise PluginConflictError(
                        f"{_c[:-1]} {name!r} is registered by both plugin "
                        f"{_t[name].plugin!r} and plugin {_p!r}; block one with "
                        f"MADBENCH_DISABLE_PLUGINS={_p} (or uninstall it)")
                if _c == "mixers":
                    metadata.setdefault("kind", "sequence")
                problem = registration_problem(_c, name, obj, metadata)
                if problem:       # the hook fails: its plugin is warned about, the rest works
                    raise TypeError(problem)
                _t[name] = Entry(name, obj, _p, metadata)
                _n.append(name)
            register.__qualname__ = "register"   # as a wrong call's TypeError names it

            try:      # through pluggy, restricted to this plugin: its registrations are its own
                returned = [r for r in _own_hook(pm, hook_name, plugin)(register=register)
                            if r is not None]
                if returned:      # e.g. `return [MyTask()]`: nothing would be registered
                    _warn_once(f"plugin {plugin_name!r}: {hook_name} returned "
                               f"{_short_repr(returned[0])}, which is ignored; a hook registers "
                               f"each item by calling register(name, obj) and returns None")
            except PluginConflictError:
                raise
            except Exception as exc:  # noqa: BLE001 - a broken hook must not break the rest
                for name in names:
                    target.pop(name, None)
                err = f"{type(exc).__name__}: {exc}".splitlines()[0]
                reg.failures.append(Failure(plugin_name, dist, f"{hook_name}: {err}"))
                _warn_once(f"plugin {plugin_name!r} failed in {hook_name}: {err}")
                names = []
            info.registered[category] = names
        reg.plugins.append(info)
    return reg


def get_registry() -> Registry:
    """Everything registered by the loaded plugins (cached)."""
    global _registry
    if _registry is None:
        _registry = _collect(get_plugin_manager())
    return _registry
