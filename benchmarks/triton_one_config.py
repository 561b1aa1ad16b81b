"""Test tooling: importing this module patches Triton's autotuner, process-wide, so that each
autotuned kernel benchmarks one configuration only: the least resource-hungry of those its own
pruning keeps (smallest ``num_stages``, then the smallest product of its integer block-size
kwargs, then fewest ``num_warps``). A kernel then compiles once instead of once per config; the
kernels compute the same thing, but their speed and their floating-point rounding (the order of
their reductions) may differ.

Import it before any kernel runs, or load it into pytest with ``-p triton_one_config`` (with
``benchmarks/`` on ``PYTHONPATH``). Written against ``Autotuner.prune_configs(self, kwargs)``
of Triton 3.3 to 3.7.
"""
from __future__ import annotations

import functools

from triton.runtime.autotuner import Autotuner


def cost(config) -> tuple:
    """The sort key of a ``triton.Config``, cheapest first. Block sizes are the integer kwargs
    whose names start with ``B`` (fla's ``BT``, ``BK``, ``BV``, ``BLOCK_SIZE``, ...)."""
    blocks = 1
    for name, value in config.kwargs.items():
        if name.startswith("B") and isinstance(value, int) and not isinstance(value, bool):
            blocks *= value
    return (config.num_stages or 0, blocks, config.num_warps or 0)


def _one_config(prune_configs):
    @functools.wraps(prune_configs)
    def wrapper(self, kwargs):
        return [min(prune_configs(self, kwargs), key=cost)]
    wrapper.one_config = True
    return wrapper


if not getattr(Autotuner.prune_configs, "one_config", False):   # idempotent (reload, -p twice)
    Autotuner.prune_configs = _one_config(Autotuner.prune_configs)
