"""The ``madbench`` command line. Each command group lives in its own module.

Exit codes: 0 ok, 1 error, 2 usage (bad input), 3 refused by a check, 130 interrupted.
"""
from __future__ import annotations

import click

from ..errors import MadbenchError
from .. import __version__


class MadbenchGroup(click.Group):
    """Turns madbench errors into one line on stderr and the documented exit code."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except MadbenchError as exc:
            click.echo(f"Error: {exc}", err=True)
            ctx.exit(exc.exit_code)
        except KeyboardInterrupt:
            click.echo("Interrupted.", err=True)
            ctx.exit(130)


@click.group(cls=MadbenchGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="madbench")
def main() -> None:
    """madbench: the MAD synthetic benchmark for sequence mixers."""


def _add_commands() -> None:
    from . import arch_cmd, eval_cmd, leaderboard_cmd, plugins_cmd, scaling_cmd, tasks_cmd

    for module in (plugins_cmd, tasks_cmd, arch_cmd, eval_cmd, leaderboard_cmd, scaling_cmd):
        for command in getattr(module, "COMMANDS", []):
            main.add_command(command)


_add_commands()
