"""Work done inside a vault's namespace. These run in a forked child (nsexec.run_in_netns):
keep them JSON in, JSON out."""

from __future__ import annotations

import logging
import socket
from typing import Any

log = logging.getLogger(__name__)

IPV6_SYSCTLS = ("all", "default", "lo")


def _disable_ipv6_path(conf: str) -> str:
    return f"/proc/sys/net/ipv6/conf/{conf}/disable_ipv6"


def prepare(rulesets: list[dict]) -> None:
    """Before the tunnel exists: IPv6 off, lo up, the firewall walls up."""
    from pyroute2 import IPRoute

    from ..firewall.iptables import apply_rulesets

    for conf in IPV6_SYSCTLS:
        log.debug("sysctl -w net.ipv6.conf.%s.disable_ipv6=1", conf)
        try:
            with open(_disable_ipv6_path(conf), "w") as f:
                f.write("1")
        except FileNotFoundError:
            pass  # kernel without IPv6: nothing to disable; ip6tables still walls it below
    with IPRoute() as ipr:
        (lo,) = ipr.link_lookup(ifname="lo")
        ipr.link("set", index=lo, state="up")
    apply_rulesets(rulesets)


def inspect() -> dict[str, Any]:
    """Everything `check` needs to see from inside the vault."""
    from ..firewall.iptables import read_ruleset

    out = _inspect_links()
    out["sysctl"] = {}
    for conf in IPV6_SYSCTLS:
        try:
            with open(_disable_ipv6_path(conf)) as f:
                out["sysctl"][conf] = f.read().strip()
        except FileNotFoundError:
            out["sysctl"][conf] = "absent"
    out["iptables"] = read_ruleset(4)
    out["ip6tables"] = read_ruleset(6)
    return out


def _inspect_links() -> dict[str, Any]:
    from pyroute2 import IPRoute

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
    from pyroute2 import IPRoute

    deleted = []
    with IPRoute() as ipr:
        for link in ipr.get_links():
            name = link.get_attr("IFLA_IFNAME")
            if name in keep:
                continue
            try:
                ipr.link("del", index=link["index"])
                deleted.append(name)
            except Exception as exc:  # e.g. already gone with its wireguard-go
                log.debug("deleting %s: %s", name, exc)
    return deleted


def nudge(addr: str) -> None:
    """Send one datagram into the tunnel: WireGuard only handshakes when it has data to send."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.sendto(b"netns-vault handshake nudge", (addr, 9))  # the discard port
