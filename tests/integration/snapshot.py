"""What a vault could leave behind, captured before and after, to prove it left nothing."""

from __future__ import annotations

import os
import re

from netns_vault.names import VaultNames


def _listing(path: str) -> list[str] | None:
    try:
        return sorted(os.listdir(path))
    except FileNotFoundError:
        return None


def _save(world, cmd: str) -> str:
    out = world.host_run([cmd]).stdout
    return "\n".join(line for line in out.splitlines() if not line.startswith("#"))


def _wireguard_go_for(iface: str) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/cmdline", "rb") as f:
                    argv = f.read().split(b"\0")
            except OSError:
                continue
            if argv and argv[0].endswith(b"wireguard-go") and iface.encode() in argv:
                found.append(int(entry))
    return found


def host_snapshot(world, name: str) -> dict:
    """Everything in the world's host namespace, plus every global path that vault NAME owns."""
    names = VaultNames.of(name)
    strip_index = re.compile(r"^\d+: ")
    return {
        "links": sorted(strip_index.sub("", line.split("\\")[0])
                        for line in world.host_run(["ip", "-o", "link"]).stdout.splitlines()),
        "addresses": world.host_run(["ip", "-o", "addr"]).stdout,
        "routes": world.host_run(["ip", "route"]).stdout,
        "iptables-legacy": _save(world, "iptables-legacy-save"),
        "ip6tables-legacy": _save(world, "ip6tables-legacy-save"),
        "iptables-nft": _save(world, "iptables-nft-save"),
        "netns": os.path.lexists(names.netns_path),
        "etc_netns_dir": os.path.exists("/etc/netns"),
        "etc_netns": os.path.lexists(names.etc_dir),
        "state": [e for e in (_listing("/run/netns-vault") or []) if e.startswith(name + ".")],
        "wg_socket": os.path.lexists(f"/var/run/wireguard/{names.iface}.sock"),
        "wireguard_go": _wireguard_go_for(names.iface),
    }
