"""What was in force before `apply`: iptables-legacy-save / ip6tables-legacy-save output, the
IPv6 sysctls and the ARP sysctls, taken and restored in the target namespace (in its child).

Restore is byte-for-byte: `iptables-legacy-restore --counters` replaces each saved table with
exactly what was saved (filter and raw alike), chain counters included. Order on restore: IPv6
sysctls, then IPv6 rules, then IPv4 rules, then the ARP sysctls; should a step fail, what is left
in place is the stricter state, never a hole.
"""

from __future__ import annotations

import base64
import logging
import shutil
import subprocess
from dataclasses import dataclass, field
from typing import Any

from ..errors import SystemFailure
from . import sysctl

log = logging.getLogger(__name__)

SAVE = {4: "iptables-legacy-save", 6: "ip6tables-legacy-save"}
CMD = {4: "iptables-legacy", 6: "ip6tables-legacy"}
# python-iptables instantiates every table of a family when it resolves a jump to a user chain,
# so the snapshot must cover them all: an instantiated empty table cannot be un-instantiated.
TABLES = ("filter", "nat", "mangle", "raw", "security")
RESTORE = {4: "iptables-legacy-restore", 6: "ip6tables-legacy-restore"}


@dataclass
class Snapshot:
    v4: bytes
    v6: bytes | None  # None: no ip6tables here (kernel without IPv6)
    sysctls: dict[str, str] = field(default_factory=dict)
    arp: dict[str, str] = field(default_factory=dict)  # sysctl.read_arp()

    def to_dict(self) -> dict[str, Any]:
        return {
            "v4": base64.b64encode(self.v4).decode(),
            "v6": None if self.v6 is None else base64.b64encode(self.v6).decode(),
            "sysctls": dict(self.sysctls),
            "arp": dict(self.arp),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Snapshot:
        return cls(
            v4=base64.b64decode(d["v4"]),
            v6=None if d.get("v6") is None else base64.b64decode(d["v6"]),
            sysctls=dict(d.get("sysctls") or {}),
            arp=dict(d.get("arp") or {}),
        )


def _tool(name: str) -> str:
    path = shutil.which(name) or shutil.which(name, path="/usr/sbin:/sbin")
    if path is None:
        raise SystemFailure(f"{name} not found (apt-get install iptables)")
    return path


def save(family: int) -> bytes:
    res = subprocess.run([_tool(SAVE[family])], capture_output=True, timeout=30)
    if res.returncode != 0:
        raise SystemFailure(f"{SAVE[family]}: {res.stderr.decode(errors='replace').strip()}")
    return res.stdout


def _instantiate(family: int) -> None:
    """Make every table of `family` exist here (listing one does), so that save shows it."""
    for table in TABLES:
        log.debug("%s -t %s -S >/dev/null  # instantiate the table", CMD[family], table)
        subprocess.run([_tool(CMD[family]), "-t", table, "-S"], capture_output=True, timeout=30,
                       check=False)  # a table the kernel lacks is simply not there


def take() -> dict[str, Any]:
    """The current namespace's rules and IPv6 sysctls (Snapshot.to_dict())."""
    families = (4, 6) if sysctl.ipv6_present() else (4,)
    for family in families:
        _instantiate(family)
    v6 = save(6) if 6 in families else None
    return Snapshot(v4=save(4), v6=v6, sysctls=sysctl.read_all(),
                    arp=sysctl.read_arp()).to_dict()


def _restore_rules(family: int, data: bytes) -> None:
    tool = _tool(RESTORE[family])
    log.debug("%s --counters < (the snapshot taken before apply, %d bytes)", RESTORE[family],
              len(data))
    res = subprocess.run([tool, "--counters"], input=data, capture_output=True, timeout=30)
    if res.returncode != 0:
        raise SystemFailure(f"{RESTORE[family]}: {res.stderr.decode(errors='replace').strip()}")


def restore(data: dict[str, Any]) -> None:
    """Put back a snapshot in the current namespace."""
    snap = Snapshot.from_dict(data)
    sysctl.restore(snap.sysctls)
    if snap.v6 is not None:
        _restore_rules(6, snap.v6)
    _restore_rules(4, snap.v4)
    sysctl.restore_arp(snap.arp)
