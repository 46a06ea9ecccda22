"""Forget the tracked connections the lockdown does not allow, so none lives on as ESTABLISHED.

Runs in the target namespace (pyroute2 conntrack = netlink of the calling process). Which entries
stay is decided by rules.KeepPolicy (pure); this module only lists and deletes.
"""

from __future__ import annotations

import errno
import os
import socket
from typing import Any

from ..errors import SystemFailure
from ..logs import get_logger
from .rules import KeepPolicy

log = get_logger(__name__)

CT_COUNT = "/proc/sys/net/netfilter/nf_conntrack_count"
_PROTO_NAMES = {socket.IPPROTO_TCP: "tcp", socket.IPPROTO_UDP: "udp", socket.IPPROTO_ICMP: "icmp"}


def tunnel_addresses(ifname: str) -> list[str]:
    """The IPv4 addresses on `ifname` here, or [] if it does not exist (tunnel down)."""
    from pyroute2 import IPRoute

    with IPRoute() as ipr:
        idx = ipr.link_lookup(ifname=ifname)
        if not idx:
            return []
        return [a.get_attr("IFA_ADDRESS") for a in ipr.get_addr(index=idx[0],
                                                                 family=socket.AF_INET)]


def _describe(proto: int, t) -> str:
    name = _PROTO_NAMES.get(proto, str(proto))
    ports = f" --sport {t.sport} --dport {t.dport}" if t.sport is not None else ""
    return f"conntrack -D -p {name} -s {t.saddr} -d {t.daddr}{ports}"


def flush_disallowed(policy_data: dict[str, Any], tunnel: str) -> list[str]:
    """Delete every IPv4 conntrack entry `policy` does not keep; returns what was deleted."""
    if not os.path.exists(CT_COUNT):
        return []  # conntrack is not loaded in this kernel: nothing is tracked
    from pyroute2 import Conntrack
    from pyroute2.netlink.exceptions import NetlinkError

    policy = KeepPolicy.from_dict(policy_data)
    policy = KeepPolicy.from_dict({**policy.to_dict(), "tunnel_addresses": [
        *policy.tunnel_addresses, *tunnel_addresses(tunnel)]})
    deleted = []
    try:
        with Conntrack() as ct:
            entries = list(ct.dump_entries())
            for e in entries:
                o, r = e.tuple_orig, e.tuple_reply
                proto = o.proto
                if policy.keeps(proto, (o.saddr, o.daddr, o.sport, o.dport),
                                (r.saddr, r.daddr, r.sport, r.dport)):
                    continue
                line = _describe(proto, o)
                try:
                    ct.delete(e)
                except NetlinkError as exc:
                    if exc.code != errno.ENOENT:  # ENOENT: it expired meanwhile
                        raise
                log.debug("%s", line)
                deleted.append(line)
    except NetlinkError as exc:
        raise SystemFailure(f"deleting conntrack entries: {exc}") from exc
    return deleted
