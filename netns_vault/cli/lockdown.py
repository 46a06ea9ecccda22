"""`vault lockdown ...`: the host-wide kill switch. Thin commands over netns_vault.lockdown.

Each command parses its options, makes one call into the core and prints the result. Errors are
netns_vault.errors types; the app's entry point maps them to exit codes. The hidden --netns and
--state-dir options point a command at a simulated host (the tests use them).
"""

from __future__ import annotations

import json
import time
from typing import Annotated

import typer
from rich.console import Console

from .. import lockdown as core

app = typer.Typer(no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False,
                  help="The host-wide kill switch: nothing leaves this machine but WireGuard.")
out = Console(highlight=False)

Netns = Annotated[str | None, typer.Option("--netns", hidden=True,
                                           help="Act in this network namespace (tests).")]
StateDir = Annotated[str, typer.Option("--state-dir", hidden=True,
                                       help="Lockdown state directory.")]
UnitDir = Annotated[str, typer.Option("--unit-dir", hidden=True)]
SysctlDir = Annotated[str, typer.Option("--sysctl-dir", hidden=True)]
SpecPath = Annotated[str, typer.Option("--spec-path", hidden=True)]
_PATHS = core.PersistPaths()


def _clock(ts: float) -> str:
    return time.strftime("%H:%M:%S", time.localtime(ts))


@app.command("apply")
def apply_cmd(
    config: Annotated[str, typer.Option("--config", "-c",
                                        help="wg-quick .conf of the tunnel (its name is the "
                                             "interface), or a name in /etc/wireguard.")],
    phys: Annotated[str | None, typer.Option(
        "--phys", help="Physical interface to the endpoints (default: the route to each).")]
    = None,
    ssh_port: Annotated[int, typer.Option(help="Inbound SSH port kept open; 0 for none.")] = 22,
    ssh_from: Annotated[list[str] | None, typer.Option(
        "--ssh-from", help="Only SSH from this CIDR (repeatable).")] = None,
    allow_lan: Annotated[list[str] | None, typer.Option(
        "--allow-lan", help="Allow traffic to and from this private CIDR, DNS excepted "
                            "(repeatable).")]
    = None,
    force_public_lan: Annotated[bool, typer.Option(
        "--force-public-lan", help="Let --allow-lan take a public range (reopens TunnelCrack "
                                   "LocalNet for it).")] = False,
    allow_dhcp: Annotated[bool, typer.Option(
        "--allow-dhcp/--no-allow-dhcp", help="DHCP (UDP 68->67) on the physical interface.")]
    = True,
    confirm_within: Annotated[float | None, typer.Option(
        "--confirm-within", metavar="SECONDS",
        help="Put the earlier rules back unless `vault lockdown confirm` comes in time.")]
    = None,
    allow_forward_from: Annotated[list[str] | None, typer.Option(
        "--allow-forward-from", metavar="IF",
        help="Forward from IF into the tunnel only (repeatable).")] = None,
    firewall: Annotated[str, typer.Option(
        help="Firewall backend: auto (iptables where legacy xtables works, else nftables), "
             "iptables or nftables. A re-apply keeps the backend in force.")] = "auto",
    netns: Netns = None,
    state_dir: StateDir = core.DEFAULT_STATE_DIR,
) -> None:
    """Drop everything but the tunnel, its endpoints, SSH and the given exceptions."""
    req = core.ApplyRequest(
        config=config, phys=phys, ssh_port=ssh_port or None, ssh_from=tuple(ssh_from or ()),
        allow_lan=tuple(allow_lan or ()), allow_dhcp=allow_dhcp, confirm_within=confirm_within,
        forward_from=tuple(allow_forward_from or ()), force_public_lan=force_public_lan,
        firewall=firewall)
    result = core.apply(req, netns=netns, state_dir=state_dir)
    spec = result.spec
    out.print(f"[green]✔[/] lockdown {'re-applied' if result.reapplied else 'applied'}: "
              f"only {spec.tunnel} and WireGuard to "
              f"{', '.join(map(str, spec.endpoints))}")
    out.print(f"  {result.firewall} firewall"
              f"{' (auto)' if result.firewall_choice == 'auto' else ''}")
    if spec.ssh_port:
        out.print(f"  SSH on port {spec.ssh_port} from {', '.join(spec.ssh_from) or 'anywhere'}")
    for cidr in spec.allow_lan:
        out.print(f"  LAN {cidr} (no DNS)")
    for iface in spec.forward_from:
        out.print(f"  forwarding {iface} -> {spec.tunnel}")
    if result.conntrack_deleted:
        out.print(f"  {len(result.conntrack_deleted)} tracked connections outside the "
                  "lockdown were dropped")
    if result.confirm_deadline is not None:
        out.print(f"[yellow]![/] run `vault lockdown confirm` before "
                  f"{_clock(result.confirm_deadline)}, or the earlier rules come back")


@app.command()
def confirm(netns: Netns = None, state_dir: StateDir = core.DEFAULT_STATE_DIR) -> None:
    """Keep the lockdown applied with --confirm-within."""
    core.confirm(netns=netns, state_dir=state_dir)
    out.print("[green]✔[/] lockdown confirmed; it stays")


@app.command()
def revert(netns: Netns = None, state_dir: StateDir = core.DEFAULT_STATE_DIR) -> None:
    """Put back exactly the rules and IPv6 sysctls from before the lockdown."""
    core.revert(netns=netns, state_dir=state_dir)
    out.print("[green]✔[/] lockdown reverted: the earlier rules and sysctls are back")


@app.command()
def refresh(netns: Netns = None, state_dir: StateDir = core.DEFAULT_STATE_DIR) -> None:
    """Resolve the endpoints again (through the tunnel) and swap them in atomically."""
    result = core.refresh(netns=netns, state_dir=state_dir)
    if result.changed:
        out.print(f"[green]✔[/] endpoints now {', '.join(result.after)} "
                  f"(were {', '.join(result.before)})")
    else:
        out.print(f"endpoints unchanged: {', '.join(result.after)}")


def _print_report(report: core.Report, verbose: bool) -> None:
    if not report.applied:
        out.print("no lockdown is applied")
        return
    state = report.state or {}
    spec = state.get("spec", {})
    out.print(f"lockdown for [bold]{spec.get('tunnel')}[/] since "
              f"{_clock(state.get('applied_at', 0))}, {state.get('firewall')} firewall "
              f"(tunnel {'up' if report.tunnel_up else 'DOWN: everything is blocked'})")
    for item in report.items:
        mark = "[green]✔[/]" if item["ok"] else "[red]✘[/]"
        out.print(f"  {mark} {item['name']}: {item['detail']}")
    if verbose:
        for line in report.commands:
            out.print(f"    {line}")


@app.command()
def status(
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
    rules: Annotated[bool, typer.Option("--rules", help="Show the rules as the firewall "
                                                        "backend's commands.")] = False,
    netns: Netns = None,
    state_dir: StateDir = core.DEFAULT_STATE_DIR,
) -> None:
    """What is in force, and whether it matches the lockdown."""
    report = core.status(netns=netns, state_dir=state_dir)
    if as_json:
        print(json.dumps(report.to_dict(), indent=2))
    else:
        _print_report(report, rules)


@app.command()
def check(netns: Netns = None, state_dir: StateDir = core.DEFAULT_STATE_DIR) -> None:
    """Exit 0 if the lockdown is fully in force; else exit 1 naming each failing item."""
    report = core.check(netns=netns, state_dir=state_dir)
    out.print(f"[green]✔[/] lockdown in force ({len(report.items)} checks)")


@app.command()
def enable(
    netns: Netns = None,
    state_dir: StateDir = core.DEFAULT_STATE_DIR,
    unit_dir: UnitDir = _PATHS.unit_dir,
    sysctl_dir: SysctlDir = _PATHS.sysctl_dir,
    spec_path: SpecPath = _PATHS.spec_path,
) -> None:
    """Apply the lockdown in force at every boot, before any interface is up."""
    paths = core.PersistPaths(unit_dir=unit_dir, sysctl_dir=sysctl_dir, spec_path=spec_path)
    written = core.enable(netns=netns, state_dir=state_dir, paths=paths)
    out.print("[green]✔[/] the lockdown will be applied at boot (before network-pre.target)")
    for path in written:
        out.print(f"  {path}")


@app.command()
def disable(
    unit_dir: UnitDir = _PATHS.unit_dir,
    sysctl_dir: SysctlDir = _PATHS.sysctl_dir,
    spec_path: SpecPath = _PATHS.spec_path,
) -> None:
    """No lockdown at boot any more. The lockdown in force stays until `revert`."""
    paths = core.PersistPaths(unit_dir=unit_dir, sysctl_dir=sysctl_dir, spec_path=spec_path)
    removed = core.disable(paths)
    out.print("[green]✔[/] the lockdown is no longer applied at boot"
              if removed else "the lockdown was not enabled; nothing to do")
