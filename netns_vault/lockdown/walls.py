"""The lockdown's walls in the current namespace: what `vault lockdown apply` does once it is in
the target namespace, what `check` reads back, and what the Docker gateway puts up on its uplink
(the gateway calls these too; it has no copy of its own).

Runs in the target namespace (a forked child, or the gateway's own process).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .. import ipv6
from ..firewall.backend import StepHook, get_backend
from ..tunnel.links import link_exists
from . import conntrack, sysctl, wgmark
from .rules import TABLE_SHAPES, KeepPolicy, LockdownSpec, build_tables

# The steps after the firewall's commits, in order: IPv6 off, ARP strict, the tunnel's mark,
# stale conntrack entries gone. The apply step names are derived from this list (core.py).
AFTER_FIREWALL = ("sysctl", "arp", "fwmark", "conntrack")


def steps(backend: str) -> tuple[str, ...]:
    """The names of what put_up does, in order, with `backend`."""
    return (*get_backend(backend).commit_steps(list(TABLE_SHAPES)), *AFTER_FIREWALL)


def put_up(spec: LockdownSpec, backend: str, *, arp_ifaces: list[str] | None,
           set_mark: int | None = None, best_effort_ipv6: bool = False,
           on_step: StepHook | None = None) -> dict[str, Any]:
    """The walls, IPv6 off, ARP strict on `arp_ifaces` (None: leave ARP alone), the tunnel's
    mark, stale conntrack entries gone. `on_step(name)` runs after each step."""
    hook: Callable[[str], object] = on_step or (lambda _step: None)
    commands = get_backend(backend).apply(build_tables(spec), after=hook)
    commands += ipv6.disable(best_effort=best_effort_ipv6)
    hook("sysctl")
    if arp_ifaces is not None:
        commands += sysctl.harden_arp(arp_ifaces)
    hook("arp")
    if set_mark is not None and link_exists(spec.tunnel):
        commands.append(wgmark.write(spec.tunnel, set_mark))
    hook("fwmark")
    deleted = conntrack.flush_disallowed(KeepPolicy.of(spec).to_dict(), spec.tunnel)
    hook("conntrack")
    return {"commands": commands, "conntrack_deleted": deleted}


def inspect_tables(spec: LockdownSpec, backend: str) -> list[dict[str, Any]]:
    """The firewall's check items: the live rules against the spec's tables, exactly."""
    return [i.to_dict() for i in get_backend(backend).inspect(build_tables(spec))]
