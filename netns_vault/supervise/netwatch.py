"""The host's network, as the supervisor sees it: netlink events, not polling.

A rtnetlink socket subscribed to link, address and route changes (IPv4 and IPv6) wakes the
supervisor's select the moment something changes. Each wake-up recomputes a signature of what
WireGuard's path depends on (default routes, global addresses, the state of the links they use),
leaving out the vaults' own tunnels (`vw-*`, which appear in the host's namespace for a moment
each time a tunnel is created). Any difference marks the network as changed; the supervisor acts
once the events have been quiet for `settle` seconds, so a flap (down, up, routes put back) is
one prompt handshake, not a burst. A 1 s poll of /proc/net/route would miss a sub-second flap
(the routes are the same before and after) and every IPv6 and address-only change.
"""

from __future__ import annotations

import contextlib
import socket
from typing import Any

# rtnetlink multicast groups (linux/rtnetlink.h)
RTMGRP_LINK = 0x1
RTMGRP_IPV4_IFADDR = 0x10
RTMGRP_IPV4_ROUTE = 0x40
RTMGRP_IPV6_IFADDR = 0x100
RTMGRP_IPV6_ROUTE = 0x400
GROUPS = (RTMGRP_LINK | RTMGRP_IPV4_IFADDR | RTMGRP_IPV4_ROUTE | RTMGRP_IPV6_IFADDR
          | RTMGRP_IPV6_ROUTE)
IFF_UP = 0x1
IFF_LOWER_UP = 0x10000
MAIN_TABLE = 254
TUNNEL_PREFIX = "vw-"


def signature() -> tuple:
    """Default routes, global addresses and the up/carrier state of the links carrying them, in
    this process's namespace, without the vaults' tunnels."""
    from pyroute2 import IPRoute

    with IPRoute() as ipr:
        links = {int(link["index"]): (str(link.get_attr("IFLA_IFNAME")), int(link["flags"]))
                 for link in ipr.get_links()}

        def ours(index: Any) -> bool:
            return index is None or links.get(int(index), ("", 0))[0].startswith(TUNNEL_PREFIX)

        routes = []
        for fam in (socket.AF_INET, socket.AF_INET6):
            for r in ipr.get_routes(family=fam, table=MAIN_TABLE):
                if r["dst_len"] != 0 or r["type"] != 1:  # unicast default routes only
                    continue
                oif = r.get_attr("RTA_OIF")
                if ours(oif):
                    continue
                routes.append((fam, str(r.get_attr("RTA_GATEWAY")), links[int(oif)][0],
                               r.get_attr("RTA_PRIORITY") or 0))
        addrs = sorted((links.get(int(a["index"]), ("?", 0))[0], str(a.get_attr("IFA_ADDRESS")),
                        int(a["prefixlen"]))
                       for a in ipr.get_addr() if a["scope"] == 0 and not ours(a["index"]))
        used = {r[2] for r in routes} | {a[0] for a in addrs}
        states = sorted((n, bool(f & IFF_UP), bool(f & IFF_LOWER_UP))
                        for n, f in links.values() if n in used)
    return (tuple(sorted(routes)), tuple(addrs), tuple(states))


class HostNetWatch:
    """`fileno()` for select; `on_readable(now)` drains the events; `due(now)` is true once
    after a change, when the events have been quiet for `settle` seconds."""

    def __init__(self, settle: float = 0.3):
        self.settle = settle
        self.sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_NONBLOCK
                                  | socket.SOCK_CLOEXEC, socket.NETLINK_ROUTE)
        try:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
            self.sock.bind((0, GROUPS))
        except OSError:
            self.sock.close()
            raise
        self.sig = signature()
        self.changed_at: float | None = None

    def fileno(self) -> int:
        return self.sock.fileno()

    def on_readable(self, now: float) -> None:
        overflow = False
        while True:
            try:
                if not self.sock.recv(1 << 16):
                    break
            except BlockingIOError:
                break
            except OSError:  # ENOBUFS: events were lost; the signature below still tells
                overflow = True
                break
        sig = signature()
        if sig != self.sig or overflow:
            self.sig = sig
            self.changed_at = now
        elif self.changed_at is not None:
            self.changed_at = now  # still settling: wait for quiet

    def due(self, now: float) -> bool:
        if self.changed_at is None or now - self.changed_at < self.settle:
            return False
        self.changed_at = None
        return True

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.close()
