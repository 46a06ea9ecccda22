"""The vault's walls, in the vault's namespace (run in a child forked into it): put up with
a firewall backend, and read back as one check item per table."""

from __future__ import annotations

from typing import Any

from ..logs import get_logger
from .backend import get_backend, select_backend
from .rules import summarize, vault_tables

log = get_logger(__name__)


def apply_vault(tunnel_iface: str, choice: str = "auto") -> str:
    """Replace the namespace's tables by the vault's (each in one commit, or one transaction)
    with the backend `choice` (auto: the first that works here); returns the backend's name."""
    backend = select_backend(choice)
    backend.apply(list(vault_tables(tunnel_iface)))
    log.info("firewall: %s%s", backend.name, " (auto)" if choice == "auto" else "")
    return backend.name


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
        if b.name != "iptables":  # one table for both families: one item
            items = [i.to_dict() for i in b.inspect(list(vault_tables(tunnel_iface)))]
            return [summarize(items, b.name, f"one {b.name} table: policies DROP; accepts "
                              f"only lo and {tunnel_iface}; IPv6 dropped")]
        out.append(summarize([i.to_dict() for i in b.inspect([table])], label, ok_detail))
    return out
