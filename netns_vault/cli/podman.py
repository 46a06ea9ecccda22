"""`vault podman ...`: Podman containers in a vault (docs/podman.md).

Thin: netns_vault.podman builds and checks the `podman run` command line; this execs it.
"""

from __future__ import annotations

import typer

app = typer.Typer(
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    help="Podman containers whose only network is a vault (podman joins it directly).",
)

RUN_USAGE = "usage: vault podman run NAME [PODMAN RUN OPTIONS] IMAGE [CMD...]"
RUN_HELP = f"""{RUN_USAGE}

Runs `podman run --network ns:/run/netns/vault-NAME` with the vault's resolv.conf mounted on
/etc/resolv.conf and --ulimit nofile/nproc within this host's hard limits (unless given).
Refused: --network/--net, --pod, --dns*, -p/--publish/-P, --cap-add, --privileged.
The exit code and signals are podman's (this process becomes podman). See docs/podman.md."""


@app.callback()
def main() -> None:
    """Podman containers whose only network is a vault."""


@app.command(
    "run",
    context_settings={"allow_extra_args": True, "ignore_unknown_options": True,
                      "help_option_names": []},
    add_help_option=False,
)
def run_cmd(ctx: typer.Context) -> None:
    """Run a container in vault NAME: vault podman run NAME [PODMAN RUN OPTIONS] IMAGE [CMD...]"""
    from ..errors import UsageError
    from ..podman import exec_run

    args = list(ctx.args)
    if args[:1] in (["-h"], ["--help"]):
        print(RUN_HELP)
        raise typer.Exit(0)
    if not args:
        raise UsageError(RUN_USAGE)
    exec_run(args[0], args[1:])
