"""Work done inside a vault's namespace. These run in a forked child (nsexec.run_in_netns):
keep them JSON in, JSON out."""

from __future__ import annotations

import socket
from typing import Any

from .. import ipv6
from ..logs import get_logger

log = get_logger(__name__)

SIOCGIFFLAGS = 0x8913
SIOCSIFFLAGS = 0x8914
IFF_UP = 0x1


def prepare(ifname: str, firewall: str = "auto") -> str:
    """Before the tunnel exists: IPv6 off, lo up, the firewall walls up. Returns the firewall
    backend in use (the choice resolved, for `auto`).

    No pyroute2 here: `up` forks this child before it imports pyroute2 itself (the two imports,
    python-iptables here and pyroute2 there, run on two cores at once)."""
    from ..firewall.walls import apply_vault

    ipv6.disable()  # a kernel without IPv6: nothing to disable; the firewall walls it anyway
    link_up("lo")
    return apply_vault(ifname, firewall)


def link_up(ifname: str) -> None:
    """`ip link set IFNAME up` in the current netns through the SIOCSIFFLAGS ioctl (struct ifreq:
    the name, then the flags)."""
    import fcntl
    import struct

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        req = struct.pack("16sH22x", ifname.encode(), 0)
        flags = struct.unpack("16sH22x", fcntl.ioctl(s, SIOCGIFFLAGS, req))[1]
        if not flags & IFF_UP:
            fcntl.ioctl(s, SIOCSIFFLAGS, struct.pack("16sH22x", ifname.encode(), flags | IFF_UP))


def inspect(ifname: str, firewall: str | None = None) -> dict[str, Any]:
    """Everything `check` needs to see from inside the vault."""
    from ..firewall.walls import inspect_vault

    out = _inspect_links()
    out["sysctl"] = ipv6.read_keys()
    out["firewall"] = inspect_vault(ifname, firewall)
    return out


def _inspect_links() -> dict[str, Any]:
    from ..netlink import IPRoute

    out: dict[str, Any] = {"links": [], "addresses": [], "routes": []}
    with IPRoute() as ipr:
        names = {}
        for link in ipr.get_links():
            name = link.get_attr("IFLA_IFNAME")
            names[link["index"]] = name
            linkinfo = link.get_attr("IFLA_LINKINFO")
            kind = linkinfo.get_attr("IFLA_INFO_KIND") if linkinfo else None
            out["links"].append({"name": name, "kind": kind, "mtu": link.get_attr("IFLA_MTU"),
                                 "up": bool(link["flags"] & 1)})
        for addr in ipr.get_addr():
            out["addresses"].append({"dev": names.get(addr["index"]), "family": addr["family"],
                                     "cidr": f"{addr.get_attr('IFA_ADDRESS')}/{addr['prefixlen']}"})
        for route in ipr.get_routes(family=socket.AF_INET, table=254):
            out["routes"].append({"dst": route.get_attr("RTA_DST") or "default",
                                  "dst_len": route["dst_len"],
                                  "dev": names.get(route.get_attr("RTA_OIF")),
                                  "gateway": route.get_attr("RTA_GATEWAY")})
    return out


def delete_links(keep: tuple[str, ...] = ("lo",)) -> list[str]:
    """Delete every interface but `keep`; returns the names deleted."""
    from ..netlink import RouteSocket

    doomed = [(index, name) for index, name in socket.if_nameindex() if name not in keep]
    if not doomed:
        return []  # nothing to delete: no netlink socket, no pyroute2 import
    deleted = []
    with RouteSocket() as rtnl:
        for index, name in doomed:
            try:
                rtnl.delete_link(index)
                deleted.append(name)
            except Exception as exc:  # e.g. already gone with its wireguard-go
                log.debug("deleting %s: %s", name, exc)
    return deleted


def nudge(addr: str) -> None:
    """Send one datagram into the tunnel: WireGuard only handshakes when it has data to send."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.sendto(b"netns-vault handshake nudge", (addr, 9))  # the discard port
