"""`vault allow` / `vault deny`: who may launch into which vault without a password.

Thin commands over netns_vault.allow; see docs/launch.md for the mechanism.
"""

from __future__ import annotations

from typing import Annotated

import typer

from .. import allow as core
from .app import esc, out

_ROOT = typer.Option("--root", hidden=True, help="Redirect /etc (tests).")


def allow_cmd(
    user: Annotated[str, typer.Argument(help="The desktop user to allow.")],
    vault: Annotated[list[str], typer.Option("--vault", metavar="NAME",
                                             help="A vault USER may launch into (repeatable).")],
    root: Annotated[str, _ROOT] = "/",
    launcher: Annotated[str | None, typer.Option("--launcher", hidden=True)] = None,
) -> None:
    """Let USER start programs in the named vaults without a password or a terminal."""
    result = core.allow(user, vault, root=root, launcher=launcher)
    state = "now" if result.changed else "already"
    out.print(f"[green]✔[/] {esc(result.user)} may {state} launch into "
              f"{esc(', '.join(result.vaults))} without a password (vault-launch NAME -- CMD; "
              f"sudoers drop-in {esc(result.dropin)})")


def deny_cmd(
    user: Annotated[str, typer.Argument(help="The user.")],
    vault: Annotated[list[str] | None, typer.Option("--vault", metavar="NAME",
                                                    help="Take only this vault (repeatable); "
                                                         "default: all.")] = None,
    root: Annotated[str, _ROOT] = "/",
) -> None:
    """Take back what `vault allow` gave USER (all vaults unless --vault)."""
    result = core.deny(user, vault or None, root=root)
    if not result.changed:
        out.print(f"{esc(user)} was not allowed into {esc(', '.join(vault or ['any vault']))}; "
                  "nothing to do")
    elif result.vaults:
        out.print(f"[green]✔[/] {esc(user)} may now launch only into "
                  f"{esc(', '.join(result.vaults))}")
    else:
        out.print(f"[green]✔[/] {esc(user)} may no longer launch into any vault without a "
                  "password")


def register(app: typer.Typer) -> None:
    app.command("allow")(allow_cmd)
    app.command("deny")(deny_cmd)
