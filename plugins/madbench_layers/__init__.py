"""The reference layers (sequence and channel mixers) and the named MAD architectures.

Each layer module lists what it provides in ``MIXERS``: ``(name, cls, metadata)`` triples,
registered here through the same hook any third-party plugin uses.
"""
import madbench

from . import (architectures, attention, channel, deltanet, gla, hyena, hyena_modal,
               linear_attention, mamba, mamba2, moe, rwkv7)

LAYER_MODULES = (attention, linear_attention, gla, hyena, hyena_modal, mamba, channel, moe,
                 deltanet, mamba2, rwkv7)


@madbench.hookimpl
def madbench_register_mixers(register):
    for module in LAYER_MODULES:
        for name, cls, metadata in module.MIXERS:
            register(name, cls, **metadata)


@madbench.hookimpl
def madbench_register_architectures(register):
    for name, (spec, metadata) in architectures.PRESETS.items():
        register(name, spec, **metadata)
