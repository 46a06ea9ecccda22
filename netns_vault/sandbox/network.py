"""The world's links, addresses, routes and the isp's firewall (see layout.py for the map).

Veths are born in a world namespace with the peer put straight into another one, and nothing is
ever added in the root namespace, so no packet can leave the machine.
"""

from __future__ import annotations

from ..errors import SystemFailure
from ..nsexec import run_in_netns
from .layout import (
    DNS_ADDR,
    ENDPOINT_ADDR,
    GATEWAY,
    HOST_ADDR,
    HOST_LAN_IFACE,
    HOST_UPLINK_IFACE,
    ISP_UPLINK_IFACE,
    LAN_HOST_ADDR,
    LAN_IFACE,
    LAN_PEER_ADDR,
    LAN_PREFIXLEN,
    TUNNEL_NET,
    UPLINK_PREFIXLEN,
    WEB_ADDR,
)
from .namespaces import ip, ns_run, write_proc_sys


def wire(isp: str, host: str, lan: str, ipv6: bool = False) -> None:
    """Connect the three (empty) namespaces as the world's map says."""
    _bring_up_lo(isp, host, lan, ipv6)
    run_in_netns(isp, write_proc_sys, {"net.ipv4.ip_forward": "1"})
    ip(isp, "link", "add", ISP_UPLINK_IFACE, "type", "veth",
       "peer", "name", HOST_UPLINK_IFACE, "netns", host)
    ip(lan, "link", "add", LAN_IFACE, "type", "veth",
       "peer", "name", HOST_LAN_IFACE, "netns", host)
    for iface in (HOST_UPLINK_IFACE, HOST_LAN_IFACE):
        ip(host, "link", "show", "dev", iface)  # raises if the peer did not land in host

    for addr in (f"{ENDPOINT_ADDR}/32", f"{DNS_ADDR}/32", f"{WEB_ADDR}/32"):
        ip(isp, "addr", "add", addr, "dev", "lo")
    _address(isp, ISP_UPLINK_IFACE, f"{GATEWAY}/{UPLINK_PREFIXLEN}")
    _address(host, HOST_UPLINK_IFACE, f"{HOST_ADDR}/{UPLINK_PREFIXLEN}")
    _address(host, HOST_LAN_IFACE, f"{LAN_HOST_ADDR}/{LAN_PREFIXLEN}")
    ip(host, "route", "add", "default", "via", GATEWAY, "dev", HOST_UPLINK_IFACE)
    _address(lan, LAN_IFACE, f"{LAN_PEER_ADDR}/{LAN_PREFIXLEN}")
    ip(lan, "route", "add", "default", "via", LAN_HOST_ADDR, "dev", LAN_IFACE)
    _isp_firewall(isp)


def _bring_up_lo(isp: str, host: str, lan: str, ipv6: bool) -> None:
    sysctls: dict[str, str] = {}
    if not ipv6:  # no link-local chatter (DAD, RS, MLD) in captures
        sysctls = {"net.ipv6.conf.all.disable_ipv6": "1",
                   "net.ipv6.conf.default.disable_ipv6": "1"}
    for ns in (isp, host, lan):
        if sysctls:
            run_in_netns(ns, write_proc_sys, sysctls)
        ip(ns, "link", "set", "lo", "up")


def _address(ns: str, iface: str, cidr: str) -> None:
    ip(ns, "addr", "add", cidr, "dev", iface)
    ip(ns, "link", "set", iface, "up")


def _isp_firewall(isp: str) -> None:
    # The VPN provider's exit does not route its clients back into the customer's own access
    # network (in this small world the ISP and the VPN provider share a box): so "the host's
    # gateway and addresses are unreachable from a vault" is a property tests can check.
    for chain, dst in (("INPUT", f"{GATEWAY}/32"),
                       ("FORWARD", f"{GATEWAY}/{UPLINK_PREFIXLEN}"),
                       ("FORWARD", f"{LAN_HOST_ADDR}/{LAN_PREFIXLEN}")):
        res = ns_run(isp, ["iptables-legacy", "-w", "-A", chain, "-s", TUNNEL_NET, "-d", dst,
                           "-j", "DROP"])
        if res.returncode != 0:
            raise SystemFailure(f"isp firewall: {res.stderr.strip()}")
