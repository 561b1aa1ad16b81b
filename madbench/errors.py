"""Exceptions that the CLI turns into one clear line and an exit code, and the one-line
warning."""
import sys


class MadbenchError(Exception):
    """A user-facing error: printed as one line, exit code 1."""

    exit_code = 1


class UsageError(MadbenchError):
    """Bad input from the user (unknown name, bad value): exit code 2."""

    exit_code = 2


class CheckFailed(MadbenchError):
    """An architecture refused by a check (causality, state): exit code 3."""

    exit_code = 3


class PluginConflictError(MadbenchError):
    """Two plugins registered the same name."""


def warn(message: str) -> None:
    """A warning as one line on stderr, ``Warning: ...`` (never a Python warning with a file
    path)."""
    print(f"Warning: {message}", file=sys.stderr)
