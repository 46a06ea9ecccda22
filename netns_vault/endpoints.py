"""Peer endpoints to addresses: the one home for it (the vault, the lockdown, the Docker gateway).

`resolve_peers(cfg)`: one address per peer, in this namespace, now (the vault resolves on the host:
the vault itself has no DNS but the tunnel). `resolve_all(hosts, netns)`: every IPv4 address of
every endpoint (the lockdown's wall must admit each), and `route_ifaces`: the interface to each.
Both are asked in the target namespace. For a named namespace the lookup sees the files of
/etc/netns/NAME/ in place of /etc/ (resolv.conf, hosts, ...), as `ip netns exec` would, in a
private mount namespace of the helper child only.
"""

from __future__ import annotations

import ctypes
import os
import socket
from typing import Any

from .config import WgConfig
from .errors import SystemFailure, UsageError
from .logs import get_logger
from .nsexec import CLONE_NEWNS, in_target, libc, unshare

log = get_logger(__name__)

ETC_NETNS = "/etc/netns"
WG_QUICK_FWMARK = 51820  # what wg-quick marks its own packets with when it owns the default route
MS_BIND = 4096
MS_REC = 16384
MS_SLAVE = 1 << 19


def _mount(src: str | None, target: str, flags: int) -> None:
    rc = libc().mount(src.encode() if src else None, target.encode(), None, flags, None)
    if rc != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"mount {src} {target}: {os.strerror(err)}")


def _use_etc_netns(etc_dir: str) -> None:
    """In this (helper) process only: bind each file of etc_dir over its /etc twin."""
    unshare(CLONE_NEWNS)
    _mount(None, "/", MS_REC | MS_SLAVE)
    for name in sorted(os.listdir(etc_dir)):
        src = os.path.join(etc_dir, name)
        dst = os.path.join("/etc", name)
        if os.path.isfile(src) and os.path.exists(dst):
            _mount(src, dst, MS_BIND)


def _lookup(hosts: list[list[Any]], etc_dir: str | None) -> list[list[str]]:
    if etc_dir:
        _use_etc_netns(etc_dir)
    out = []
    for host, port in hosts:
        ips = set(lookup(host, port, socket.AF_INET))
        out.append(sorted(ips, key=socket.inet_aton))
    return out


def lookup(host: str, port: int, family: int = socket.AF_UNSPEC) -> list[str]:
    """The addresses of host (IPv4 first, in the resolver's order), or SystemFailure."""
    try:
        infos = socket.getaddrinfo(host, port, family, socket.SOCK_DGRAM)
    except socket.gaierror as exc:
        raise SystemFailure(f"endpoint {host}:{port} does not resolve ({exc.strerror}); "
                            "nothing was changed") from None
    infos.sort(key=lambda info: info[0] != socket.AF_INET)  # IPv4 first (a stable sort)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


def resolve_peers(cfg: WgConfig) -> list[tuple[str, int] | None]:
    """Each peer's endpoint as (address, port), here and now; None for a peer without one.
    A name gives its first address, IPv4 preferred."""
    out: list[tuple[str, int] | None] = []
    for peer in cfg.peers:
        ep = peer.endpoint
        if ep is None:
            out.append(None)
        elif ep.is_literal:
            out.append((ep.host, ep.port))
        else:
            out.append((lookup(ep.host, ep.port)[0], ep.port))
    return out


def _etc_dir_for(netns: str | None) -> str | None:
    if netns is None or netns.startswith("/"):
        return None
    path = os.path.join(ETC_NETNS, netns)
    return path if os.path.isdir(path) else None


def resolve_all(hosts: list[tuple[str, int]], netns: str | None) -> list[tuple[str, int]]:
    """Every IPv4 address of every (host, port), literal or name: hosts in their order, the
    addresses of one name in numeric order."""
    names: list[tuple[str, int]] = [(h, p) for h, p in hosts if not _is_ipv4(h)]
    if any(":" in h for h, _p in names):
        bad = next(h for h, _p in names if ":" in h)
        raise UsageError(f"endpoint {bad} is IPv6, but lockdown turns IPv6 off; "
                         "use an IPv4 endpoint")
    answers: list[list[str]] = (in_target(netns, _lookup, [list(n) for n in names],
                                          _etc_dir_for(netns)) if names else [])
    by_name = {(h, p): ips for (h, p), ips in zip(names, answers, strict=True)}
    out: list[tuple[str, int]] = []
    for host, port in hosts:
        for ip in ([host] if _is_ipv4(host) else by_name[(host, port)]):
            if (ip, port) not in out:
                out.append((ip, port))
        log.debug("endpoint %s:%d -> %s", host, port, ", ".join(
            ip for ip, p in out if p == port))
    return out


def _is_ipv4(host: str) -> bool:
    try:
        socket.inet_pton(socket.AF_INET, host)
    except OSError:
        return False
    return True


def _route_ifaces(ips: list[str], tunnel: str, fwmark: int | None) -> dict[str, str]:
    from pyroute2 import IPRoute
    from pyroute2.netlink.exceptions import NetlinkError

    out = {}
    with IPRoute() as ipr:
        def oif_name(**kw: Any) -> str:
            msg = ipr.route("get", **kw)[0]
            link = ipr.get_links(msg.get_attr("RTA_OIF"))[0]
            return link.get_attr("IFLA_IFNAME")

        for ip in ips:
            try:
                name = oif_name(dst=ip)
                if name == tunnel:  # wg-quick policy routing: ask as WireGuard's own packets
                    name = oif_name(dst=ip, mark=fwmark or WG_QUICK_FWMARK)
            except NetlinkError as exc:
                raise UsageError(f"no route to endpoint {ip} ({exc.args[-1]}); "
                                 "give the physical interface with --phys") from None
            log.debug("ip route get %s -> dev %s", ip, name)
            out[ip] = name
    return out


def route_ifaces(ips: list[str], tunnel: str, fwmark: int | None,
                 netns: str | None) -> dict[str, str]:
    """{ip: interface the route to ip leaves by}, as `ip route get` says in `netns`."""
    return in_target(netns, _route_ifaces, ips, tunnel, fwmark)
