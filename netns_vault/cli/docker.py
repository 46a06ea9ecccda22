"""`vault docker ...`: containers through a Docker vault (`vault up NAME --docker`).

Thin commands: parse, one call into netns_vault.docker.attach / netns_vault.expose /
netns_vault.docker.gateway_image, print. Errors are netns_vault.errors types; entry.report()
maps them to exit codes.
"""

from __future__ import annotations

import json
import sys
from typing import Annotated

import typer
from rich.console import Console

app = typer.Typer(
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    help="Docker containers through a vault made with `vault up NAME --docker`.",
)
out = Console(highlight=False)
err = Console(stderr=True, highlight=False)


@app.command("run")
def run_cmd(
    vault: Annotated[str, typer.Argument(metavar="NAME", help="The Docker vault to join.")],
    image: Annotated[str, typer.Argument(help="A local image (never pulled).")],
    args: Annotated[list[str] | None, typer.Argument(help="Command and arguments.")] = None,
    name: Annotated[str | None, typer.Option("--name", help="Container name.")] = None,
    detach: Annotated[bool, typer.Option("--detach", "-d", help="Start it and return.")] = False,
    rm: Annotated[bool, typer.Option("--rm", help="Remove the container when it exits.")] = False,
    env: Annotated[
        list[str] | None,
        typer.Option("--env", "-e", metavar="KEY=VALUE", help="Environment variable (repeatable)."),
    ] = None,
) -> int:
    """Run a container whose only network is vault NAME: vault docker run NAME [OPTIONS] -- IMAGE [ARGS]

    Same as `docker run --network container:vault-NAME`. In the foreground its output is shown
    and its exit code becomes vault's; Ctrl-C stops it. No -it, no -p: see `vault docker expose`.
    """
    from ..docker import attach

    req = attach.RunRequest(
        vault=vault,
        image=image,
        command=tuple(args or ()),
        name=name,
        detach=detach,
        remove=rm,
        env=attach.parse_env(env or []),
    )
    result = attach.run(req)
    if detach:
        print(result.container_id)
        return 0
    return result.exit_code or 0


@app.command("ls")
def ls_cmd(
    vault: Annotated[str, typer.Argument(metavar="NAME")],
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """List the containers attached to vault NAME (any state)."""
    from ..docker import attach

    rows = attach.attached(vault)
    if as_json:
        print(
            json.dumps([{"id": c.id, "name": c.name, "status": c.status} for c in rows], indent=2)
        )
        return
    if not rows:
        out.print(f"no container is attached to vault {vault}")
        return
    from rich.table import Table

    table = Table("name", "id", "status")
    for c in rows:
        table.add_row(c.name, c.id[:12], c.status)
    out.print(table)


@app.command("expose")
def expose_cmd(
    vault: Annotated[str, typer.Argument(metavar="NAME")],
    listen: Annotated[
        str,
        typer.Argument(
            metavar="HOSTADDR:PORT",
            help="Where to listen on the host, e.g. 127.0.0.1:8080 (port 0: any free one).",
        ),
    ],
    target: Annotated[
        int, typer.Argument(metavar="TARGETPORT", help="TCP port on 127.0.0.1 inside the vault.")
    ],
) -> None:
    """Publish TCP port TARGETPORT of vault NAME on the host, in the foreground until Ctrl-C.

    A vault has no NIC, so Docker's `ports:` cannot work: this forwarder accepts on the host and
    connects from inside the vault (a socket made in its namespace) to 127.0.0.1:TARGETPORT.
    Run it as a systemd service to keep it (docs/docker.md)."""
    from .. import expose

    host, port = expose.parse_listen(listen)
    spec = expose.ExposeSpec(
        vault=vault,
        listen_host=host,
        listen_port=port,
        target_port=expose.parse_port(target, "target port"),
    )
    if not expose.is_loopback(host):
        err.print(
            f"[yellow]notice:[/] {host} is not a loopback address: whoever reaches it "
            f"reaches port {target} inside vault {vault}"
        )

    def ready(addr: tuple[str, int]) -> None:
        shown = f"[{addr[0]}]" if ":" in addr[0] else addr[0]
        print(
            f"forwarding {shown}:{addr[1]} -> vault {vault} 127.0.0.1:{spec.target_port} "
            "(Ctrl-C to stop)",
            flush=True,
        )

    expose.serve_forever(spec, ready)


@app.command("build-gateway")
def build_gateway_cmd() -> None:
    """Build the gateway image (images/gateway) offline from this host's files; print its tag."""
    from ..docker.engine import connect
    from ..docker.gateway_image import ensure_gateway_image

    with err.status("building the gateway image (offline, from this host's files)…"):
        tag = ensure_gateway_image(connect())
    print(tag)
    sys.stdout.flush()
