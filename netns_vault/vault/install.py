"""Installing a vault's tunnel: the steps `up` and `reload` share (create the WireGuard
interface, move it into the namespace, configure it, give it its addresses), what they record,
and how a tunnel is found and removed again, with or without a state file."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable

from .. import namespace, paths, state
from ..errors import SystemFailure
from ..logs import get_logger
from ..names import VaultNames
from ..nsexec import run_in_netns
from ..tunnel import TunnelDriver, TunnelHandle, get_driver
from ..tunnel.links import configure_tunnel_link, link_exists

TYPE_CHECKING = False
if TYPE_CHECKING:  # at run time neither is needed here: `down` does not import them
    from ..config import WgConfig
    from ..rollback import Rollback

log = get_logger(__name__)

StepHook = Callable[[str], object]
Endpoints = list[tuple[str, int] | None]

# The steps that install a tunnel, in order; `up` and `reload` run them between their own.
TUNNEL_STEPS = ("tunnel", "move", "wireguard", "addresses")


def run_steps(run: object, steps: tuple[str, ...], on_step: StepHook | None, what: str) -> None:
    """Run each step as the method `step_<name>` of `run`; `on_step(name)` after each (tests aim
    failures and signals at a step with it)."""
    for step in steps:
        log.debug("%s: %s", what, step)
        getattr(run, step_method(step))()
        if on_step is not None:
            on_step(step)


def step_method(step: str) -> str:
    return "step_" + step.replace("-", "_")


# WireGuard's overhead on the path: outer IP header, UDP header, WireGuard data header + tag.
WG_OVERHEAD = {4: 20 + 8 + 32, 6: 40 + 8 + 32}
MIN_TUNNEL_MTU = 576
IP_MTU, IPV6_MTU = 14, 24  # getsockopt names (linux/in.h, linux/in6.h)


def path_mtu(host: str, port: int) -> int | None:
    """The MTU of the path to host:port as this netns's routing sees it (the route's MTU, else
    the egress link's, or a learnt PMTU): a connected UDP socket's IP_MTU. None if no route."""
    import socket

    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        with socket.socket(family, socket.SOCK_DGRAM) as s:
            s.connect((host, port))
            if family == socket.AF_INET6:
                return s.getsockopt(socket.IPPROTO_IPV6, IPV6_MTU)
            return s.getsockopt(socket.IPPROTO_IP, IP_MTU)
    except OSError:
        return None


def tunnel_mtu(cfg: WgConfig, endpoints: Endpoints) -> int:
    """The config's MTU=, else the default (1420) lowered to fit the path to every endpoint
    (path MTU minus WireGuard's 60 bytes over IPv4, 80 over IPv6), so TCP inside never sends
    a packet the path drops (a stall: PMTU discovery does not work through the tunnel)."""
    if cfg.mtu:
        return cfg.mtu
    mtu = paths.DEFAULT_MTU
    for ep in endpoints:
        if ep is None:
            continue
        found = path_mtu(ep[0], ep[1])
        if found:
            fit = found - WG_OVERHEAD[6 if ":" in ep[0] else 4]
            mtu = min(mtu, max(MIN_TUNNEL_MTU, fit))
    if mtu != paths.DEFAULT_MTU:
        log.debug("tunnel MTU %d (path MTU to the endpoint)", mtu)
    return mtu


def config_record(cfg: WgConfig, endpoints: Endpoints, mtu: int | None = None) -> dict:
    """What state keeps of a config (by `up`, again by `reload`): public facts only, no key."""
    return {
        "config_path": os.path.abspath(cfg.path),
        "addresses": [str(a) for a in cfg.ipv4_addresses],
        "mtu": mtu or cfg.mtu or paths.DEFAULT_MTU,
        "dns": [str(a) for a in cfg.ipv4_dns],
        "dns_search": list(cfg.dns_search),
        "peers": [{"public_key": p.public_key,
                   "endpoint": str(p.endpoint) if p.endpoint else None,
                   "resolved": f"{e[0]}:{e[1]}" if e else None}
                  for p, e in zip(cfg.peers, endpoints, strict=True)],
    }


def _move_link(ifname: str, netns: str) -> None:
    import socket

    from ..netlink import RouteSocket

    try:
        index = socket.if_nametoindex(ifname)
    except OSError:
        raise SystemFailure(f"tunnel interface {ifname} did not appear on the host") from None
    log.debug("ip link set %s netns %s", ifname, netns)
    fd = os.open(paths.netns_path(netns), os.O_RDONLY | os.O_CLOEXEC)
    try:
        with RouteSocket() as rtnl:
            rtnl.set_link(index, netns_fd=fd)
    finally:
        os.close(fd)


class TunnelRun:
    """What installing a tunnel needs. Each step registers its undo on `rb` BEFORE it acts (or
    the undo is safe on a half-done action): an interrupt anywhere leaves nothing behind."""

    def __init__(self, names: VaultNames, cfg: WgConfig, driver: TunnelDriver, rb: Rollback,
                 endpoints: Endpoints):
        self.names, self.cfg, self.driver, self.rb = names, cfg, driver, rb
        self.endpoints = endpoints
        self.addresses = [str(a) for a in cfg.ipv4_addresses]
        self.dns_servers = [str(a) for a in cfg.ipv4_dns]
        self.mtu = tunnel_mtu(cfg, endpoints)
        self.handle: TunnelHandle | None = None

    def step_tunnel(self) -> None:
        names = self.names
        self.rb.push(f"stop tunnel {names.iface}",
                     lambda: remove_tunnel(names, self.driver.name, self.handle))
        self.handle = self.driver.create(names.iface, state.log_path(names.name))
        self.tunnel_made()

    def tunnel_made(self) -> None:
        """Called as soon as the tunnel exists (reload records it at once)."""

    def step_move(self) -> None:
        _move_link(self.names.iface, self.names.netns)

    def step_wireguard(self) -> None:
        assert self.handle is not None
        self.driver.configure(self.handle, self.cfg, self.endpoints, self.names.netns)

    def step_addresses(self) -> None:
        run_in_netns(self.names.netns, configure_tunnel_link, self.names.iface, self.addresses,
                     self.mtu)

    def endpoint_list(self) -> list[str]:
        return [f"{e[0]}:{e[1]}" for e in self.endpoints if e]


def remove_tunnel(names: VaultNames, driver_name: str, handle: TunnelHandle | None) -> None:
    """The undo of creating the tunnel: safe on a tunnel made, half made, or never made."""
    handle = handle or TunnelHandle(driver_name, names.iface)
    netns = names.netns if namespace.netns_exists(names.netns) else None
    try:
        get_driver(handle.driver).destroy(handle, netns)
    finally:
        sweep_tunnel(names)


def sweep_tunnel(names: VaultNames) -> bool:
    """Remove whatever serves the vault's interface name outside any state: every wireguard-go
    serving it, its UAPI socket when nothing listens, and a link of that name on the host.
    Returns whether it found anything."""
    from ..tunnel.links import delete_link
    from ..tunnel.uapi import UapiClient, socket_path_for
    from ..tunnel.userspace import UserspaceDriver, find_servers

    pids = find_servers(names.iface)
    sock = socket_path_for(names.iface)
    found = bool(pids) or os.path.lexists(sock)
    driver = UserspaceDriver()
    for pid in pids:  # (not driver.destroy: that would look through /proc once more)
        driver.stop(pid, names.iface)
    if link_exists(names.iface):
        found = True
        delete_link(names.iface)
    if os.path.lexists(sock) and not UapiClient(sock).accepts():
        with contextlib.suppress(FileNotFoundError):
            os.unlink(sock)
    return found


def tunnel_handle(names: VaultNames, record: dict | None) -> TunnelHandle:
    """The vault's tunnel: from its state, else a wireguard-go serving vw-NAME, else kernel."""
    from ..tunnel.uapi import socket_path_for
    from ..tunnel.userspace import find_servers

    if record and "tunnel" in record:
        return TunnelHandle.from_dict(record["tunnel"])
    pids = find_servers(names.iface)
    if pids:
        return TunnelHandle("userspace", names.iface, pids[0], socket_path_for(names.iface))
    return TunnelHandle("kernel", names.iface)

