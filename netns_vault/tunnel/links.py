"""Netlink helpers both drivers share: deleting a tunnel link, and readable netlink errors."""

from __future__ import annotations

import os

from ..errors import SystemFailure
from ..logs import get_logger

log = get_logger(__name__)

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
    import socket

    from ..netlink import RouteSocket, netlink_error

    try:
        index = socket.if_nametoindex(ifname)
    except OSError:  # the common case (wireguard-go took its TUN with it)
        return False
    NetlinkError = netlink_error()  # noqa: N806
    try:
        with RouteSocket() as rtnl:
            rtnl.delete_link(index)
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
    import socket

    from ..netlink import RouteSocket

    try:
        idx = socket.if_nametoindex(ifname)
    except OSError:
        raise SystemFailure(f"tunnel interface {ifname} vanished") from None
    with RouteSocket() as rtnl:
        log.debug("ip link set %s mtu %d", ifname, mtu)
        rtnl.set_link(idx, mtu=mtu)
        for cidr in addresses:
            addr, prefix = cidr.split("/")
            log.debug("ip addr add %s dev %s", cidr, ifname)
            rtnl.add_address(idx, addr, int(prefix))
        log.debug("ip link set %s up", ifname)
        rtnl.set_link(idx, up=True)
        log.debug("ip route replace default dev %s", ifname)
        rtnl.replace_default_route(idx)
