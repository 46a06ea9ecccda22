"""Netlink helpers both drivers share: deleting a tunnel link, and readable netlink errors."""

from __future__ import annotations

import os

from ..errors import SystemFailure

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
    from pyroute2 import IPRoute
    from pyroute2.netlink.exceptions import NetlinkError

    with IPRoute() as ipr:
        idx = ipr.link_lookup(ifname=ifname)
        if not idx:
            return False
        try:
            ipr.link("del", index=idx[0])
        except NetlinkError as exc:
            if exc.code == ENODEV:
                return False
            raise SystemFailure(f"cannot delete link {ifname}: {netlink_text(exc)}") from None
    return True
