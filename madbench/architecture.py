"""Architecture specs: an ordered list of layers (a registered mixer name or an import path,
plus constructor kwargs), and the rules that turn an ``--arch`` string into one.

``--arch`` accepts, in this order: a registered architecture, a registered mixer (giving the
standard MAD model [X, SwiGLU, X, SwiGLU], or four X for a mixer that also mixes channels), an
import path ``pkg.module:Class``, or a mad-lab shorthand such as ``mH-Sg-mA-Sg``.
"""
from __future__ import annotations

import importlib
import inspect
import json
import numbers
import os
import sys
import types
import typing
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

from torch import nn

from .code_identity import code_identity
from .errors import UsageError, raised_at
from .fla_adapter import fla_entry
from .hashing import content_hash
from .plugins import Entry, get_registry
from .suggest import did_you_mean

DEFAULT_DIM = 128
STRIPE_MIXER = "mh-attention"  #: the second block of a striped hybrid
CHANNEL_ALIASES = {"swiglu": "swiglu", "sg": "swiglu", "moe": "moe-mlp", "moe-mlp": "moe-mlp",
                   "mlp": "mlp", "m": "mlp"}


@dataclass(frozen=True)
class LayerSpec:
    """One residual block: a mixer (registered name or ``pkg.module:Class``) and its kwargs."""

    mixer: str
    kwargs: Mapping[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {"mixer": self.mixer, "kwargs": dict(self.kwargs)}


@dataclass(frozen=True)
class ArchitectureSpec:
    """A model: embedding, pre-norm residual blocks (one per layer), final norm, head."""

    name: str
    layers: tuple[LayerSpec, ...]
    dim: int = DEFAULT_DIM
    flags: tuple[str, ...] = ()  #: e.g. ("state-mismatch-allowed",)

    def to_dict(self) -> dict:
        return {"name": self.name, "dim": self.dim, "layers": [l.to_dict() for l in self.layers]}

    @classmethod
    def from_dict(cls, data: dict, flags: Sequence[str] = ()) -> "ArchitectureSpec":
        """The inverse of ``to_dict``."""
        layers = tuple(LayerSpec(layer["mixer"], dict(layer.get("kwargs", {})))
                       for layer in data["layers"])
        return cls(data["name"], layers, int(data["dim"]), tuple(flags))

    @property
    def hash(self) -> str:
        """Content hash of the spec and of the source of every mixer class it uses."""
        return architecture_hash(self.to_dict(), [mixer_source_id(l.mixer) for l in self.layers])


def architecture_hash(spec: dict, sources: Sequence[str]) -> str:
    """The hash of what changes the model: a spec's ``to_dict()`` form without its display
    name (width, layers and their kwargs), and its mixers' source identifiers. ``hyena``,
    ``hyena-swiglu`` and ``H-Sg-H-Sg`` (the same layers) share their results."""
    model = {k: v for k, v in spec.items() if k != "name"}
    return content_hash({"spec": model, "sources": sorted(set(sources))})


# -- mixers ------------------------------------------------------------------------------
#: ``--arch pkg.module:Class`` also finds modules in the working directory (as ``python -m``
#: would); validating a submission turns this off (``madbench.leaderboard.trust``).
import_from_working_directory = True


def _import_path(path: str) -> type:
    module_name, _, attr = path.partition(":")
    if not module_name or not attr:
        raise UsageError(f"import path must look like 'pkg.module:Class', got {path!r}")
    if (import_from_working_directory and os.getcwd() not in sys.path
            and "" not in sys.path):                          # as `python -m` would see it
        sys.path.append(os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except (Exception, SystemExit) as exc:  # noqa: BLE001 - a script's sys.exit() too
        raise UsageError(f"cannot import {module_name!r} for {path!r}: "
                         f"{type(exc).__name__}: {exc}".splitlines()[0]
                         + raised_at(exc)) from None
    obj = module
    for part in attr.split("."):
        obj = getattr(obj, part, None)
        if obj is None:
            classes = _module_classes(module)
            there = (f"{did_you_mean(attr, classes)}nn.Module classes there: "
                     f"{', '.join(classes)}" if classes else "it holds no nn.Module class")
            where = getattr(module, "__file__", None)      # which of two same-named modules
            where = f" ({where})" if where else ""
            raise UsageError(f"module {module_name!r}{where} has no attribute {attr!r} "
                             f"({there})")
    if not (isinstance(obj, type) and issubclass(obj, nn.Module)):
        raise UsageError(f"{path!r} is not an nn.Module class")
    return obj


def _module_classes(module) -> list[str]:
    """The public nn.Module classes a module holds, torch's own left out: what an import path
    into it can name."""
    return sorted(name for name, obj in vars(module).items()
                  if not name.startswith("_") and isinstance(obj, type)
                  and issubclass(obj, nn.Module) and not obj.__module__.startswith("torch"))


def mixer_entry(name: str) -> Entry:
    """The registry entry of a mixer, or a synthetic one for an import path."""
    reg = get_registry()
    if name in reg.mixers:
        return reg.mixers[name]
    for entry in reg.mixers.values():
        if entry.metadata.get("shorthand") == name:
            return entry
    if ":" in name and name.split(":")[0].split(".")[0] == "fla":  # fla's layers, adapted
        return fla_entry(name)
    if ":" in name:
        cls = _import_path(name)
        kind = getattr(cls, "mixer_kind", "sequence")
        metadata = {"kind": kind, "mixes_channels": bool(getattr(cls, "mixes_channels", False))}
        return Entry(name, cls, plugin="<import path>", metadata=metadata)
    known = ", ".join(sorted(reg.mixers))
    raise UsageError(f"unknown mixer {name!r} ({did_you_mean(name, reg.mixers)}registered: "
                     f"{known}; or give pkg.module:Class){reg.failure_note()}")


#: Constructor arguments that receive the setting's sequence length unless the user gives one
#: (mad-lab's benchmark passes ``max_length = seq_len`` to every layer).
LENGTH_KWARGS = ("max_length", "seq_len", "l_max")


def length_kwarg(cls: type) -> str | None:
    """The named constructor parameter of ``cls`` that takes the sequence length, if any
    (a catch-all ``**kwargs`` does not count)."""
    try:
        params = inspect.signature(cls).parameters
    except (TypeError, ValueError):
        return None
    for name in LENGTH_KWARGS:
        p = params.get(name)
        if p is not None and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY):
            return name
    return None


def layer_kwargs(entry: Entry, layer: LayerSpec) -> dict:
    """The keyword arguments a layer's mixer is built with: its registration's defaults, then
    the layer's own kwargs."""
    return {**entry.metadata.get("defaults", {}), **dict(layer.kwargs)}


def build_mixer(layer: LayerSpec, dim: int, seq_len: int | None = None) -> nn.Module:
    """Instantiate one layer's mixer as ``cls(dim, **defaults, **kwargs)``; with ``seq_len``,
    a constructor that takes ``max_length`` (or ``seq_len`` / ``l_max``) gets it unless the
    layer's kwargs set it."""
    entry = mixer_entry(layer.mixer)
    kwargs = layer_kwargs(entry, layer)
    if seq_len is not None:
        name = length_kwarg(entry.obj)
        if name is not None and name not in layer.kwargs:
            kwargs[name] = int(seq_len)
    problem = kwargs_problem(entry.obj, kwargs)
    if problem:
        raise UsageError(f"cannot build mixer {layer.mixer!r}: {problem}")
    try:
        return entry.obj(dim, **kwargs)
    except TypeError as exc:
        raise UsageError(f"cannot build mixer {layer.mixer!r} with {kwargs}: {exc}") from None


def kwargs_problem(cls: type, kwargs: Mapping[str, Any]) -> str | None:
    """Why ``cls(dim, **kwargs)`` cannot work, read from its signature before it runs, or
    None: an argument it does not take (unless it takes ``**kwargs``), or a value of the wrong
    kind: against a plain annotation (``int``, ``float | None``), else a string where the
    default is a number (``--mixer-kwargs '{"heads": "8"}'``)."""
    try:
        params = list(inspect.signature(cls).parameters.values())
    except (TypeError, ValueError):
        return None
    try:
        hints = typing.get_type_hints(cls.__init__)
    except Exception:  # noqa: BLE001 - an annotation that does not resolve: not judged
        hints = {}
    if not params or params[0].kind not in (params[0].POSITIONAL_ONLY,
                                            params[0].POSITIONAL_OR_KEYWORD,
                                            params[0].VAR_POSITIONAL):
        return "its constructor takes no dim (a mixer is built as Cls(dim, **kwargs))"
    params = params[1:]
    named = {p.name: p for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
    if not any(p.kind is p.VAR_KEYWORD for p in params):
        unknown = [k for k in kwargs if k not in named]
        if unknown:
            takes = (f"{did_you_mean(unknown[0], named)}its arguments: {', '.join(named)}"
                     if named else "it takes only dim")
            return f"it takes no argument {unknown[0]!r} ({takes})"
    for name, value in kwargs.items():
        param = named.get(name)
        if param is None:
            continue
        allowed = _plain_types(hints.get(name))
        if allowed is not None and not _value_fits(value, allowed):
            expected = " or ".join("None" if t is type(None) else t.__name__ for t in allowed)
            return f"{name}={value!r} is a {type(value).__name__}; {name} is annotated {expected}"
        # a string where the default is a number; not the reverse: a default of "auto"
        # commonly takes a number too (mamba-ssm's dt_rank)
        if allowed is None and isinstance(value, str) and _kind(param.default) in (
                "a number", "a boolean"):
            return (f"{name}={value!r} is {_kind(value)}; {name} takes "
                    f"{_kind(param.default)} (its default is {param.default!r})")
    return None


_PLAIN = (bool, int, float, str, type(None))


def _plain_types(hint: Any) -> tuple | None:
    """The types a plain annotation allows (``int``, ``float | None``, ``Optional[str]``);
    None for no annotation or any other."""
    if hint is None:
        return None
    union = typing.get_origin(hint) in (typing.Union, types.UnionType)
    allowed = typing.get_args(hint) if union else (hint,)
    return allowed if all(t in _PLAIN for t in allowed) else None


def _value_fits(value: Any, allowed: tuple) -> bool:
    """Whether ``value`` is one of the plain types ``allowed`` (an integer fits ``float``; a
    value of no plain type is not judged)."""
    if value is None:
        return type(None) in allowed
    if isinstance(value, bool):
        return bool in allowed
    if isinstance(value, numbers.Integral):
        return int in allowed or float in allowed
    if isinstance(value, numbers.Real):
        return float in allowed
    if isinstance(value, str):
        return str in allowed
    return True


def _kind(value: Any) -> str:
    """``a string``, ``a boolean``, ``a number``, or the type's name with an article."""
    if isinstance(value, str):
        return "a string"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, numbers.Real):
        return "a number"
    return f"a {type(value).__name__}"


def built_layer(layer: LayerSpec) -> dict:
    """The layer as it is built, whatever its spelling: the mixer's class (``module:Class``,
    for a registered name, a shorthand or an import path alike) and every constructor
    argument with its value, defaults filled in (the sequence-length argument, which the
    setting supplies, only when given). Equal ``built_layer`` builds the same module."""
    entry = mixer_entry(layer.mixer)
    name = f"{entry.obj.__module__}:{entry.obj.__qualname__}"
    kwargs = layer_kwargs(entry, layer)
    try:
        params = list(inspect.signature(entry.obj).parameters.values())[1:]   # after dim
    except (TypeError, ValueError):
        params = []
    length = length_kwarg(entry.obj)
    for p in params:
        if (p.name != length and p.default is not p.empty
                and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)):
            kwargs.setdefault(p.name, p.default)
    return {"mixer": name, "kwargs": {k: _as_json(v) for k, v in kwargs.items()}}


def _as_json(value: Any) -> Any:
    """A default as JSON can hold it: containers element by element, a class or function by
    its qualified name (``act=nn.GELU``), anything else not JSON by its repr
    (``dtype=torch.float32``)."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, (list, tuple)):
        return [_as_json(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _as_json(v) for k, v in value.items()}
    if hasattr(value, "__qualname__") and hasattr(value, "__module__"):
        return f"{value.__module__}.{value.__qualname__}"
    return repr(value)


def model_hash(spec: "ArchitectureSpec") -> str:
    """The hash of the model ``spec`` builds (width and ``built_layer`` of every layer, and
    the mixers' code): equal for spellings that differ only in names or in defaults written
    out. Imports the mixers."""
    mixers = get_registry().mixers.values()

    def source(name: str) -> str:     # a registered class's identity, however it is named
        cls = mixer_entry(name).obj
        return mixer_source_id(next((e.name for e in mixers if e.obj is cls), name))
    return content_hash({"dim": spec.dim, "layers": [built_layer(l) for l in spec.layers],
                         "sources": sorted({source(l.mixer) for l in spec.layers})})


def mixer_kind(name: str) -> str:
    return mixer_entry(name).metadata.get("kind", "sequence")


def mixer_source_id(name: str) -> str:
    """What identifies a mixer's code: the class, and ``distribution==version`` for a plugin
    installed from a distribution, for a bundled mixer a hash of its module and the bundled
    modules it imports, else a hash of its whole top-level package's source (the kernels and
    reference ops it calls included either way; see ``madbench.code_identity``)."""
    entry = mixer_entry(name)
    cls = entry.obj
    info = next((p for p in get_registry().plugins if p.name == entry.plugin), None)
    identity = code_identity(cls.__module__, info.distribution if info else None,
                             bool(info and info.bundled))
    return f"{cls.__module__}.{cls.__qualname__}@{identity}"


# -- resolving --arch --------------------------------------------------------------------
def _coerce_layers(obj: Any) -> tuple[LayerSpec, ...]:
    if isinstance(obj, ArchitectureSpec):
        return obj.layers
    if isinstance(obj, str):
        return tuple(LayerSpec(_shorthand_to_name(p)) for p in obj.split("-"))
    layers = []
    for item in obj:
        if isinstance(item, LayerSpec):
            layers.append(item)
        elif isinstance(item, str):
            layers.append(LayerSpec(item))
        else:
            name, kwargs = item
            layers.append(LayerSpec(name, dict(kwargs)))
    return tuple(layers)


def _shorthand_to_name(part: str) -> str:
    if ":" in part:              # an import path inside a shorthand, e.g. mA-pkg.mod:Cls-mA-Sg
        mixer_entry(part)
        return part
    reg = get_registry()
    for name, entry in reg.mixers.items():
        if entry.metadata.get("shorthand") == part:
            return name
    if part in reg.mixers:
        return part
    shorthands = sorted(e.metadata["shorthand"] for e in reg.mixers.values()
                        if e.metadata.get("shorthand"))
    raise UsageError(f"unknown layer shorthand {part!r} ({did_you_mean(part, shorthands)}"
                     f"known: {', '.join(shorthands)})")


def channel_mixer_name(channel: str) -> str:
    """The channel mixer ``channel`` names (an alias such as ``moe`` or ``sg``, a registered
    name or shorthand, or ``pkg.module:Class`` of a class whose ``mixer_kind`` is
    ``"channel"``); a UsageError for anything that is not a channel mixer."""
    reg = get_registry()
    if ":" in channel:                          # a channel mixer given by its import path
        if mixer_entry(channel).metadata.get("kind") != "channel":
            raise UsageError(f"--channel {channel!r} is not a channel mixer (its class has "
                             "no mixer_kind = 'channel')")
        return channel
    channels = {n: e for n, e in reg.mixers.items() if e.metadata.get("kind") == "channel"}
    name = CHANNEL_ALIASES.get(channel.lower(), channel)
    name = next((n for n, e in channels.items()
                 if name == n or e.metadata.get("shorthand") == name), None)
    if name is None:
        known = sorted(set(CHANNEL_ALIASES) | set(channels))
        kind = " (a sequence mixer)" if channel in reg.mixers else ""
        raise UsageError(f"--channel {channel!r}{kind} is not a channel mixer "
                         f"({did_you_mean(channel, known)}channel mixers: {', '.join(known)})")
    return name


def standard_model(mixer: str, channel: str = "swiglu", striped: bool = False,
                   mixer_kwargs: Mapping[str, Any] | None = None) -> tuple[LayerSpec, ...]:
    """The MAD model around one sequence mixer X: [X, C, X, C] (C the channel mixer), or
    [X, X, X, X] for a mixer that mixes channels too; striped: the second block is
    multi-head attention."""
    entry = mixer_entry(mixer)
    if entry.metadata.get("kind", "sequence") != "sequence":
        raise UsageError(f"{mixer!r} is a channel mixer; --arch needs a sequence mixer")
    channel_name = channel_mixer_name(channel)
    kwargs = dict(entry.metadata.get("standard_kwargs", {}))
    kwargs.update(mixer_kwargs or {})
    x = LayerSpec(mixer, kwargs)
    if entry.metadata.get("mixes_channels"):
        block1 = [x, x]
        block2 = [LayerSpec(STRIPE_MIXER), LayerSpec(channel_name)] if striped else [x, x]
    else:
        c = LayerSpec(channel_name)
        block1 = [x, c]
        block2 = [LayerSpec(STRIPE_MIXER), c] if striped else [x, c]
    return tuple(block1 + block2)


def as_spec(spec: Any) -> ArchitectureSpec:
    """An ArchitectureSpec from a spec, an ``--arch`` string, or a list of layers."""
    if isinstance(spec, ArchitectureSpec):
        return spec
    if isinstance(spec, str):
        return resolve_architecture(spec)
    return ArchitectureSpec("custom", _coerce_layers(spec))


def parse_mixer_kwargs(text: str) -> dict:
    """``--mixer-kwargs``: a JSON object (empty text: none); a UsageError otherwise."""
    try:
        kwargs = json.loads(text) if text.strip() else {}
    except json.JSONDecodeError as exc:
        raise UsageError(f"--mixer-kwargs is not valid JSON: {exc}") from None
    if not isinstance(kwargs, dict):
        raise UsageError("--mixer-kwargs must be a JSON object")
    return kwargs


def resolve_architecture(arch: str, channel: str | None = None, striped: bool = False,
                         mixer_kwargs: Mapping[str, Any] | str | None = None,
                         dim: int = DEFAULT_DIM) -> ArchitectureSpec:
    """Turn an ``--arch`` value (plus the modifiers) into an ArchitectureSpec."""
    if isinstance(mixer_kwargs, str):
        mixer_kwargs = parse_mixer_kwargs(mixer_kwargs)
    reg = get_registry()
    if arch in reg.architectures:
        if channel or striped or mixer_kwargs:
            raise UsageError(f"{arch!r} is a named architecture; --channel, --striped and "
                             "--mixer-kwargs apply to a single mixer")
        entry = reg.architectures[arch]
        try:                            # a plugin's slip is named as its own, not the user's
            layers = _coerce_layers(entry.obj)
            for layer in layers:
                if ":" not in layer.mixer:      # import paths are imported where they are built
                    mixer_entry(layer.mixer)
        except UsageError as exc:
            raise UsageError(f"architecture {arch!r} of plugin {entry.plugin!r}: {exc}") from None
        return ArchitectureSpec(arch, layers, dim)
    is_mixer = arch in reg.mixers or (":" in arch and "-" not in arch) or any(
        e.metadata.get("shorthand") == arch for e in reg.mixers.values())
    if is_mixer:
        layers = standard_model(arch, channel or "swiglu", striped, mixer_kwargs)
        name = arch + (f"+{CHANNEL_ALIASES.get(channel.lower(), channel)}" if channel else "")
        return ArchitectureSpec(name + ("+striped" if striped else ""), layers, dim)
    shorthand_problem = ""
    if "-" in arch:
        try:
            layers = _coerce_layers(arch)
        except UsageError as exc:
            shorthand_problem = f"; as a shorthand: {exc}"
        else:
            if channel or striped or mixer_kwargs:
                raise UsageError("--channel, --striped and --mixer-kwargs apply to a single "
                                 "mixer, not to a shorthand architecture")
            return ArchitectureSpec(arch, layers, dim)
    hint = did_you_mean(arch, [*reg.architectures, *reg.mixers]).strip()
    module, dot, cls = arch.rpartition(".")
    if not hint and dot and module and cls.isidentifier() and ":" not in arch:
        hint = f"did you mean {f'{module}:{cls}'!r}? an import path puts ':' before the class"
    raise UsageError(f"unknown architecture {arch!r}{f' ({hint})' if hint else ''}: not a "
                     "registered architecture or mixer (see 'madbench arch list'), an import "
                     f"path pkg.module:Class, or a shorthand like mH-Sg-mA-Sg{shorthand_problem}"
                     f"{reg.failure_note()}")


def arch_arguments(spec: ArchitectureSpec) -> list[str] | None:
    """The ``--arch`` options (with ``--channel``, ``--striped``, ``--mixer-kwargs``) that
    resolve to ``spec`` again, checked by resolving them; None when no options do (a spec
    built in code)."""
    candidates = [(spec.name, None, False, None)]
    base = spec.name.removesuffix("+striped")
    striped = base != spec.name
    channel = None
    if "+" in base:
        base, _, channel = base.rpartition("+")
    try:
        entry = mixer_entry(base)
    except UsageError:
        entry = None
    if entry is not None and spec.layers:
        standard = entry.metadata.get("standard_kwargs", {})
        kwargs = {k: v for k, v in spec.layers[0].kwargs.items()
                  if k not in standard or standard[k] != v}
        candidates.insert(0, (base, channel, striped,
                              json.dumps(kwargs, sort_keys=True) if kwargs else None))
    for arch, channel, striped, kwargs in candidates:
        try:
            again = resolve_architecture(arch, channel, striped, kwargs, spec.dim)
        except UsageError:
            continue
        if again.to_dict() == spec.to_dict():
            return (["--arch", arch] + (["--channel", channel] if channel else []) +
                    (["--striped"] if striped else []) +
                    (["--mixer-kwargs", kwargs] if kwargs else []))
    return None
