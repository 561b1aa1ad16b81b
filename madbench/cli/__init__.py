"""The ``madbench`` command line. Each command group lives in its own module.

Exit codes: 0 ok, 1 error, 2 usage (bad input), 3 refused by a check, 130 interrupted. Every
error is one line on stderr; an unexpected exception too (its traceback with ``--debug`` or
``MADBENCH_DEBUG=1``).
"""
from __future__ import annotations

import os
import traceback

import click

from ..errors import BudgetExceeded, MadbenchError, printable
from .. import __version__

DEBUG_ENV = "MADBENCH_DEBUG"


def _debugging(ctx: click.Context) -> bool:
    return bool(ctx.params.get("debug")) or os.environ.get(DEBUG_ENV, "") not in ("", "0")


class MadbenchGroup(click.Group):
    """Turns every error into one line on stderr and the documented exit code."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except (MadbenchError, BudgetExceeded) as exc:
            click.echo(f"Error: {printable(exc)}", err=True)
            ctx.exit(exc.exit_code)
        except KeyboardInterrupt:
            click.echo("Interrupted.", err=True)
            ctx.exit(130)
        except (click.exceptions.ClickException, click.exceptions.Exit, click.exceptions.Abort):
            raise
        except Exception as exc:  # noqa: BLE001 - the promise: one line, never a traceback
            if _debugging(ctx):
                click.echo(traceback.format_exc().rstrip(), err=True)
            click.echo(f"Error: {printable(_one_line(exc))}" + (
                "" if _debugging(ctx) else f" (--debug or {DEBUG_ENV}=1 shows the traceback)"),
                err=True)
            ctx.exit(1)


def _one_line(exc: BaseException) -> str:
    """An exception as one line: an OS error as its message and file, else its type and first
    line."""
    if isinstance(exc, OSError) and exc.strerror:
        where = f": {exc.filename}" if exc.filename else ""
        return f"{exc.strerror}{where}"
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


@click.group(cls=MadbenchGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="madbench")
@click.option("--debug", is_flag=True, help=f"Show the traceback of an unexpected error (also "
              f"{DEBUG_ENV}=1).")
def main(debug: bool) -> None:
    """madbench: the MAD synthetic benchmark for sequence mixers."""


def _add_commands() -> None:
    from . import arch_cmd, eval_cmd, leaderboard_cmd, plugins_cmd, scaling_cmd, tasks_cmd

    for module in (plugins_cmd, tasks_cmd, arch_cmd, eval_cmd, leaderboard_cmd, scaling_cmd):
        for command in getattr(module, "COMMANDS", []):
            main.add_command(command)


_add_commands()
