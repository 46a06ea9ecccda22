"""Where things live on the system: the one home of every fixed path and prefix.

Standard library only, and nothing else imported: `vault run` (the launcher's hot path) reads
these too. Read them at call time (`paths.NETNS_DIR`, not `from .paths import NETNS_DIR`), so a
test can point them elsewhere with monkeypatch.
"""

from __future__ import annotations

NETNS_DIR = "/run/netns"  # named network namespaces (as iproute2 and pyroute2 keep them)
ETC_NETNS_DIR = "/etc/netns"  # per-namespace /etc overlays (resolv.conf, nsswitch.conf)
STATE_DIR = "/run/netns-vault"  # vault state, locks and wireguard-go logs
TUN_DEVICE = "/dev/net/tun"  # what wireguard-go opens

NETNS_PREFIX = "vault-"  # namespace (and holder container) vault-NAME
IFACE_PREFIX = "vw-"  # WireGuard interface vw-NAME

DEFAULT_MTU = 1420  # wg-quick's default for a tunnel over IPv4 or IPv6


def netns_path(netns: str) -> str:
    """/run/netns/NETNS for a name; a path (e.g. /proc/self/fd/N) is returned as it is."""
    return netns if netns.startswith("/") else f"{NETNS_DIR}/{netns}"


def vault_netns(name: str) -> str:
    return NETNS_PREFIX + name


def vault_names_up() -> list[str]:
    """Vault names with a namespace under /run/netns, sorted (no state read: stdlib only)."""
    import os

    try:
        entries = os.listdir(NETNS_DIR)
    except FileNotFoundError:
        return []
    return sorted(e[len(NETNS_PREFIX):] for e in entries if e.startswith(NETNS_PREFIX))
