"""`vault doctor`: one line per check, ✔ or ✘, and the exact fix under each ✘."""

from __future__ import annotations

import json
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape

from .. import doctor as core
from ..errors import SystemFailure

out = Console(highlight=False)


def _line(c: core.Check, width: int) -> None:
    if c.ok:
        mark = "[green]✔[/]"
    elif c.required:
        mark = "[red]✘[/]"
    else:
        mark = "[yellow]✘[/]"
    note = "" if c.ok or c.required else " [yellow](optional)[/]"
    out.print(f"{mark} {escape(c.name).ljust(width)} {escape(c.detail)}{note}")
    if not c.ok and c.fix:
        out.print(f"  {' ' * width} [bold]fix:[/] {escape(c.fix)}")


def doctor_cmd(
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """Check that this machine can run a vault; give the exact fix for anything missing."""
    checks = core.run_checks()
    ok = core.can_make_vault(checks)
    if as_json:
        print(json.dumps({"ok": ok, "checks": [c.to_dict() for c in checks]}, indent=2))
    else:
        width = max(len(c.name) for c in checks)
        for c in checks:
            _line(c, width)
        out.print()
        if ok:
            driver = next((c.detail for c in checks if c.name == "WireGuard driver"), "")
            out.print(f"[green]✔ a vault can be made here[/] ({escape(driver)}). "
                      "Next: sudo vault demo")
    if not ok:
        raise SystemFailure("a vault cannot be made here; fix: "
                            + ", ".join(c.name for c in core.blocking(checks)))


def register(app: typer.Typer) -> None:
    app.command("doctor")(doctor_cmd)
