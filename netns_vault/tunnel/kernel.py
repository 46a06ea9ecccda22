"""The kernel driver: a `wireguard` link (rtnetlink) configured over generic netlink (pyroute2).

The link is created in the caller's netns, so the kernel binds its UDP socket there even after the
link is moved into the vault netns; configuration and stats then run in the vault netns through
`nsexec.run_in_netns`. pyroute2 is imported only inside functions.
"""

from __future__ import annotations

import contextlib
import os
from typing import TYPE_CHECKING, Any

from ..errors import ConflictError, SystemFailure, UsageError
from .base import PeerStats, TunnelHandle, TunnelStats
from .links import delete_link, netlink_text

if TYPE_CHECKING:
    from ..config import WgConfig

MODULE_DIR = "/sys/module/wireguard"
ENOENT = 2


def wireguard_set_calls(
    ifname: str, cfg: WgConfig, endpoints: list[tuple[str, int] | None]
) -> list[dict[str, Any]]:
    """The keyword arguments of the `pyroute2.WireGuard().set()` calls that apply `cfg`.

    The first call sets the device (private key, port, fwmark); then one call per peer, each
    replacing that peer's allowed IPs. pyroute2 cannot send WGDEVICE_F_REPLACE_PEERS, so peers
    not in `cfg` are removed separately (see `_apply`). The result contains secrets: never log it.
    """
    peers = list(cfg.peers)
    if len(endpoints) != len(peers):
        raise ValueError(f"{len(peers)} peers but {len(endpoints)} resolved endpoints")
    device: dict[str, Any] = {"interface": ifname, "private_key": cfg.private_key}
    if cfg.listen_port is not None:
        device["listen_port"] = cfg.listen_port
    if cfg.fwmark is not None:
        device["fwmark"] = cfg.fwmark
    calls = [device]
    for peer, ep in zip(peers, endpoints, strict=True):
        p: dict[str, Any] = {
            "public_key": peer.public_key,
            "replace_allowed_ips": True,
            "allowed_ips": [str(net) for net in peer.allowed_ips],
        }
        if peer.preshared_key is not None:
            p["preshared_key"] = peer.preshared_key
        if ep is not None:
            p["endpoint_addr"] = ep[0].strip("[]")
            p["endpoint_port"] = int(ep[1])
        if peer.persistent_keepalive is not None:
            p["persistent_keepalive"] = peer.persistent_keepalive
        calls.append({"interface": ifname, "peer": p})
    return calls


def _b64(value: Any) -> str:
    if isinstance(value, dict) or hasattr(value, "get"):
        value = value.get("value")
    if isinstance(value, bytes):
        value = value.decode("ascii")
    return str(value)


def parse_wireguard_info(msgs: Any) -> TunnelStats:
    """TunnelStats from the messages of `pyroute2.WireGuard().info(ifname)` (may be several)."""
    listen_port: int | None = None
    peers: list[PeerStats] = []
    for msg in msgs:
        port = msg.get_attr("WGDEVICE_A_LISTEN_PORT")
        if port:
            listen_port = int(port)
        for peer in msg.get_attr("WGDEVICE_A_PEERS") or []:
            ep = peer.get_attr("WGPEER_A_ENDPOINT")
            endpoint = None
            if ep is not None and ep.get("port"):
                addr = ep.get("addr")
                endpoint = f"[{addr}]:{ep['port']}" if ":" in str(addr) else f"{addr}:{ep['port']}"
            hs = peer.get_attr("WGPEER_A_LAST_HANDSHAKE_TIME")
            last = None
            if hs is not None and (hs.get("tv_sec") or hs.get("tv_nsec")):
                last = hs.get("tv_sec", 0) + hs.get("tv_nsec", 0) / 1e9
            peers.append(
                PeerStats(
                    public_key=_b64(peer.get_attr("WGPEER_A_PUBLIC_KEY")),
                    endpoint=endpoint,
                    last_handshake=last,
                    rx_bytes=int(peer.get_attr("WGPEER_A_RX_BYTES") or 0),
                    tx_bytes=int(peer.get_attr("WGPEER_A_TX_BYTES") or 0),
                )
            )
    return TunnelStats(listen_port=listen_port, peers=peers)


def _stats_to_json(stats: TunnelStats) -> dict:
    return {
        "listen_port": stats.listen_port,
        "peers": [p.fields() for p in stats.peers],
    }


def _stats_from_json(d: dict) -> TunnelStats:
    return TunnelStats(
        listen_port=d["listen_port"], peers=[PeerStats(**p) for p in d["peers"]]
    )


# -- functions run in the vault netns (forked helper) ----------------------------------------


def _apply(calls: list[dict[str, Any]]) -> None:
    from pyroute2 import WireGuard

    ifname = calls[0]["interface"]
    wanted = {c["peer"]["public_key"] for c in calls[1:]}
    with WireGuard() as wg:
        try:
            current = parse_wireguard_info(wg.info(ifname))
            for peer in current.peers:
                if peer.public_key not in wanted:
                    wg.set(ifname, peer={"public_key": peer.public_key, "remove": True})
            for call in calls:
                wg.set(**call)
        except Exception as exc:  # a NetlinkError's text holds no key
            raise SystemFailure(
                f"cannot configure WireGuard link {ifname}: {netlink_text(exc)}"
            ) from None


def _info(ifname: str) -> dict:
    from pyroute2 import WireGuard

    with WireGuard() as wg:
        try:
            return _stats_to_json(parse_wireguard_info(wg.info(ifname)))
        except Exception as exc:
            raise SystemFailure(
                f"cannot read WireGuard link {ifname}: {netlink_text(exc)}"
            ) from None


def _create_link(ifname: str) -> None:
    from ..netlink import IPRoute

    with IPRoute() as ipr:
        ipr.link("add", ifname=ifname, kind="wireguard")


def _module_installed(release: str) -> bool:
    """Whether modprobe could load wireguard: it is in modules.dep or modules.builtin."""
    base = f"/lib/modules/{release}"
    for index in ("modules.dep", "modules.builtin"):
        try:
            with open(f"{base}/{index}") as f:
                if any("/wireguard.ko" in line.split(":", 1)[0] for line in f):
                    return True
        except OSError:
            continue
    return False


class KernelDriver:
    name = "kernel"

    def unavailable_reason(self) -> str | None:
        if os.path.isdir(MODULE_DIR):  # loaded, or built in (it has a version, so it shows)
            return None
        release = os.uname().release
        if not _module_installed(release):
            # Skips a netlink probe (and pyroute2's import) on the common no-module host.
            return f"module not loaded and not installed for kernel {release}"
        # Installed but not loaded: creating a link autoloads it.
        probe = f"vwprobe{os.getpid() % 10**7}"
        try:
            _create_link(probe)
        except ImportError as exc:
            return f"pyroute2 not importable ({exc})"
        except Exception as exc:
            return f"module not loaded and a probe link failed ({netlink_text(exc)})"
        with contextlib.suppress(Exception):
            delete_link(probe)
        return None

    def create(self, ifname: str, log_path: str | None = None) -> TunnelHandle:
        try:
            _create_link(ifname)
        except Exception as exc:
            code = getattr(exc, "code", None)
            if code == 17:  # EEXIST
                raise ConflictError(f"link {ifname} already exists") from None
            raise SystemFailure(
                f"cannot create WireGuard link {ifname}: {netlink_text(exc)}"
            ) from None
        return TunnelHandle(driver=self.name, ifname=ifname)

    def configure(
        self,
        handle: TunnelHandle,
        cfg: WgConfig,
        endpoints: list[tuple[str, int] | None],
        netns: str,
    ) -> None:
        from ..nsexec import run_in_netns

        try:
            calls = wireguard_set_calls(handle.ifname, cfg, endpoints)
        except ValueError as exc:
            raise UsageError(f"cannot configure {handle.ifname}: {exc}") from None
        # The calls (with the private key) go to the forked child by memory, not by argv or JSON.
        run_in_netns(netns, _apply, calls)

    def stats(self, handle: TunnelHandle, netns: str) -> TunnelStats:
        from ..nsexec import run_in_netns

        return _stats_from_json(run_in_netns(netns, _info, handle.ifname))

    def destroy(self, handle: TunnelHandle, netns: str | None) -> None:
        if netns is None:
            delete_link(handle.ifname)
            return
        from ..nsexec import netns_path, run_in_netns

        if os.path.exists(netns_path(netns)):
            run_in_netns(netns, delete_link, handle.ifname)
