"""The vault's walls, in the vault's namespace (run in a child forked into it): put up with
a firewall backend, and read back as one check item per table."""

from __future__ import annotations

from typing import Any

from .backend import get_backend
from .rules import summarize, vault_tables


def apply_vault(tunnel_iface: str, backend: str | None = None) -> list[str]:
    """Replace the namespace's tables by the vault's (each in one commit); the commands."""
    return get_backend(backend).apply(list(vault_tables(tunnel_iface)))


def inspect_vault(tunnel_iface: str, backend: str | None = None) -> list[dict[str, Any]]:
    """One check item per table ("iptables", "ip6tables"): ok when the live table is exactly
    the vault's, else naming what differs."""
    b = get_backend(backend)
    out = []
    for table in vault_tables(tunnel_iface):
        rules = any(table.chains.values())
        ok_detail = "policies DROP; " + (f"accepts only lo and {tunnel_iface}" if rules
                                         else "no rules")
        label = table.cmd
        out.append(summarize([i.to_dict() for i in b.inspect([table])], label, ok_detail))
    return out
