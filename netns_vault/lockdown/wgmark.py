"""The tunnel's fwmark: what its own UDP socket marks its packets with (run in the target netns).

The lockdown accepts UDP to an endpoint only with this mark, so only the WireGuard socket gets
there (not a plain process sending to the endpoint's address and port). Both drivers support it:
wireguard-go over its UAPI socket (`fwmark=`), the kernel module over generic netlink. `apply`
reads the live interface's mark; a tunnel without one gets rules.DEFAULT_FWMARK (wg-quick's own
51820), which `revert` takes off again.
"""

from __future__ import annotations

import os
from typing import Any

from ..errors import SystemFailure
from ..logs import get_logger
from ..tunnel.links import link_exists, netlink_text
from ..tunnel.uapi import UapiClient, socket_path_for

log = get_logger(__name__)


def _uapi(ifname: str) -> UapiClient | None:
    path = socket_path_for(ifname)
    client = UapiClient(path)
    return client if os.path.exists(path) and client.accepts() else None


def read(ifname: str) -> dict[str, Any]:
    """{"present": is the link here, "fwmark": its mark or None (0 = none)}."""
    if not link_exists(ifname):
        return {"present": False, "fwmark": None}
    client = _uapi(ifname)
    if client is not None:
        value = client.device_field("fwmark")
        mark = int(value) if value else 0
    else:
        from pyroute2 import WireGuard

        try:
            with WireGuard() as wg:
                msgs = wg.info(ifname)
        except Exception as exc:
            raise SystemFailure(f"{ifname} is neither a wireguard-go tunnel (no UAPI socket) "
                                f"nor a kernel WireGuard link: {netlink_text(exc)}") from None
        mark = next((int(m.get_attr("WGDEVICE_A_FWMARK") or 0) for m in msgs), 0)
    return {"present": True, "fwmark": mark or None}


def write(ifname: str, mark: int) -> str:
    """Set (mark > 0) or clear (0) the tunnel's fwmark; returns the equivalent command."""
    client = _uapi(ifname)
    if client is not None:
        client.set(f"set=1\nfwmark={mark}\n\n")
    else:
        from pyroute2 import WireGuard

        try:
            with WireGuard() as wg:
                wg.set(ifname, fwmark=mark)
        except Exception as exc:
            raise SystemFailure(f"cannot set the fwmark of {ifname}: {netlink_text(exc)}") from None
    cmd = f"wg set {ifname} fwmark {hex(mark) if mark else 'off'}"
    log.debug("%s", cmd)
    return cmd
