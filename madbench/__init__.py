"""madbench: the MAD benchmark for sequence mixers, as a plugin-based harness.

``madbench.evaluate(arch, tasks=..., protocol=..., seeds=..., run_dir=...)`` is the library
entry (``madbench.evaluator``); it returns ``madbench.Results``. Both are imported on first use,
so that ``import madbench`` (and ``madbench.hookimpl`` in a plugin) stays cheap."""
import pluggy

__version__ = "0.1.0"

#: Marker for plugin hook implementations: ``@madbench.hookimpl``.
hookimpl = pluggy.HookimplMarker("madbench")

_LAZY = {"evaluate": "evaluator", "prepare": "evaluator", "Results": "results"}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib
        return getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["hookimpl", "__version__", "evaluate", "prepare", "Results"]
