"""Training protocols as versioned, hashed data.

- ``paper``: the paper's Table B.1 — AdamW, betas (0.9, 0.98), batch 128, 200 epochs, cosine decay
  applied, lr {1e-4, 5e-4, 1e-3} x weight decay {0, 0.1}, 1,280 test sequences, best of sweep.
- ``mad-lab``: what the reference code actually does — constant learning rate, default betas
  (0.9, 0.999), decay on every parameter, evaluation every epoch with the best-loss epoch
  reported, early stop at test accuracy 0.999, selection on macro accuracy.
- ``quick``: all 66 settings, 20 epochs (at least 500 steps), for one GPU.
- ``smoke``: baseline settings, 256 train / 128 test sequences, batch 32, 4 epochs, one
  configuration; a CPU-sized sanity run of all six tasks (minutes on two cores).
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, fields, replace
from typing import Any

from .errors import UsageError
from .hashing import content_hash
from .suggest import did_you_mean


@dataclass(frozen=True)
class Protocol:
    name: str
    version: int = 1
    epochs: int = 200
    min_steps: int = 0                 #: epochs are raised until a run takes this many steps
    batch_size: int = 128
    lrs: tuple[float, ...] = (1e-4, 5e-4, 1e-3)
    weight_decays: tuple[float, ...] = (0.0, 0.1)
    betas: tuple[float, float] = (0.9, 0.98)
    eps: float = 1e-8
    schedule: str = "cosine"           #: "cosine" (decays to min_lr) or "constant"
    min_lr: float = 1e-6
    decay: str = "matrices"            #: "matrices" (ndim >= 2, not marked) or "all"
    settings: str = "all"              #: "all" or "baseline"
    max_train: int | None = None       #: cap on training sequences (None = the setting's size)
    max_test: int | None = None        #: cap on test sequences
    eval_every_epoch: bool = False     #: evaluate each epoch and report the best-loss epoch
    early_stop_accuracy: float | None = None   #: stop a run at the first epoch end it reaches
    selection: str = "accuracy"        #: metric for best-of-sweep: "accuracy" | "macro_accuracy"
    standard: bool = True              #: False once any field is overridden
    overrides: tuple[tuple[str, Any], ...] = ()

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["overrides"] = [list(o) for o in self.overrides]
        return d

    @classmethod
    def from_dict(cls, data: dict) -> "Protocol":
        """The inverse of ``to_dict`` (a ``hash`` key is ignored). Raises ValueError when
        fields are missing or unknown."""
        names = [f.name for f in fields(cls)]
        body = {k: v for k, v in data.items() if k != "hash"}
        missing = [n for n in names if n not in body]
        unknown = [k for k in body if k not in names]
        if missing or unknown:
            raise ValueError("protocol fields " + "; ".join(
                part for part in (f"missing: {', '.join(missing)}" if missing else "",
                                  f"unknown: {', '.join(unknown)}" if unknown else "") if part))
        for name in ("lrs", "weight_decays", "betas"):
            body[name] = tuple(body[name])
        body["overrides"] = tuple(tuple(o) for o in body["overrides"])
        return cls(**body)

    @property
    def hash(self) -> str:
        """Hash of everything that changes a run's outcome (not the name or bookkeeping)."""
        d = self.to_dict()
        for k in ("name", "standard", "overrides", "settings", "selection"):
            d.pop(k)
        return content_hash(d)

    def configs(self) -> list[tuple[float, float]]:
        """The sweep grid: (lr, weight decay) pairs, lr outer."""
        return [(lr, wd) for lr in self.lrs for wd in self.weight_decays]

    def epochs_for(self, steps_per_epoch: int) -> int:
        if self.min_steps and steps_per_epoch * self.epochs < self.min_steps:
            return -(-self.min_steps // steps_per_epoch)
        return self.epochs


PRESETS: dict[str, Protocol] = {
    "paper": Protocol("paper"),
    "mad-lab": Protocol("mad-lab", betas=(0.9, 0.999), schedule="constant", decay="all",
                        eval_every_epoch=True, early_stop_accuracy=0.999,
                        selection="macro_accuracy"),
    "quick": Protocol("quick", epochs=20, min_steps=500),
    "smoke": Protocol("smoke", epochs=4, batch_size=32, lrs=(1e-3,), weight_decays=(0.0,),
                      settings="baseline", max_train=256, max_test=128),
}


def _parse_value(field_name: str, current: Any, text: str) -> Any:
    text = text.strip()
    try:
        if isinstance(current, bool):
            if text.lower() not in ("true", "false", "1", "0", "yes", "no"):
                raise ValueError(text)
            return text.lower() in ("true", "1", "yes")
        if isinstance(current, tuple):
            values = tuple(float(v) for v in text.split(",") if v.strip())
            # a sweep list holds each value once (as --seeds does); betas are a pair
            return values if field_name == "betas" else tuple(dict.fromkeys(values))
        if field_name in ("max_train", "max_test", "early_stop_accuracy") and \
                text.lower() in ("none", ""):
            return None
        if isinstance(current, int) or field_name in ("max_train", "max_test"):
            return int(text)
        if isinstance(current, float) or field_name == "early_stop_accuracy":
            return float(text)
        return text
    except ValueError:
        raise UsageError(f"bad value {text!r} for protocol field {field_name!r}") from None


_CHOICES = {"schedule": ("cosine", "constant"), "decay": ("matrices", "all"),
            "settings": ("all", "baseline"), "selection": ("accuracy", "macro_accuracy")}
_FIXED = {"name", "version", "standard", "overrides"}
_FIELDS = [f.name for f in fields(Protocol)]


def get_protocol(name: str, overrides: dict[str, str] | None = None) -> Protocol:
    """A preset with ``field=value`` overrides applied; any override marks it non-standard."""
    if name not in PRESETS:
        raise UsageError(f"unknown preset {name!r} ({did_you_mean(name, PRESETS)}choose from: "
                         f"{', '.join(PRESETS)})")
    proto = PRESETS[name]
    changes = {key: _parse_value(key, getattr(proto, key), text) if key in _FIELDS else text
               for key, text in (overrides or {}).items()}
    return apply_overrides(proto, changes)


def apply_overrides(proto: Protocol, changes: dict[str, Any]) -> Protocol:
    """``proto`` with typed ``changes`` applied and checked (fields that exist and are not
    fixed, allowed choices, two betas, no negative numbers, epochs and batch size >= 1);
    unchanged without changes, else marked non-standard with the overrides recorded."""
    if not changes:
        return proto
    for key, value in changes.items():
        if key not in _FIELDS or key in _FIXED:
            allowed = [k for k in _FIELDS if k not in _FIXED]
            raise UsageError(f"unknown protocol field {key!r} ({did_you_mean(key, allowed)}"
                             f"fields: {', '.join(allowed)})")
        if key in _CHOICES and value not in _CHOICES[key]:
            raise UsageError(f"{key} must be one of {', '.join(_CHOICES[key])}, not {value!r}")
        _check_range(key, value)
    return replace(proto, standard=False, overrides=tuple(sorted(
        (k, list(v) if isinstance(v, tuple) else v) for k, v in changes.items())), **changes)


#: (lowest, highest, lowest included, highest included) of each numeric protocol field
_RANGES: dict[str, tuple[float, float, bool, bool]] = {
    "epochs": (1, 10**9, True, True), "min_steps": (0, 10**12, True, True),
    "batch_size": (1, 10**7, True, True), "max_train": (1, 10**9, True, True),
    "max_test": (1, 10**9, True, True), "lrs": (0, 10.0, False, True),
    "weight_decays": (0, 100.0, True, True), "betas": (0, 1, True, False),
    "eps": (0, 1.0, False, True), "min_lr": (0, 10.0, True, True),
    "early_stop_accuracy": (0, 1, False, True), "version": (1, 10**9, True, True),
}
_INTEGER_FIELDS = {"epochs", "min_steps", "batch_size", "max_train", "max_test", "version"}
_SEQUENCES = {"lrs": None, "weight_decays": None, "betas": 2}


def _check_range(key: str, value: Any) -> None:
    """Refuse a value no run can train with (in one line, before any training): empty sweep
    lists, non-finite numbers, sizes below 1, betas outside [0, 1), and so on."""
    if key in _SEQUENCES:
        if not isinstance(value, (list, tuple)) or not value:
            raise UsageError(f"{key} needs at least one number, e.g. {key}="
                             + ",".join(str(v) for v in PRESETS["paper"].to_dict()[key]))
        if _SEQUENCES[key] is not None and len(value) != _SEQUENCES[key]:
            raise UsageError(f"{key} takes {_SEQUENCES[key]} numbers, e.g. betas=0.9,0.98")
        items = list(value)
    else:
        items = [value]
    if key not in _RANGES or value is None:
        return
    low, high, low_in, high_in = _RANGES[key]
    for item in items:
        if isinstance(item, bool) or not isinstance(item, (int, float)):
            raise UsageError(f"{key} takes numbers, not {item!r}")
        if key in _INTEGER_FIELDS and not isinstance(item, int):
            raise UsageError(f"{key} takes a whole number, not {item!r}")
        if not math.isfinite(item) or item < low or item > high or \
                (item == low and not low_in) or (item == high and not high_in):
            interval = f"{'[' if low_in else '('}{low:g}, {high:g}{']' if high_in else ')'}"
            raise UsageError(f"{key} must be in {interval}, not {item!r}")
