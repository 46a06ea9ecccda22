"""Netlink helpers both drivers share: deleting a tunnel link, and readable netlink errors."""

from __future__ import annotations

import logging
import os

from ..errors import SystemFailure

log = logging.getLogger(__name__)

ENODEV = 19


def netlink_text(exc: BaseException) -> str:
    code = getattr(exc, "code", None)
    if isinstance(code, int) and code > 0:
        return f"{os.strerror(code)} (errno {code})"
    return str(exc) or exc.__class__.__name__


def delete_link(ifname: str) -> bool:
    """Delete link `ifname` in the current netns if it exists (run it in a netns helper child).

    Returns whether there was one to delete; a link that vanishes meanwhile (wireguard-go
    exiting) counts as gone."""
    if not link_exists(ifname):  # the common case (wireguard-go took its TUN with it): no pyroute2
        return False
    from ..netlink import IPRoute, netlink_error

    NetlinkError = netlink_error()  # noqa: N806
    with IPRoute() as ipr:
        idx = ipr.link_lookup(ifname=ifname)
        if not idx:
            return False
        try:
            ipr.link("del", index=idx[0])
        except NetlinkError as exc:
            if getattr(exc, "code", None) == ENODEV:
                return False
            raise SystemFailure(f"cannot delete link {ifname}: {netlink_text(exc)}") from None
    return True


def link_exists(ifname: str) -> bool:
    """Whether the current netns has a link called `ifname` (SIOCGIFINDEX: no netlink socket,
    no pyroute2 import)."""
    import socket

    try:
        socket.if_nametoindex(ifname)
    except OSError:
        return False
    return True


def configure_tunnel_link(ifname: str, addresses: list[str], mtu: int) -> None:
    """In the current netns: MTU, addresses, up, and the default route into the tunnel (no
    gateway: scope link; `replace`, so an existing default route is taken over, not kept)."""
    from ..netlink import IPRoute

    with IPRoute() as ipr:
        found = ipr.link_lookup(ifname=ifname)
        if not found:
            raise SystemFailure(f"tunnel interface {ifname} vanished")
        idx = found[0]
        log.debug("ip link set %s mtu %d", ifname, mtu)
        ipr.link("set", index=idx, mtu=mtu)
        for cidr in addresses:
            addr, prefix = cidr.split("/")
            log.debug("ip addr add %s dev %s", cidr, ifname)
            ipr.addr("add", index=idx, address=addr, prefixlen=int(prefix))
        log.debug("ip link set %s up", ifname)
        ipr.link("set", index=idx, state="up")
        log.debug("ip route replace default dev %s", ifname)
        ipr.route("replace", dst="0.0.0.0/0", oif=idx, scope=253)
