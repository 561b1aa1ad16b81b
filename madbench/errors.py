"""Exceptions that the CLI turns into one clear line and an exit code, the one-line warning,
``printable``, which every line built from outside text goes through, and ``raised_at``."""
import importlib
import os
import re
import sys
import sysconfig
import traceback

#: control characters (C0, DEL, C1), line and paragraph separators, bidirectional marks,
#: overrides and isolates, the zero-width space and other invisible format characters (not the
#: zero-width joiners, which emoji and several scripts need), lone surrogates:
#: shown escaped, never sent to a terminal as they are (the submission schema's ``label``
#: refuses the same class)
UNPRINTABLE_CLASS = ("\x00-\x1f\x7f-\x9f\u061c\u180e\u200b\u200e\u200f\u2028-\u202e"
                     "\u2060-\u2064\u2066-\u2069\ufeff\ud800-\udfff")
_UNPRINTABLE = re.compile(f"[{UNPRINTABLE_CLASS}]")


def printable(text: object) -> str:
    """``str(text)`` with every control character escaped (``\\x1b``, ``\\n``,
    ``\\u202e``, ``\\udcff``): one line that cannot move the cursor, recolour the
    terminal or print a forged line."""
    return _UNPRINTABLE.sub(lambda m: m.group().encode("unicode_escape").decode("ascii"),
                            str(text))


def printable_lines(text: object) -> str:
    """``printable`` for each line of ``text`` (a table): its line breaks kept, every other
    control character escaped."""
    return "\n".join(map(printable, str(text).split("\n")))


class MadbenchError(Exception):
    """A user-facing error: printed as one line, exit code 1."""

    exit_code = 1


class UsageError(MadbenchError):
    """Bad input from the user (unknown name, bad value): exit code 2."""

    exit_code = 2


class CheckFailed(MadbenchError):
    """An architecture refused by a check (causality, state): exit code 3."""

    exit_code = 3


class BudgetExceeded(BaseException):
    """A check ran past its time budget (exit code 3). A ``BaseException``, like
    ``KeyboardInterrupt``: raised by a timer at any point of a check, it must not be taken for
    the check's own failure by an ``except Exception`` inside it."""

    exit_code = 3


class Terminated(KeyboardInterrupt):
    """SIGTERM (Slurm, ``docker stop``, ``timeout``), raised where Ctrl-C raises
    ``KeyboardInterrupt`` and handled as it is: exit code 143 (128 + 15)."""

    exit_code = 143


class PluginConflictError(MadbenchError):
    """Two plugins registered the same name."""


def warn(message: str) -> None:
    """A warning as one line on stderr, ``Warning: ...`` (never a Python warning with a file
    path); outside text is escaped."""
    print(f"Warning: {printable(message)}", file=sys.stderr)


def add_note(exc: BaseException, note: str) -> None:
    """``exc.add_note(note)``, on Python 3.10 too (which has ``__notes__`` only by convention)."""
    exc.__notes__ = [*getattr(exc, "__notes__", ()), note]


def note_suffix(exc: BaseException) -> str:
    """`` (its first note)``, as a one-line error shows it (the run it was training), or ``""``."""
    notes = getattr(exc, "__notes__", None)
    return f" ({notes[0]})" if notes else ""


def raised_at(exc: BaseException) -> str:
    """`` (file, line N)`` of the line that raised ``exc`` while a module was imported (the
    innermost frame after the catching one, outside importlib and the installed libraries, else
    outside importlib), since the error is one line, without a traceback. Empty for a
    SyntaxError (its message says where) or when every frame is importlib's (no such module)."""
    if isinstance(exc, SyntaxError):
        return ""
    importlib_dir = os.path.dirname(importlib.__file__)
    frames = [f for f in traceback.extract_tb(exc.__traceback__)[1:]     # [0]: the catcher
              if not f.filename.startswith(("<", importlib_dir))]
    libraries = tuple({sysconfig.get_path(k) for k in ("stdlib", "purelib", "platlib")})
    own = [f for f in frames if not f.filename.startswith(libraries)]
    where = (own or frames)[-1:]
    return f" ({where[0].filename}, line {where[0].lineno})" if where else ""
