"""The typer app. Commands parse arguments, make one call into the core and print the result.

They raise netns_vault.errors types; entry.report() maps those to exit codes.
"""

from __future__ import annotations

import json
import sys
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape

from .. import vault
from ..errors import CheckFailed, InterruptedAfterChange, UsageError
from ..logs import configure as configure_logging
from ..text import one_line
from . import listing

app = typer.Typer(
    name="vault",
    help="A VPN kill switch that cannot leak: programs in a network namespace whose only "
    "uplink is WireGuard.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _console(stderr: bool = False) -> Console:
    """Never wraps a line (soft_wrap), and when the stream is not a terminal (a pipe, a file, a
    script reading it) is wide enough that nothing machine-read is folded or cut either."""
    stream = sys.stderr if stderr else sys.stdout
    width = None if stream.isatty() else 100_000
    return Console(stderr=stderr, soft_wrap=True, highlight=False, width=width)


out = _console()
err = _console(stderr=True)


def esc(value: object) -> str:
    """Outside text (a path, a process name, a config value) as rich may render it: markup
    escaped, control characters made visible, one line."""
    return escape(one_line(str(value)))


@app.callback()
def main(
    verbose: Annotated[bool, typer.Option("--verbose", "-v",
                                          help="Log each system change (as the ip/iptables "
                                               "command it corresponds to) on stderr.")] = False,
) -> None:
    configure_logging(verbose)


def _notice(msg: str) -> None:
    err.print(f"[yellow]notice:[/] {esc(msg)}")


@app.command()
def up(
    names: Annotated[list[str], typer.Argument(
        metavar="NAME...", help="Vault name(s): up to 12 of a-z 0-9 -. Several: all or none.")],
    config: Annotated[list[str] | None, typer.Option(
        "--config", "-c", help="wg-quick .conf file, or a name in /etc/wireguard; one per NAME, "
                               "in the same order.")] = None,
    config_dir: Annotated[str | None, typer.Option(
        "--config-dir", help="Read DIR/NAME.conf for each NAME (instead of --config).")] = None,
    driver: Annotated[str, typer.Option(help="WireGuard driver: auto, kernel or userspace.")]
    = "auto",
    wait: Annotated[bool, typer.Option("--wait", help="Wait for the first handshake.")] = False,
    timeout: Annotated[float, typer.Option(help="Seconds --wait waits.")] = 15.0,
    docker: Annotated[bool, typer.Option("--docker",
                                         help="Hold the namespace in a Docker container that "
                                              "containers and compose services can join.")]
    = False,
    firewall: Annotated[str, typer.Option(help="Firewall backend: auto (iptables where legacy "
                                          "xtables works, else nftables), iptables or "
                                          "nftables.")] = "auto",
) -> None:
    """Create vault NAME: a namespace whose only uplink is the WireGuard tunnel.

    Several names are brought up in one process, all or nothing: if one fails, those already up
    are taken down again."""
    kind = "docker" if docker else "netns"
    # vault.up checks the name, the driver, the kind and the firewall before it reads the config
    if len(names) == 1 and config and len(config) == 1 and not config_dir:
        results = [vault.up(names[0], config[0], driver_choice=driver, provider_kind=kind,
                            firewall=firewall)]
    else:
        results = vault.up_many(vault.specs_for(names, config, config_dir),
                                driver_choice=driver, provider_kind=kind, firewall=firewall)
    try:
        for result in results:
            for notice in result.notices:
                _notice(notice)
            out.print(f"[green]✔[/] vault [bold]{esc(result.name)}[/] is up "
                      f"(namespace {esc(result.netns)}, {esc(result.driver)} driver, "
                      f"{esc(result.firewall)} firewall{' (auto)' if firewall == 'auto' else ''}, "
                      f"{esc(', '.join(result.addresses))} via "
                      f"{esc(', '.join(result.endpoints) or 'no endpoint')})")
        for result in results if wait else []:
            with err.status(f"waiting for the first handshake of {esc(result.name)} "
                            f"(up to {timeout:g} s)…"):
                when = vault.wait_for_handshake(result.name, timeout)
            if when is None:
                raise CheckFailed(f"no handshake within {timeout:g} s; the vault is up but the "
                                  "tunnel is not (traffic inside fails closed)")
            out.print("[green]✔[/] handshake done")
    except KeyboardInterrupt:
        raise InterruptedAfterChange(
            f"interrupted after vault {results[0].name} was up; it is up" if len(results) == 1
            else f"interrupted after vaults {', '.join(r.name for r in results)} were up; "
                 "they are up") from None


@app.command()
def down(
    names: Annotated[list[str] | None, typer.Argument(metavar="NAME...")] = None,
    kill: Annotated[bool, typer.Option("--kill", help="End the processes still inside.")] = False,
    force: Annotated[bool, typer.Option("--force", help="Docker vaults: stop attached "
                                                        "containers first.")] = False,
    stale: Annotated[bool, typer.Option("--stale", help="Take down every ephemeral vault whose "
                                        "`vault run --ephemeral` is gone (killed).")] = False,
) -> None:
    """Take vault NAME (or several) down. Processes left inside lose their network; they never
    leak. With several names each is taken down even when another fails."""
    names = names or []
    results: list = []
    if stale:
        from ..vault.ephemeral import collect_stale

        results = collect_stale()
        if not results and not names:
            out.print("no stale vault")
            return
    elif not names:
        raise UsageError("give a vault name (or several), or --stale")
    if len(names) == 1:
        results += [vault.down(names[0], kill=kill, force=force)]
    elif names:
        results += vault.down_many(names, kill=kill, force=force, keep_going=True)
    for result in results:
        if isinstance(result, BaseException):
            continue
        if not result.existed:
            out.print(f"vault {esc(result.name)} is not up; nothing to do")
            continue
        out.print(f"[green]✔[/] vault [bold]{esc(result.name)}[/] is down")
        if result.processes:
            verb = "ended" if result.killed else "still running, now without any network"
            for pid, cmd in result.processes:
                out.print(f"  pid {pid} {verb}: {esc(cmd)}")
            if not result.killed:
                out.print("  (use --kill to end them)")
    vault_errors = [r for r in results if isinstance(r, BaseException)]
    for exc in vault_errors[1:]:
        err.print(f"vault: {esc(exc)}")
    if vault_errors:
        raise vault_errors[0]


@app.command()
def reload(
    name: str,
    config: Annotated[str | None, typer.Option("--config", "-c",
                                               help="A new config; default: the one from `up`.")]
    = None,
) -> None:
    """Re-create only the tunnel of vault NAME (new config, or wireguard-go died).

    The namespace stays, so programs and containers inside keep running and reconnect."""
    result = vault.reload_tunnel(name, config)
    for notice in result.notices:
        _notice(notice)
    out.print(f"[green]✔[/] tunnel of vault [bold]{esc(result.name)}[/] re-created "
              f"({esc(result.driver)} driver, via "
              f"{esc(', '.join(result.endpoints) or 'no endpoint')})")


@app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def run(ctx: typer.Context) -> None:
    """Run a program inside a vault, confined: vault run [-n NAME] [--user USER]
    [--dbus filtered|none|host] [--system-bus] [--hide PATH]... [--privileged] -- CMD [ARGS...]
    (`vault run --help` for each option)."""
    from .run import run_main

    raise typer.Exit(run_main(list(ctx.args)))


def _supervisor_view(name: str) -> dict | None:
    return listing.supervisor_view(name)


def _describe(view: dict | None) -> str:
    return listing.describe(view)


@app.command("ls")
def list_cmd(
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """List the vaults that are up."""
    rows = listing.rows()
    if as_json:
        print(json.dumps(rows, indent=2))
        return
    if not rows:
        out.print("no vault is up")
        return
    from rich.table import Table

    table = Table(*listing.HEADERS)
    for row in rows:
        table.add_row(*(esc(c) for c in listing.cells(row)))
    out.print(table)


@app.command()
def status(
    name: str,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """Show one vault."""
    info = vault.status(name)
    info["supervisor"] = _supervisor_view(info["name"])
    if as_json:
        print(json.dumps(info, indent=2))
        return
    out.print(f"[bold]{esc(info['name'])}[/] ({esc(info['netns'])}, {esc(info['driver'])} "
              "driver)")
    out.print(f"  address   {esc(', '.join(info['addresses']))}")
    out.print(f"  dns       {esc(', '.join(info['dns']) or 'none (fails closed)')}")
    for p in info["peers"]:
        out.print(f"  peer      {esc(p['public_key'])} at "
                  f"{esc(p.get('resolved') or p.get('endpoint'))}")
        out.print(f"  handshake {listing.ago(p['last_handshake'])}, rx {listing.size(p['rx_bytes'])}, "
                  f"tx {listing.size(p['tx_bytes'])}")
    out.print(f"  supervisor {esc(_describe(info['supervisor']))}")
    out.print(f"  processes {len(info['processes'])}")
    for proc in info["processes"]:
        out.print(f"    {proc['pid']} {esc(proc['command'])}")


@app.command()
def check(
    name: str,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> int:
    """Verify the vault's invariants on the live system; exit 1 naming each one that fails."""
    results = vault.check(name)
    failed = [r for r in results if not r.ok]
    if as_json:
        print(json.dumps({"name": name, "ok": not failed,
                          "invariants": [r.to_dict() for r in results]}, indent=2))
    else:
        for r in results:
            mark = "[green]✔[/]" if r.ok else "[red]✘[/]"
            out.print(f"{mark} {esc(r.name):15} {esc(r.detail)}")
    if failed:
        if not as_json:
            err.print(f"vault: check failed: {esc(', '.join(r.name for r in failed))}")
        return CheckFailed.exit_code
    return 0


SUBAPPS = {  # command -> (module, kind): mounted only when needed, they cost every command
    "lockdown": ("netns_vault.cli.lockdown", "typer"),
    "docker": ("netns_vault.cli.docker", "typer"),
    "podman": ("netns_vault.cli.podman", "typer"),
    "demo": ("netns_vault.cli.demo", "register"),
    "doctor": ("netns_vault.cli.doctor", "register"),
    "allow": ("netns_vault.cli.allow", "register"),
    "deny": ("netns_vault.cli.allow", "register"),
    "desktop": ("netns_vault.cli.desktop", "typer"),
    "supervise": ("netns_vault.cli.supervise", "register"),
    "enable": ("netns_vault.cli.supervise", "register"),
    "disable": ("netns_vault.cli.supervise", "register"),
    "attach-unit": ("netns_vault.cli.supervise", "register"),
    "detach-unit": ("netns_vault.cli.supervise", "register"),
}
SUBAPP_HELP = {"lockdown": "The host-wide kill switch.",
               "docker": "Docker containers through a vault.",
               "desktop": "Menu entries that start a program in a vault.",
               "podman": "Podman containers in a vault."}
_mounted: set[str] = set()


def mount_subapps(args: list[str]) -> None:
    """Mount the sub-command modules `args` needs: the one it names, or all (for help)."""
    import importlib

    command = next((a for a in args if not a.startswith("-")), None)
    wanted = [command] if command in SUBAPPS else ([] if command in _CORE else list(SUBAPPS))
    for name in wanted:
        if name in _mounted or SUBAPPS[name][0] in _mounted:
            continue
        module, kind = SUBAPPS[name]
        try:
            sub = importlib.import_module(module)
        except ModuleNotFoundError as exc:
            if exc.name == module:
                continue
            raise
        if kind == "typer":
            app.add_typer(sub.app, name=name, help=SUBAPP_HELP[name])
        else:
            sub.register(app)
        _mounted.update((name, module))


_CORE = {"up", "down", "run", "ls", "status", "check", "reload"}
