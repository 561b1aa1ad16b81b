"""``madbench plugins``: what is installed, what it registered, what failed."""
from __future__ import annotations

import json
import textwrap

import click
from tabulate import tabulate

from ..plugins import get_registry

#: the registered names wrap at this width, so that a row fits a terminal
REGISTERED_WIDTH = 60


@click.command("plugins")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def plugins_command(as_json: bool) -> None:
    """List plugins: name, distribution and version, hooks, what each registered, failures."""
    reg = get_registry()
    rows = [{"name": p.name, "distribution": p.distribution, "version": p.version,
             "bundled": p.bundled, "hooks": p.hooks, "registered": p.registered}
            for p in reg.plugins]
    failed = [{"name": f.name, "distribution": f.distribution, "error": f.error}
              for f in reg.failures]
    if as_json:
        click.echo(json.dumps({"plugins": rows, "failed": failed}, indent=2))
        return
    table = [[r["name"], f"{r['distribution'] or '-'} {r['version'] or ''}".strip(),
              "\n".join(h.replace("madbench_", "") for h in r["hooks"]),
              "\n".join(textwrap.fill(f"{c}: {', '.join(n)}", REGISTERED_WIDTH,
                                       subsequent_indent="  ", break_on_hyphens=False)
                        for c, n in r["registered"].items() if n)]
             for r in rows]
    click.echo(tabulate(table, headers=["plugin", "distribution", "hooks", "registered"],
                        tablefmt="simple"))
    if failed:
        click.echo("\nFailed to load:")
        for f in failed:
            click.echo(f"  {f['name']} ({f['distribution'] or '?'}): {f['error']}")


COMMANDS = [plugins_command]
