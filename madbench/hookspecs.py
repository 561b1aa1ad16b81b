"""The madbench plugin hooks. These docstrings are the plugin manual.

A plugin is any module or object with functions marked ``@madbench.hookimpl``. Installed
packages expose one through an entry point in the group ``madbench``::

    [project.entry-points.madbench]
    my-mixers = "my_package.madbench_plugin"

Hooks are called with keyword arguments; an implementation may accept any subset of them.
Hooks are added over time, never renamed. The bundled tasks and layers use these same hooks.
"""
from __future__ import annotations

from typing import Any, Callable, Mapping

import pluggy

hookspec = pluggy.HookspecMarker("madbench")

#: ``register(name, obj, **metadata)``: the callback a ``madbench_register_*`` hook receives
Register = Callable[..., None]


@hookspec
def madbench_register_tasks(register: Register) -> None:
    """Register tasks (since 0.1).

    Call ``register(task.name, task, **metadata)`` once per task (and return nothing).
    ``task`` is an instance of :class:`madbench.tasks.Task` (a name, a version, a baseline
    setting with ``madbench.tasks.TASK_PARAMS``, one-at-a-time changes of its variables and a
    vectorised generator), checked as it is registered (``madbench.tasks.task_problem``): a
    slip fails this plugin's hook, with a warning. Names are global: two plugins registering the
    same name is an error that names both.

    :param register: ``register(name: str, task: Task, **metadata)``.
    """


@hookspec
def madbench_register_mixers(register: Register) -> None:
    """Register mixer classes (since 0.1).

    Call ``register(name, cls, kind="sequence", **metadata)``. ``cls`` is an ``nn.Module`` class
    (the class, not an instance: checked as it is registered) built as ``cls(dim, **kwargs)``
    whose ``forward(x)`` maps (batch, seq_len, dim) to the same shape. ``kind`` is
    ``"sequence"`` (causal sequence mixer, the default) or ``"channel"`` (position-wise channel
    mixer). Useful metadata: ``shorthand`` (mad-lab's short label, e.g.
    ``"H"``), ``defaults`` (dict of constructor kwargs applied by default), ``description``,
    ``mixes_channels=True`` for a sequence mixer that needs no channel mixer (Mamba), and
    ``standard_kwargs`` (kwargs used in the standard MAD model).

    Optional methods on the class: ``state_size(seq_len) -> int`` (recurrent state elements
    carried per sequence, kv-cache included) and ``cache_size(seq_len) -> int`` (short
    convolution caches, outside the paper's 4,096 count).

    :param register: ``register(name: str, cls: type[nn.Module], kind: str = "sequence",
        **metadata)``.
    """


@hookspec
def madbench_register_architectures(register: Register) -> None:
    """Register named architectures (since 0.1).

    Call ``register(name, spec, **metadata)`` where ``spec`` is a
    :class:`madbench.architecture.ArchitectureSpec`, a list of layer names, a list of
    ``(layer_name, kwargs)`` pairs, or a mad-lab shorthand string such as ``"mH-Sg-mA-Sg"``.

    :param register: ``register(name: str, spec, **metadata)``.
    """


@hookspec(firstresult=True)
def madbench_flops(layer: str, dim: int, seq_len: int, kwargs: dict[str, Any]
                   ) -> float | Mapping[str, float] | None:
    """Forward FLOPs of one mixer layer on one sequence (since 0.1; used by ``madbench scaling``).

    Called for layers without a built-in formula (see :mod:`madbench.flops`). ``layer``
    is the mixer as the architecture names it (a registered name or ``pkg.module:Class``),
    ``dim`` the model width, ``seq_len`` the sequence length and ``kwargs`` the constructor
    arguments (registry defaults, the architecture's kwargs and the class's own defaults,
    merged). Return the forward FLOPs of one sequence of ``seq_len`` tokens (batch 1), with a
    multiply-add counted as 2 FLOPs, either as a number or as a dict of named terms that add
    up to it; return ``None`` for a layer you do not know. The first non-``None`` answer wins.

    :param layer: the mixer's name in the architecture (registered name or import path).
    :param dim: the model width.
    :param seq_len: the sequence length.
    :param kwargs: the constructor arguments, defaults merged in.
    :return: forward FLOPs of one sequence (a number or named terms), or ``None``.
    """


@hookspec
def madbench_register_corpora(register: Register) -> None:
    """Register corpora for ``madbench scaling run --corpus NAME`` (since 0.1).

    Call ``register(name, loader, **metadata)``. ``loader()`` takes no arguments and returns a
    :class:`madbench.scaling.corpus.Corpus`: ``Corpus.from_bytes(name, data, source)`` for a
    byte-level corpus (vocabulary 256) or ``Corpus.from_tokens(name, ids, vocab_size, source)``
    for token ids. It is called only when the corpus is used, so a loader may read a large
    file or an optional package. Useful metadata: ``description``, ``unit`` (``"byte"`` or
    ``"token"``), ``package`` (what to install), ``sha256`` (the expected stream hash).
    Every record carries the corpus's SHA-256, so frontiers of different corpora never mix.
    A local file needs no plugin: ``--corpus PATH`` (see
    :func:`madbench.scaling.corpus.file_corpus`).

    :param register: ``register(name: str, loader: Callable[[], Corpus], **metadata)``.
    """
