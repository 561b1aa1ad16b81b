"""madbench: the MAD benchmark for sequence mixers, as a plugin-based harness."""
import pluggy

__version__ = "0.1.0"

#: Marker for plugin hook implementations: ``@madbench.hookimpl``.
hookimpl = pluggy.HookimplMarker("madbench")

__all__ = ["hookimpl", "__version__"]
