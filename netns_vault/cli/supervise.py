"""`vault supervise`, `enable`/`disable`, `attach-unit`/`detach-unit`: a vault that lives."""

from __future__ import annotations

from typing import Annotated

import typer

ROOT_HELP = "Write under this directory instead of / (tests)."


def register(app: typer.Typer) -> None:
    """Add the top-level commands (supervise, enable, disable, attach-unit, detach-unit) to the
    app. Long only because it holds five thin command definitions, each a few lines."""
    @app.command()
    def supervise(
        name: str,
        config: Annotated[str | None, typer.Option("--config", "-c",
                                                   help="wg-quick .conf (to bring it up).")]
        = None,
        docker: Annotated[bool, typer.Option("--docker", help="Held by a Docker container "
                                                              "(heals when Docker restarts it).")]
        = False,
        keep: Annotated[bool, typer.Option("--keep", help="Leave the vault up on exit.")] = False,
        wait: Annotated[bool, typer.Option("--wait", help="Tell systemd READY=1 only after the "
                                                          "first handshake.")] = False,
        driver: Annotated[str, typer.Option(help="WireGuard driver: auto, kernel, userspace.")]
        = "auto",
        stale_after: Annotated[float, typer.Option(help="Seconds without a handshake (while "
                                                        "sending) before reconnecting.")]
        = 180.0,
        answer_timeout: Annotated[float, typer.Option(help="Seconds sending with nothing back "
                                                           "before reconnecting.")] = 20.0,
        probe_max: Annotated[float, typer.Option(help="Longest pause between handshake "
                                                      "attempts while down.")] = 3.0,
    ) -> None:
        """Bring vault NAME up if needed and keep it alive (foreground) until SIGTERM/SIGINT."""
        from ..errors import UsageError
        from ..names import validate_name
        from ..supervise.supervisor import Options
        from ..supervise.supervisor import supervise as run

        validate_name(name)
        for label, value in (("--stale-after", stale_after), ("--answer-timeout",
                                                              answer_timeout),
                             ("--probe-max", probe_max)):
            if not 0.1 <= value <= 86400:
                raise UsageError(f"{label} must be between 0.1 and 86400 seconds")
        raise typer.Exit(run(Options(name, config, docker, keep, wait, driver, stale_after,
                                     answer_timeout, probe_max)))

    @app.command()
    def enable(
        name: str,
        config: Annotated[str, typer.Option("--config", "-c", help="wg-quick .conf (copied).")],
        docker: Annotated[bool, typer.Option("--docker")] = False,
        wait: Annotated[bool, typer.Option("--wait", help="Ready only after the first "
                                                          "handshake.")] = False,
        root: Annotated[str, typer.Option("--root", hidden=True, help=ROOT_HELP)] = "/",
    ) -> None:
        """Start vault NAME at boot: a systemd unit running `vault supervise`."""
        from ..supervise import units

        result = units.enable(name, config, docker=docker, wait=wait, root=root)
        _report(result)

    @app.command()
    def disable(
        name: str,
        root: Annotated[str, typer.Option("--root", hidden=True, help=ROOT_HELP)] = "/",
    ) -> None:
        """Undo `vault enable NAME` exactly (the vault itself is left as it is)."""
        from ..supervise import units

        _report(units.disable(name, root=root))

    @app.command("attach-unit")
    def attach_unit(
        name: str,
        unit: str,
        root: Annotated[str, typer.Option("--root", hidden=True, help=ROOT_HELP)] = "/",
    ) -> None:
        """Put systemd service UNIT into vault NAME (a drop-in)."""
        from ..supervise import units

        _report(units.attach(name, unit, root=root))

    @app.command("detach-unit")
    def detach_unit(
        name: str,
        unit: str,
        root: Annotated[str, typer.Option("--root", hidden=True, help=ROOT_HELP)] = "/",
    ) -> None:
        """Remove the drop-in `vault attach-unit NAME UNIT` wrote."""
        from ..supervise import units

        _report(units.detach(name, unit, root=root))


def _report(result) -> None:
    from .app import esc, out

    for line in result.lines:
        out.print(esc(line))
