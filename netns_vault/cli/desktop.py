"""`vault desktop add|remove NAME APP`: menu entries that start APP in a vault.

Thin commands over netns_vault.desktop.
"""

from __future__ import annotations

from typing import Annotated

import typer

from .. import desktop as core
from .app import err, esc, out

app = typer.Typer(no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False,
                  help="Menu entries that start a program in a vault.")

_USER = typer.Option("--user", "-u", help="Whose menu (root only); default: the sudo caller.")


@app.command("add")
def add_cmd(
    name: Annotated[str, typer.Argument(help="The vault.")],
    application: Annotated[str, typer.Argument(metavar="APP",
                                               help="Command name or absolute path.")],
    user: Annotated[str | None, _USER] = None,
) -> None:
    """Write ~/.local/share/applications/netns-vault-NAME-APP.desktop: "APP (vault NAME)"."""
    entry = core.add(name, application, user)
    for notice in entry.notices:
        err.print(f"[yellow]notice:[/] {esc(notice)}")
    # The name comes from the app's own .desktop file: outside text.
    out.print(f"[green]✔[/] {esc(repr(entry.name))} is in {esc(entry.user)}'s menu "
              f"({esc(entry.path)})")


@app.command("remove")
def remove_cmd(
    name: Annotated[str, typer.Argument(help="The vault.")],
    application: Annotated[str, typer.Argument(metavar="APP")],
    user: Annotated[str | None, _USER] = None,
) -> None:
    """Remove the entry `vault desktop add NAME APP` wrote."""
    path = core.remove(name, application, user)
    out.print(f"[green]✔[/] removed {esc(path)}")
