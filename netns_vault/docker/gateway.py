"""The gateway image's entrypoint: a WireGuard gateway container with the lockdown on its own eth0.

    python3 -m netns_vault.docker.gateway --config /config/wg0.conf [--allow-lan CIDR]...
    python3 -m netns_vault.docker.gateway --health          (the image's HEALTHCHECK)

For hosts where the vault CLI cannot be installed (a NAS, Kubernetes). It runs in the container's
own network namespace, which Docker (or the CNI) gave an uplink `eth0`; services join it with
`network_mode: service:gateway`. This is WEAKER than a holder vault (images/gateway/README.md):
the namespace the services share contains eth0, and only the firewall keeps their traffic off it.

Start, in this order (each step after the lockdown is undone on failure or on SIGTERM):
  1. wait for a default route (the uplink: its interface and gateway), resolve the endpoints
  2. the lockdown walls (netns_vault.lockdown's ruleset and backend) on that interface: only lo,
     the tunnel interface and WireGuard UDP to the endpoints; IPv6 dropped. From here on nothing
     else leaves, whatever happens next.
  3. a /32 route to each endpoint via the uplink's gateway; the default route(s) removed
  4. wireguard-go (userspace: no setns, no kernel module), configured over its UAPI socket;
     addresses, MTU, and the default route into the tunnel
  5. the config's DNS servers written into /etc/resolv.conf (joined services share that file)
Then it watches the tunnel: if wireguard-go dies, only the tunnel is made again (the namespace,
and the services in it, stay); SIGHUP re-reads the config and re-creates the tunnel.
SIGTERM/SIGINT: tunnel, routes and resolv.conf are undone; the lockdown is NOT reverted: services
may still share this namespace, and an open firewall in it would be a leak.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import logging
import os
import select
import shutil
import signal
import socket
import stat
import sys
import time
from dataclasses import dataclass, field
from typing import Any

from ..config import WgConfig, load_config
from ..endpoints import resolve_peers
from ..errors import SystemFailure, UsageError, VaultError
from ..rollback import Rollback
from ..state import write_json_atomic
from ..tunnel.base import TunnelHandle
from ..tunnel.links import configure_tunnel_link, link_exists
from ..tunnel.userspace import UserspaceDriver, is_wireguard_go

log = logging.getLogger("netns_vault.gateway")

STATE_DIR = "/run/netns-vault/gateway"
STATE_FILE = "gateway.json"
READY_LINE = "netns-vault gateway up"
TUN_PATH = "/dev/net/tun"
DEFAULT_MTU = 1420
MAIN_TABLE = 254


@dataclass(frozen=True)
class Options:
    config: str
    interface: str | None = None  # default: the config's file name (wg0.conf -> wg0)
    uplink: str | None = None  # default: the interface of the default route
    allow_lan: tuple[str, ...] = ()
    wait_uplink: float = 60.0
    watch_interval: float = 5.0
    state_dir: str = STATE_DIR
    resolv_conf: str = "/etc/resolv.conf"


@dataclass(frozen=True)
class Uplink:
    iface: str
    gateway: str | None
    routes: tuple[dict[str, Any], ...] = ()  # the default routes found (to put back on stop)


# ---------------------------------------------------------------------------------------------
# The uplink and routes (pyroute2, in this process's own namespace)


def default_routes() -> list[dict[str, Any]]:
    """IPv4 default routes of the main table: [{"oif": index, "ifname": name, "gateway": ip}]."""
    from pyroute2 import IPRoute

    out = []
    with IPRoute() as ipr:
        names = {link["index"]: link.get_attr("IFLA_IFNAME") for link in ipr.get_links()}
        for route in ipr.get_routes(family=socket.AF_INET, table=MAIN_TABLE):
            if route["dst_len"] != 0:
                continue
            oif = route.get_attr("RTA_OIF")
            out.append(
                {
                    "oif": oif,
                    "ifname": names.get(oif),
                    "gateway": route.get_attr("RTA_GATEWAY"),
                    "priority": route.get_attr("RTA_PRIORITY"),
                }
            )
    return out


def wait_for_uplink(wanted: str | None, timeout: float, poll: float = 0.2) -> Uplink:
    """The uplink: the interface (and gateway) of the default route, once there is one."""
    deadline = time.monotonic() + timeout
    said = False
    while True:
        routes = [r for r in default_routes() if wanted is None or r["ifname"] == wanted]
        if routes:
            first = routes[0]
            return Uplink(first["ifname"], first["gateway"], tuple(routes))
        if time.monotonic() >= deadline:
            where = f" via {wanted}" if wanted else ""
            raise SystemFailure(
                f"no default route{where} after {timeout:g}s: the container has no uplink"
            )
        if not said:
            log.info(
                "waiting up to %gs for a default route%s",
                timeout,
                f" via {wanted}" if wanted else "",
            )
            said = True
        time.sleep(poll)


def _route(op: str, **kw: Any) -> None:
    from pyroute2 import IPRoute
    from pyroute2.netlink.exceptions import NetlinkError

    with IPRoute() as ipr:
        try:
            ipr.route(op, **kw)
        except NetlinkError as exc:
            if op == "del" and exc.code == 3:  # ESRCH: already gone
                return
            raise SystemFailure(f"ip route {op} {kw}: {exc.args[-1]}") from None


def _ifindex(name: str) -> int:
    from pyroute2 import IPRoute

    with IPRoute() as ipr:
        found = ipr.link_lookup(ifname=name)
    if not found:
        raise SystemFailure(f"interface {name} does not exist")
    return found[0]


def add_endpoint_route(ip: str, uplink: Uplink) -> None:
    kw: dict[str, Any] = {"dst": f"{ip}/32", "oif": _ifindex(uplink.iface)}
    if uplink.gateway:
        kw["gateway"] = uplink.gateway
    else:
        kw["scope"] = 253  # link
    log.info(
        "ip route add %s/32%s dev %s",
        ip,
        f" via {uplink.gateway}" if uplink.gateway else "",
        uplink.iface,
    )
    _route("replace", **kw)


def del_endpoint_route(ip: str) -> None:
    log.info("ip route del %s/32", ip)
    _route("del", dst=f"{ip}/32")


def del_default_routes(routes: tuple[dict[str, Any], ...]) -> None:
    for r in routes:
        log.info(
            "ip route del default%s dev %s",
            f" via {r['gateway']}" if r["gateway"] else "",
            r["ifname"],
        )
        kw: dict[str, Any] = {"dst": "0.0.0.0/0", "oif": r["oif"]}
        if r["gateway"]:
            kw["gateway"] = r["gateway"]
        _route("del", **kw)


def restore_default_routes(routes: tuple[dict[str, Any], ...]) -> None:
    for r in routes:
        kw: dict[str, Any] = {"dst": "0.0.0.0/0", "oif": r["oif"]}
        if r["gateway"]:
            kw["gateway"] = r["gateway"]
        if r.get("priority") is not None:
            kw["priority"] = r["priority"]
        log.info(
            "ip route add default%s dev %s",
            f" via {r['gateway']}" if r["gateway"] else "",
            r["ifname"],
        )
        with contextlib.suppress(SystemFailure):  # the uplink may be gone already
            _route("replace", **kw)


# ---------------------------------------------------------------------------------------------
# The lockdown on the uplink. The gateway uses the lockdown's ruleset and walls (lockdown/rules.py,
# lockdown/walls.py, behind the firewall backend), not its host state machine (snapshots, confirm
# timer, revert, persistence): a container's fresh namespace has nothing to go back to, and the
# walls are never taken down here. /proc/sys is read-only in a container, so IPv6 is switched off
# by the container's `sysctls` if at all; the IPv6 walls drop all of it either way.

FIREWALL = "iptables"


def lockdown_spec(
    tunnel: str,
    endpoints: list[tuple[str, int]],
    uplink: str,
    allow_lan: tuple[str, ...],
    tunnel_addresses: list[str],
) -> Any:
    from ..lockdown.rules import EndpointAddr, make_spec

    return make_spec(
        tunnel,
        [EndpointAddr(ip, port, uplink) for ip, port in endpoints],
        ssh_port=None,
        allow_lan=allow_lan,
        allow_dhcp=False,
        tunnel_addresses=tunnel_addresses,
    )


def apply_lockdown(spec: Any) -> list[str]:
    """Commit the lockdown tables here (each in one commit); returns the commands."""
    from ..lockdown import walls

    done = walls.put_up(spec, FIREWALL, arp_ifaces=None, best_effort_ipv6=True)
    for line in done["conntrack_deleted"]:
        log.info("%s", line)
    return done["commands"]


def check_lockdown(spec: Any) -> list[dict[str, Any]]:
    from ..lockdown import walls

    return walls.inspect_tables(spec, FIREWALL)


# ---------------------------------------------------------------------------------------------
# The tunnel


def ensure_tun_device(path: str = TUN_PATH) -> None:
    """Make /dev/net/tun if the container was not given it (Docker's device rules allow 10:200)."""
    if os.path.exists(path):
        return
    try:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        os.mknod(path, 0o600 | stat.S_IFCHR, os.makedev(10, 200))
        log.info("mknod %s c 10 200", path)
    except OSError as exc:
        raise SystemFailure(
            f"{path} is missing and cannot be made ({exc.strerror}): give the "
            "container the device (devices: [/dev/net/tun])"
        ) from None


# ---------------------------------------------------------------------------------------------
# resolv.conf (a bind-mounted file: rewritten in place, never replaced)


def resolv_text(servers: list[str], search: list[str]) -> str:
    lines = ["# netns-vault gateway: DNS only through the tunnel"]
    if search:
        lines.append("search " + " ".join(search))
    lines += [f"nameserver {s}" for s in servers]
    return "\n".join(lines) + "\n"


def _write_in_place(path: str, text: str) -> None:
    with open(path, "w") as f:
        f.write(text)


def _nothing() -> None:
    pass


# ---------------------------------------------------------------------------------------------


@dataclass
class Gateway:
    opts: Options
    cfg: WgConfig | None = None
    ifname: str = ""
    uplink: Uplink | None = None
    endpoints: list[tuple[str, int] | None] = field(default_factory=list)
    spec: Any = None
    handle: TunnelHandle | None = None
    driver: UserspaceDriver = field(default_factory=UserspaceDriver)
    rb: Rollback = field(default_factory=Rollback)

    @property
    def state_path(self) -> str:
        return os.path.join(self.opts.state_dir, STATE_FILE)

    def start(self) -> None:
        cfg = load_config(self.opts.config)
        self.cfg = cfg
        for notice in cfg.notices:
            log.warning("%s", notice)
        self.ifname = self.opts.interface or cfg.stem
        from ..lockdown.rules import check_iface

        check_iface(self.ifname, f"tunnel interface (--interface, or the name of {cfg.path})")
        if not cfg.ipv4_addresses:
            raise UsageError(f"{cfg.path}: no IPv4 Address: the tunnel would carry nothing")
        shutil.rmtree(self.opts.state_dir, ignore_errors=True)  # a previous run's
        os.makedirs(self.opts.state_dir, mode=0o700, exist_ok=True)

        self.uplink = wait_for_uplink(self.opts.uplink, self.opts.wait_uplink)
        if self.uplink.iface == self.ifname:
            raise UsageError(f"the default route already goes through {self.ifname}")
        self.endpoints = resolve_peers(cfg)
        eps = [e for e in self.endpoints if e is not None]
        if not eps:
            raise UsageError(f"{cfg.path}: no peer has an Endpoint")
        if any(":" in ip for ip, _port in eps):
            raise UsageError("an endpoint resolved to IPv6 only; the lockdown drops IPv6")
        log.info(
            "uplink %s%s; endpoints %s",
            self.uplink.iface,
            f" via {self.uplink.gateway}" if self.uplink.gateway else "",
            ", ".join(f"{ip}:{port}" for ip, port in eps),
        )

        self.spec = lockdown_spec(
            self.ifname,
            eps,
            self.uplink.iface,
            self.opts.allow_lan,
            [str(a) for a in cfg.ipv4_addresses],
        )
        for line in apply_lockdown(self.spec):
            log.debug("%s", line)
        log.info(
            "lockdown applied on %s: only lo, %s and WireGuard UDP to the endpoints",
            self.uplink.iface,
            self.ifname,
        )

        rb = self.rb
        uplink = self.uplink
        for ip, _port in dict.fromkeys(eps):
            rb.step(
                f"endpoint route {ip}",
                functools.partial(add_endpoint_route, ip, uplink),
                functools.partial(del_endpoint_route, ip),
            )
        rb.step(
            "remove the default route(s)",
            lambda: del_default_routes(uplink.routes),
            lambda: restore_default_routes(uplink.routes),
        )
        ensure_tun_device()
        rb.push("stop the tunnel", self.tunnel_down)
        self.tunnel_up()
        self._write_dns(cfg)
        self._save_state()

    def _write_dns(self, cfg: WgConfig) -> None:
        servers = [str(a) for a in cfg.ipv4_dns]
        if not servers:
            log.warning(
                "%s has no DNS server: name lookups fail (nothing may ask the uplink's resolver)",
                cfg.path,
            )
            servers = []
        try:
            with open(self.opts.resolv_conf) as f:
                before = f.read()
        except OSError:
            before = None
        path = self.opts.resolv_conf
        self.rb.step(
            f"write {path}",
            functools.partial(_write_in_place, path, resolv_text(servers, list(cfg.dns_search))),
            functools.partial(_write_in_place, path, before) if before is not None else _nothing,
        )

    def tunnel_up(self) -> None:
        assert self.cfg is not None
        cfg = self.cfg
        log_path = os.path.join(self.opts.state_dir, "wireguard-go.log")
        self.handle = self.driver.create(self.ifname, log_path)
        self.driver.configure(self.handle, cfg, self.endpoints, "")
        configure_tunnel_link(self.ifname, [str(a) for a in cfg.ipv4_addresses], cfg.mtu or DEFAULT_MTU)
        log.info("tunnel %s up (wireguard-go pid %s)", self.ifname, self.handle.pid)

    def tunnel_down(self) -> None:
        if self.handle is not None:
            self.driver.destroy(self.handle, None)  # the TUN goes with its wireguard-go
            self.handle = None

    def tunnel_alive(self) -> bool:
        h = self.handle
        return (
            h is not None
            and h.pid is not None
            and is_wireguard_go(h.pid, h.ifname)
            and link_exists(h.ifname)
        )

    def reload(self) -> None:
        """SIGHUP: re-read the config, re-create the tunnel (the lockdown follows new endpoints)."""
        assert self.cfg is not None and self.uplink is not None
        cfg = load_config(self.opts.config)
        try:
            endpoints = resolve_peers(cfg)  # through the tunnel, if it is up
        except VaultError as exc:
            log.warning("keeping the old endpoints: %s", exc)
            endpoints = self.endpoints if len(self.endpoints) == len(cfg.peers) else []
        eps = [e for e in endpoints if e is not None]
        if not eps:
            raise UsageError(f"{cfg.path}: no usable endpoint; keeping the running tunnel")
        spec = lockdown_spec(
            self.ifname,
            eps,
            self.uplink.iface,
            self.opts.allow_lan,
            [str(a) for a in cfg.ipv4_addresses],
        )
        if spec != self.spec:
            apply_lockdown(spec)
            self.spec = spec
        old = {e for e in self.endpoints if e is not None}
        for ip, _port in dict.fromkeys(eps):
            if all(ip != o[0] for o in old):
                self.rb.step(
                    f"endpoint route {ip}",
                    functools.partial(add_endpoint_route, ip, self.uplink),
                    functools.partial(del_endpoint_route, ip),
                )
        self.cfg, self.endpoints = cfg, endpoints
        self.tunnel_down()
        self.tunnel_up()
        self._save_state()

    def _save_state(self) -> None:
        assert self.cfg is not None and self.uplink is not None
        record = {
            "interface": self.ifname,
            "uplink": self.uplink.iface,
            "tunnel": self.handle.to_dict() if self.handle else None,
            "addresses": [str(a) for a in self.cfg.ipv4_addresses],
            "endpoints": [f"{e[0]}:{e[1]}" for e in self.endpoints if e],
            "spec": self.spec.to_dict(),
            "ready_at": time.time(),
        }
        write_json_atomic(self.state_path, record)

    def stop(self) -> list[str]:
        """Undo everything but the lockdown. Returns cleanup errors."""
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.state_path)
        return self.rb.undo_all()


# ---------------------------------------------------------------------------------------------
# health


def health(state_dir: str = STATE_DIR) -> list[tuple[str, bool, str]]:
    """(name, ok, detail) for: started, wireguard-go, the tunnel link, the lockdown tables."""
    from ..lockdown.rules import LockdownSpec

    try:
        with open(os.path.join(state_dir, STATE_FILE)) as f:
            record = json.load(f)
    except (OSError, ValueError):
        return [("started", False, "the gateway is not up (yet)")]
    out = [("started", True, f"since {time.ctime(record['ready_at'])}")]
    tunnel = TunnelHandle.from_dict(record["tunnel"]) if record.get("tunnel") else None
    alive = bool(tunnel and tunnel.pid and is_wireguard_go(tunnel.pid, tunnel.ifname))
    out.append(("wireguard-go", alive, f"pid {tunnel.pid if tunnel else None}"))
    out.append(("tunnel", link_exists(record["interface"]), record["interface"]))
    for item in check_lockdown(LockdownSpec.from_dict(record["spec"])):
        out.append((item["name"], item["ok"], item["detail"]))
    return out


# ---------------------------------------------------------------------------------------------
# main


def _parse(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="netns-vault-gateway", description="WireGuard gateway with the netns-vault lockdown."
    )
    p.add_argument(
        "--config",
        "-c",
        default="/config/wg0.conf",
        help="wg-quick config (its file name is the interface name)",
    )
    p.add_argument("--interface", help="tunnel interface name (default: the config's name)")
    p.add_argument("--uplink", help="the uplink interface (default: that of the default route)")
    p.add_argument(
        "--allow-lan",
        action="append",
        default=[],
        metavar="CIDR",
        help="also allow this network on the uplink, DNS excepted (repeatable)",
    )
    p.add_argument(
        "--wait-uplink",
        type=float,
        default=60.0,
        metavar="SECONDS",
        help="how long to wait for a default route",
    )
    p.add_argument("--watch-interval", type=float, default=5.0, metavar="SECONDS")
    p.add_argument("--health", action="store_true", help="check a running gateway; exit 0 if ok")
    p.add_argument("--verbose", "-v", action="store_true")
    return p.parse_args(argv)


class Interrupted(BaseException):
    """SIGTERM/SIGINT during start: everything done so far but the lockdown is undone."""


def run(gw: Gateway) -> int:
    """Start, then watch the tunnel until SIGTERM/SIGINT. Returns the exit code."""
    received: list[int] = []
    started = False

    def on_signal(sig: int, _frame: Any) -> None:
        if not started and sig != signal.SIGHUP:
            raise Interrupted(sig)  # e.g. `docker stop` while waiting for the uplink
        received.append(sig)

    rfd, wfd = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
    signal.set_wakeup_fd(wfd)
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, on_signal)
    try:
        gw.start()
    except Interrupted:
        log.info("stopped before the gateway was up")
        for e in gw.stop():
            log.warning("%s", e)
        return 0
    except BaseException:
        for e in gw.stop():
            log.warning("%s", e)
        raise
    started = True
    assert gw.cfg is not None and gw.uplink is not None
    eps = ", ".join(f"{e[0]}:{e[1]}" for e in gw.endpoints if e)
    print(
        f"{READY_LINE}: {gw.ifname} {', '.join(str(a) for a in gw.cfg.ipv4_addresses)} via "
        f"{eps} on {gw.uplink.iface}; lockdown applied",
        flush=True,
    )
    try:
        while True:
            select.select([rfd], [], [], gw.opts.watch_interval)
            with contextlib.suppress(BlockingIOError):
                os.read(rfd, 512)
            if any(s in (signal.SIGTERM, signal.SIGINT) for s in received):
                log.info("stopping")
                return 0
            if signal.SIGHUP in received:
                received.clear()
                log.info("SIGHUP: reloading %s", gw.opts.config)
                try:
                    gw.reload()
                except VaultError as exc:
                    log.error("reload failed: %s", exc)
                continue
            if not gw.tunnel_alive():
                log.warning(
                    "the tunnel %s is gone; making it again (the namespace stays)", gw.ifname
                )
                try:
                    gw.tunnel_down()
                    gw.tunnel_up()
                    gw._save_state()
                except VaultError as exc:
                    log.error("re-creating the tunnel failed (nothing leaks meanwhile): %s", exc)
    finally:
        for e in gw.stop():
            log.warning("%s", e)
        log.info("tunnel, routes and resolv.conf undone; the lockdown stays in force")


def main(argv: list[str] | None = None) -> int:
    args = _parse(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="gateway %(levelname)s: %(message)s",
        stream=sys.stderr,
    )
    if args.health:
        results = health()
        for name, ok, detail in results:
            print(f"{'ok ' if ok else 'BAD'} {name}: {detail}")
        return 0 if all(ok for _n, ok, _d in results) else 1
    opts = Options(
        config=args.config,
        interface=args.interface,
        uplink=args.uplink,
        allow_lan=tuple(args.allow_lan),
        wait_uplink=args.wait_uplink,
        watch_interval=args.watch_interval,
    )
    try:
        return run(Gateway(opts))
    except VaultError as exc:
        print(f"gateway: {exc}", file=sys.stderr)
        return exc.exit_code


if __name__ == "__main__":
    sys.exit(main())
