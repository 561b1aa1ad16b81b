"""The boards: one per standard protocol, all on the bundled MAD suite (the six tasks)."""
from __future__ import annotations

import os
from pathlib import Path

from ..errors import MadbenchError, UsageError
from ..plugins import get_registry
from ..protocol import PRESETS, Protocol, apply_overrides
from ..tasks import Task, suite_hash

#: board name -> the protocol preset whose runs it ranks
BOARDS: dict[str, str] = {"mad-paper": "paper", "mad-quick": "quick"}
#: the entry-point name of the bundled plugin that registers the suite's tasks
SUITE_PLUGIN = "mad-tasks"


def suite_tasks() -> list[Task]:
    """The tasks of the MAD suite: those the bundled ``mad-tasks`` plugin registers (tasks of
    other plugins are not part of any board)."""
    tasks = [e.obj for e in get_registry().tasks.values() if e.plugin == SUITE_PLUGIN]
    if not tasks:
        raise MadbenchError(f"the bundled MAD tasks (plugin {SUITE_PLUGIN!r}) are not loaded; "
                            "check MADBENCH_DISABLE_PLUGINS / MADBENCH_LOAD_PLUGINS")
    return tasks


def board_of_folder(path: str | os.PathLike | None) -> tuple[str | None, bool]:
    """(``mad-quick``, True) for a file directly in a board's folder; (board, False) for one in
    a folder below a board's folder; (None, False) elsewhere.

    A board's folder is a folder named after a board, wherever it is: ``render --root ROOT``
    and ``agree --root ROOT`` rank ``ROOT/<board>/*.json`` for any ROOT, so a file in
    ``lb2/mad-quick/`` is a mad-quick entry as much as one in ``leaderboards/mad-quick/``. The
    path is taken as written (made absolute, symbolic links not followed: a link's target does
    not choose the board)."""
    if path is None:
        return None, False
    for depth, folder in enumerate(Path(os.path.abspath(path)).parents):
        if folder.name in BOARDS:
            return folder.name, depth == 0
    return None, False


def current_suite_hash() -> str:
    """The suite hash a submission must carry: every (task, version, setting) of the suite."""
    return suite_hash(suite_tasks())


def board_for(protocol: Protocol) -> str | None:
    """The board whose preset ``protocol`` is exactly (standard, same hash), else None."""
    for board, preset in BOARDS.items():
        if (protocol.name == preset and protocol.standard and not protocol.overrides
                and protocol.hash == PRESETS[preset].hash):
            return board
    return None


def preset_with_overrides(protocol: Protocol) -> Protocol:
    """What madbench's own preset ``protocol.name`` becomes with ``protocol.overrides``
    applied (and checked as ``--set`` checks them); equal to ``protocol`` unless a field was
    edited. Raises ValueError for an unknown preset or a bad override."""
    if protocol.name not in PRESETS:
        raise ValueError(f"unknown protocol preset {protocol.name!r} (madbench has: "
                         f"{', '.join(PRESETS)})")
    preset = PRESETS[protocol.name]
    changes = {}
    for key, value in protocol.overrides:
        if not isinstance(key, str):
            raise ValueError(f"override of unknown or fixed protocol field {key!r}")
        current = getattr(preset, key, None)
        changes[key] = tuple(value) if isinstance(current, tuple) and isinstance(value, list) \
            else value
    try:
        return apply_overrides(preset, changes)
    except UsageError as exc:
        raise ValueError(str(exc)) from None


def describe_protocol(protocol: Protocol) -> str:
    """``quick`` or ``smoke (overrides: epochs=2)``."""
    if not protocol.overrides:
        return protocol.name
    parts = ", ".join(f"{k}={_show(v)}" for k, v in protocol.overrides)
    return f"{protocol.name} (overrides: {parts})"


def _show(value) -> str:
    if isinstance(value, (list, tuple)):
        return ",".join(str(v) for v in value)
    return str(value)
