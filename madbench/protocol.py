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
    early_stop_accuracy: float | None = None
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
            return tuple(float(v) for v in text.split(",") if v.strip())
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
        if key == "betas" and len(value) != 2:
            raise UsageError("betas takes two numbers, e.g. betas=0.9,0.98")
        if isinstance(value, (int, float)) and not isinstance(value, bool) and value < 0:
            raise UsageError(f"{key} must not be negative")
        if key in ("epochs", "batch_size") and value < 1:
            raise UsageError(f"{key} must be at least 1")
    return replace(proto, standard=False, overrides=tuple(sorted(
        (k, list(v) if isinstance(v, tuple) else v) for k, v in changes.items())), **changes)
