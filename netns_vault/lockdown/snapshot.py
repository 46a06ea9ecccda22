"""What was in force before `apply`: what the firewall backend would change (iptables: every
table of each family as iptables-legacy-save prints it; nftables: our own table only, usually
absent), the IPv6 sysctls and the ARP sysctls,
taken and restored in the target namespace (in its child).

Restore is exact: the backend puts back what it saved (iptables-legacy-restore --counters
replaces each saved table with exactly what was saved, chain counters included). Order on
restore: IPv6 sysctls, then the rules (IPv6 before IPv4), then the ARP sysctls; should a step
fail, what is left in place is the stricter state, never a hole.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .. import ipv6
from ..firewall.backend import get_backend
from . import sysctl


@dataclass
class Snapshot:
    firewall: dict[str, Any]  # the backend's save(), which names the backend
    sysctls: dict[str, str] = field(default_factory=dict)  # ipv6.read_all()
    arp: dict[str, str] = field(default_factory=dict)  # sysctl.read_arp()

    def to_dict(self) -> dict[str, Any]:
        return {"firewall": dict(self.firewall), "sysctls": dict(self.sysctls),
                "arp": dict(self.arp)}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Snapshot:
        firewall = d.get("firewall")
        if firewall is None:  # written before backends: python-iptables' save, at the top
            firewall = {"backend": "iptables", "v4": d["v4"], "v6": d.get("v6")}
        return cls(firewall=dict(firewall), sysctls=dict(d.get("sysctls") or {}),
                   arp=dict(d.get("arp") or {}))


def take(backend: str | None = None) -> dict[str, Any]:
    """The current namespace's rules (as `backend` sees them) and sysctls (Snapshot.to_dict())."""
    return Snapshot(firewall=get_backend(backend).save(), sysctls=ipv6.read_all(),
                    arp=sysctl.read_arp()).to_dict()


def restore(data: dict[str, Any]) -> None:
    """Put back a snapshot in the current namespace."""
    snap = Snapshot.from_dict(data)
    ipv6.restore(snap.sysctls)
    get_backend(snap.firewall.get("backend")).restore(snap.firewall)
    sysctl.restore_arp(snap.arp)
