"""The vault facade: up, down, status, list and check, tying the modules together.

`up` is a list of steps, each registering its undo on one Rollback, so a failure anywhere (or
Ctrl-C) leaves the system exactly as it was. The CLI process itself never changes namespace:
work inside the vault runs in forked children (nsexec.run_in_netns).
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from . import dns, ipv6, namespace, state
from .config import WgConfig
from .endpoints import resolve_peers as resolve_endpoints
from .errors import ConflictError, InterruptedAfterChange, NotFoundError, SystemFailure
from .firewall.walls import apply_vault, inspect_vault
from .names import VaultNames
from .nsexec import run_in_netns
from .rollback import Rollback, held_interrupts
from .tunnel import TunnelDriver, TunnelHandle, get_driver, select_driver
from .tunnel.links import configure_tunnel_link, link_exists

log = logging.getLogger(__name__)

IPV6_SYSCTLS = ipv6.KEYS
DEFAULT_MTU = 1420
STATE_VERSION = 1


class NamespaceProvider(Protocol):
    kind: str

    def create(self, names: VaultNames, rb: Rollback, dns_servers: list[str],
               dns_search: list[str]) -> None: ...

    def destroy(self, names: VaultNames, force: bool) -> None: ...


class PlainNamespace:
    """The default: a fresh namespace bound at /run/netns/vault-NAME."""

    kind = "netns"

    def create(self, names: VaultNames, rb: Rollback, dns_servers: list[str],
               dns_search: list[str]) -> None:
        # Undo first: an interrupt may land after the bind but before create_netns returns.
        # (`up` checked under the lock that no such namespace existed.)
        rb.guarded(f"ip netns add {names.netns}", lambda: namespace.create_netns(names.netns),
                   lambda: namespace.remove_netns(names.netns))

    def destroy(self, names: VaultNames, force: bool) -> None:
        namespace.remove_netns(names.netns)


def provider_for(kind: str) -> NamespaceProvider:
    if kind == "docker":
        from .docker.holder import DockerHolderProvider

        return DockerHolderProvider()
    return PlainNamespace()


@dataclass
class UpResult:
    name: str
    netns: str
    driver: str
    ifname: str
    addresses: list[str]
    endpoints: list[str]
    dns: list[str]
    notices: list[str] = field(default_factory=list)
    firewall: str = "iptables"


# ---------------------------------------------------------------------------------------------
# Work done inside the vault's namespace (these run in a forked child; keep them JSON in/out).


def _prepare_inside(ifname: str, firewall: str = "auto") -> str:
    """Before the tunnel exists: IPv6 off, lo up, the firewall walls up."""
    from pyroute2 import IPRoute

    ipv6.disable()  # a kernel without IPv6: nothing to disable; the firewall walls it anyway
    with IPRoute() as ipr:
        (lo,) = ipr.link_lookup(ifname="lo")
        ipr.link("set", index=lo, state="up")
    return apply_vault(ifname, firewall)


def _inspect_inside(ifname: str, firewall: str | None = None) -> dict[str, Any]:
    """Everything `check` needs to see from inside the vault."""
    from pyroute2 import IPRoute

    out: dict[str, Any] = {"links": [], "addresses": [], "routes": [], "sysctl": {}}
    with IPRoute() as ipr:
        names = {}
        for link in ipr.get_links():
            name = link.get_attr("IFLA_IFNAME")
            names[link["index"]] = name
            linkinfo = link.get_attr("IFLA_LINKINFO")
            kind = linkinfo.get_attr("IFLA_INFO_KIND") if linkinfo else None
            out["links"].append({"name": name, "kind": kind, "mtu": link.get_attr("IFLA_MTU"),
                                 "up": bool(link["flags"] & 1)})
        for addr in ipr.get_addr():
            out["addresses"].append({"dev": names.get(addr["index"]), "family": addr["family"],
                                     "cidr": f"{addr.get_attr('IFA_ADDRESS')}/{addr['prefixlen']}"})
        for route in ipr.get_routes(family=socket.AF_INET, table=254):
            out["routes"].append({"dst": route.get_attr("RTA_DST") or "default",
                                  "dst_len": route["dst_len"],
                                  "dev": names.get(route.get_attr("RTA_OIF")),
                                  "gateway": route.get_attr("RTA_GATEWAY")})
    out["sysctl"] = ipv6.read_keys()
    out["firewall"] = inspect_vault(ifname, firewall)
    return out


def _delete_links_inside(keep: tuple[str, ...] = ("lo",)) -> list[str]:
    from pyroute2 import IPRoute

    deleted = []
    with IPRoute() as ipr:
        for link in ipr.get_links():
            name = link.get_attr("IFLA_IFNAME")
            if name in keep:
                continue
            try:
                ipr.link("del", index=link["index"])
                deleted.append(name)
            except Exception as exc:  # e.g. already gone with its wireguard-go
                log.debug("deleting %s: %s", name, exc)
    return deleted


# ---------------------------------------------------------------------------------------------
# Host side.


def _move_link(ifname: str, netns: str) -> None:
    from pyroute2 import IPRoute

    with IPRoute() as ipr:
        found = ipr.link_lookup(ifname=ifname)
        if not found:
            raise SystemFailure(f"tunnel interface {ifname} did not appear on the host")
        log.debug("ip link set %s netns %s", ifname, netns)
        ipr.link("set", index=found[0], net_ns_fd=netns)


def _config_record(cfg: WgConfig, endpoints: list[tuple[str, int] | None]) -> dict:
    """What state keeps of a config (by `up`, again by `reload`): public facts only, no key."""
    return {
        "config_path": os.path.abspath(cfg.path),
        "addresses": [str(a) for a in cfg.ipv4_addresses],
        "mtu": cfg.mtu or DEFAULT_MTU,
        "dns": [str(a) for a in cfg.ipv4_dns],
        "dns_search": list(cfg.dns_search),
        "peers": [{"public_key": p.public_key,
                   "endpoint": str(p.endpoint) if p.endpoint else None,
                   "resolved": f"{e[0]}:{e[1]}" if e else None}
                  for p, e in zip(cfg.peers, endpoints, strict=True)],
    }


def _remove_tunnel(names: VaultNames, driver_name: str, handle: TunnelHandle | None) -> None:
    """The undo of creating the tunnel: safe on a tunnel made, half made, or never made."""
    handle = handle or TunnelHandle(driver_name, names.iface)
    netns = names.netns if namespace.netns_exists(names.netns) else None
    try:
        get_driver(handle.driver).destroy(handle, netns)
    finally:
        _sweep_tunnel(names)


def _sweep_tunnel(names: VaultNames) -> bool:
    """Remove whatever serves the vault's interface name outside any state: every wireguard-go
    serving it, its UAPI socket when nothing listens, and a link of that name on the host.
    Returns whether it found anything."""
    from .tunnel.links import delete_link
    from .tunnel.uapi import UapiClient, socket_path_for
    from .tunnel.userspace import UserspaceDriver, find_servers

    pids = find_servers(names.iface)
    sock = socket_path_for(names.iface)
    found = bool(pids) or os.path.lexists(sock)
    if found:
        UserspaceDriver().destroy(TunnelHandle("userspace", names.iface, None, sock), None)
    if link_exists(names.iface):
        found = True
        delete_link(names.iface)
    if os.path.lexists(sock) and not UapiClient(sock).accepts():
        with contextlib.suppress(FileNotFoundError):
            os.unlink(sock)
    return found


StepHook = Callable[[str], object]


class _UpRun:
    """What the steps of one `up` share. Each step registers its undo on `rb` BEFORE it acts
    (or the undo is safe on a half-done action): an interrupt anywhere leaves nothing behind."""

    def __init__(self, names: VaultNames, cfg: WgConfig, driver: TunnelDriver,
                 provider: NamespaceProvider, rb: Rollback,
                 endpoints: list[tuple[str, int] | None], firewall: str = "auto"):
        self.names, self.cfg, self.driver, self.provider, self.rb = names, cfg, driver, provider, rb
        self.endpoints = endpoints
        self.firewall = firewall  # the choice; after `inside`, the backend in use
        self.addresses = [str(a) for a in cfg.ipv4_addresses]
        self.dns_servers = [str(a) for a in cfg.ipv4_dns]
        self.handle: TunnelHandle | None = None

    def namespace(self) -> None:
        self.provider.create(self.names, self.rb, self.dns_servers, list(self.cfg.dns_search))

    def inside(self) -> None:
        self.firewall = run_in_netns(self.names.netns, _prepare_inside, self.names.iface,
                                     self.firewall)

    def tunnel(self) -> None:
        names = self.names
        self.rb.push("remove wireguard log", lambda: state.remove_log(names.name))
        self.rb.push(f"stop tunnel {names.iface}",
                     lambda: _remove_tunnel(names, self.driver.name, self.handle))
        self.handle = self.driver.create(names.iface, state.log_path(names.name))

    def move(self) -> None:
        _move_link(self.names.iface, self.names.netns)

    def wireguard(self) -> None:
        assert self.handle is not None
        self.driver.configure(self.handle, self.cfg, self.endpoints, self.names.netns)

    def addresses_(self) -> None:
        run_in_netns(self.names.netns, configure_tunnel_link, self.names.iface, self.addresses,
                     self.cfg.mtu or DEFAULT_MTU)

    def dns(self) -> None:
        etc_dir = self.names.etc_dir
        self.rb.guarded(f"write {etc_dir}",
                        lambda: dns.write_dns_files(etc_dir, self.dns_servers,
                                                    list(self.cfg.dns_search)),
                        lambda: dns.remove_dns_files(etc_dir))

    def state(self) -> None:
        assert self.handle is not None
        record = {
            "version": STATE_VERSION,
            "name": self.names.name,
            "netns": self.names.netns,
            "provider": self.provider.kind,
            "firewall": self.firewall,
            "tunnel": self.handle.to_dict(),
            **_config_record(self.cfg, self.endpoints),
            "created_at": time.time(),
        }
        self.rb.guarded("write state", lambda: state.write_state(self.names.name, record),
                        lambda: state.remove_state(self.names.name))


# The steps of `up`, in order. A test hook (`up(on_step=...)`) is called after each, by name.
UP_PLAN: tuple[tuple[str, Callable[[_UpRun], None]], ...] = (
    ("namespace", _UpRun.namespace),
    ("inside", _UpRun.inside),
    ("tunnel", _UpRun.tunnel),
    ("move", _UpRun.move),
    ("wireguard", _UpRun.wireguard),
    ("addresses", _UpRun.addresses_),
    ("dns", _UpRun.dns),
    ("state", _UpRun.state),
)
UP_STEPS = tuple(step for step, _ in UP_PLAN)


def up(name: str, cfg: WgConfig, driver_choice: str = "auto", provider_kind: str = "netns",
       on_step: StepHook | None = None, provider: NamespaceProvider | None = None,
       firewall: str = "auto") -> UpResult:
    """Create vault NAME from a parsed config. Returns once the vault is ready (not handshaken).

    Any failure, or Ctrl-C, before the vault is complete undoes every step done so far and
    raises (KeyboardInterrupt stays KeyboardInterrupt). Ctrl-C after it is complete raises
    InterruptedAfterChange: the vault is up. `on_step(name)` runs after each step of UP_STEPS
    (tests aim failures and signals at a step with it).
    """
    names = VaultNames.of(name)
    driver = select_driver(driver_choice)
    provider = provider or provider_for(provider_kind)
    rb = Rollback()
    try:
        with state.vault_lock(names.name) as lock:
            try:
                return _up_locked(names, cfg, driver, provider, rb, on_step, firewall)
            except BaseException:
                # Nothing of this vault exists now (a conflict leaves the other vault's
                # state): leave no lock file behind either.
                if not rb.committed and state.read_state(names.name) is None:
                    lock.remove_lock = True
                raise
    except KeyboardInterrupt:
        state.cleanup_dir()
        if rb.committed:
            raise InterruptedAfterChange(
                f"interrupted after vault {names.name} was up; it is up") from None
        raise
    except BaseException:
        state.cleanup_dir()  # and /run/netns-vault itself, when nothing else is in it
        raise


def _up_locked(names: VaultNames, cfg: WgConfig, driver: TunnelDriver,
               provider: NamespaceProvider, rb: Rollback,
               on_step: StepHook | None, firewall: str = "auto") -> UpResult:
    if namespace.netns_exists(names.netns) or os.path.lexists(names.netns_path):
        raise ConflictError(f"vault {names.name} already exists (namespace {names.netns})")
    if state.read_state(names.name) is not None:
        raise ConflictError(f"vault {names.name} already exists (state in {state.STATE_DIR})")
    if os.path.exists(names.etc_dir):
        raise ConflictError(f"{names.etc_dir} already exists; remove it or pick another name")
    if link_exists(names.iface):
        raise ConflictError(f"an interface named {names.iface} already exists on the host")
    run = _UpRun(names, cfg, driver, provider, rb, resolve_endpoints(cfg), firewall)
    notices = list(cfg.notices)
    if not run.dns_servers:
        notices.append(dns.NO_DNS_WARNING)
    with rb:
        for step, action in UP_PLAN:
            log.debug("up %s: %s", names.name, step)
            action(run)
            if on_step is not None:
                on_step(step)
        rb.commit()
    return UpResult(names.name, names.netns, driver.name, names.iface, run.addresses,
                    [f"{e[0]}:{e[1]}" for e in run.endpoints if e], run.dns_servers, notices,
                    run.firewall)


# ---------------------------------------------------------------------------------------------
# down


@dataclass
class DownResult:
    name: str
    existed: bool
    processes: list[tuple[int, str]]  # still inside (now without network), or killed
    killed: bool
    problems: list[str] = field(default_factory=list)


def _find_wireguard_go(ifname: str) -> int | None:
    """A wireguard-go serving ifname, for a `down` whose state file is gone."""
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                argv = f.read().split(b"\0")
        except OSError:
            continue
        if argv and os.path.basename(argv[0]) == b"wireguard-go" and ifname.encode() in argv[1:]:
            return int(entry)
    return None


def _tunnel_handle(names: VaultNames, record: dict | None) -> TunnelHandle:
    if record and "tunnel" in record:
        return TunnelHandle.from_dict(record["tunnel"])
    pid = _find_wireguard_go(names.iface)
    if pid is not None:
        return TunnelHandle("userspace", names.iface, pid, f"/var/run/wireguard/{names.iface}.sock")
    return TunnelHandle("kernel", names.iface)


def _terminate(pids: list[int], grace: float = 3.0) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    alive = list(pids)
    while alive and time.monotonic() < deadline:
        alive = [p for p in alive if _alive(p)]
        if alive:
            time.sleep(0.05)
    for pid in alive:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ", 1)[1][0] != "Z"
    except (OSError, IndexError):
        return False


class _DownRun:
    """What the steps of one `down` share. Every step is safe to run again: a `down` killed
    half way is finished by the next one."""

    def __init__(self, names: VaultNames, kill: bool, force: bool):
        self.names, self.kill, self.force = names, kill, force
        self.record = state.read_state(names.name)
        self.exists = namespace.netns_exists(names.netns) or os.path.lexists(names.netns_path)
        self.provider = provider_for((self.record or {}).get("provider", "netns"))
        self.problems: list[str] = []
        self.inside: list[tuple[int, str]] = []

    def anything_left(self) -> bool:
        names = self.names
        return (self.record is not None or self.exists or os.path.exists(names.etc_dir)
                or bool(state.stale_temp_files(names.name)) or _sweep_tunnel(names))

    def processes(self) -> None:
        if not self.exists:
            return
        holder_pids = set(getattr(self.provider, "own_pids", lambda n: [])(self.names))
        if self.provider.kind == "docker" and not self.force:
            # Refuses (ConflictError) while containers are attached; before anything changes.
            getattr(self.provider, "check_detachable", lambda n: None)(self.names)
        pids = [p for p in namespace.pids_in_netns(self.names.netns) if p not in holder_pids]
        self.inside = [(p, namespace.process_name(p)) for p in pids]
        if self.kill and pids:
            _terminate(pids)

    def tunnel(self) -> None:
        names = self.names
        handle = _tunnel_handle(names, self.record)
        if self.exists:
            # Imported once here, the forked helpers below inherit it instead of each paying
            # ~100 ms to import it again.
            import pyroute2  # noqa: F401
        try:
            get_driver(handle.driver).destroy(handle, names.netns if self.exists else None)
        except Exception as exc:
            self.problems.append(f"stopping tunnel: {exc}")
        try:
            _sweep_tunnel(names)
        except Exception as exc:
            self.problems.append(f"stopping leftover tunnels: {exc}")
        if self.exists:
            try:
                run_in_netns(names.netns, _delete_links_inside)
            except Exception as exc:
                self.problems.append(f"clearing interfaces: {exc}")

    def namespace(self) -> None:
        if self.exists or self.provider.kind == "docker":  # a holder outlives /run/netns
            try:
                self.provider.destroy(self.names, self.force)
            except ConflictError:
                raise
            except Exception as exc:
                self.problems.append(f"removing namespace: {exc}")

    def files(self) -> None:
        dns.remove_dns_files(self.names.etc_dir)
        state.remove_state(self.names.name)
        state.remove_log(self.names.name)


DOWN_PLAN: tuple[tuple[str, Callable[[_DownRun], None]], ...] = (
    ("processes", _DownRun.processes),
    ("tunnel", _DownRun.tunnel),
    ("namespace", _DownRun.namespace),
    ("files", _DownRun.files),
)
DOWN_STEPS = tuple(step for step, _ in DOWN_PLAN)


def down(name: str, kill: bool = False, force: bool = False,
         on_step: StepHook | None = None) -> DownResult:
    """Take vault NAME down. Idempotent; works from another process's state or from none, and
    finds what a killed `up` or `reload` left (a wireguard-go serving vw-NAME, its socket, a
    temp state file).

    The tunnel goes first, so a process still inside is left with only `lo`: it loses its network,
    it never gets another one. Ctrl-C does not stop a `down` half way: it finishes, then raises
    InterruptedAfterChange. `on_step(name)` runs after each step of DOWN_STEPS.
    """
    names = VaultNames.of(name)
    with held_interrupts() as interrupts:
        result = _down(names, kill, force, on_step)
    if interrupts:
        raise InterruptedAfterChange(f"interrupted after vault {names.name} was down; it is down")
    return result


def _down(names: VaultNames, kill: bool, force: bool, on_step: StepHook | None) -> DownResult:
    try:
        return _down_locked(names, kill, force, on_step)
    finally:
        state.cleanup_dir()


def _down_locked(names: VaultNames, kill: bool, force: bool,
                 on_step: StepHook | None) -> DownResult:
    with state.vault_lock(names.name, remove_after=True):
        run = _DownRun(names, kill, force)
        if not run.anything_left():
            state.remove_log(names.name)
            return DownResult(names.name, False, [], False)
        for step, action in DOWN_PLAN:
            log.debug("down %s: %s", names.name, step)
            action(run)
            if on_step is not None:
                on_step(step)
        inside = run.inside
        if not kill:  # only what still runs: `--force` stopped the attached containers
            inside = [(pid, cmd) for pid, cmd in inside if _alive(pid)]
    if run.problems:
        raise SystemFailure(f"vault {names.name} is down, with problems: "
                            + "; ".join(run.problems))
    return DownResult(names.name, True, inside, kill)


# ---------------------------------------------------------------------------------------------
# status, ls, wait


def up_names() -> list[str]:
    """Vaults that are up: state files plus vault-* namespaces without one."""
    found = set(state.state_names())
    with contextlib.suppress(FileNotFoundError):
        found |= {e[len("vault-"):] for e in os.listdir(namespace.NETNS_DIR)
                  if e.startswith("vault-")}
    return sorted(found)


def status(name: str) -> dict[str, Any]:
    names = VaultNames.of(name)
    record = state.read_state(names.name)
    exists = namespace.netns_exists(names.netns)
    if record is None and not exists:
        raise NotFoundError(f"no vault named {name!r} is up")
    record = record or {}
    handle = _tunnel_handle(names, record)
    out: dict[str, Any] = {
        "name": names.name,
        "netns": names.netns,
        "up": exists,
        "provider": record.get("provider", "netns"),
        "driver": handle.driver,
        "interface": handle.ifname,
        "addresses": record.get("addresses", []),
        "dns": record.get("dns", []),
        "peers": [],
        "processes": [],
    }
    stats_by_key: dict[str, Any] = {}
    try:
        stats = get_driver(handle.driver).stats(handle, names.netns)
        stats_by_key = {p.public_key: p for p in stats.peers}
        out["listen_port"] = stats.listen_port
    except Exception as exc:
        out["tunnel_error"] = str(exc)
    for peer in record.get("peers", []):
        s = stats_by_key.get(peer["public_key"])
        out["peers"].append({
            "public_key": peer["public_key"],
            "endpoint": peer.get("endpoint"),
            "resolved": peer.get("resolved"),
            "last_handshake": s.last_handshake if s else None,
            "rx_bytes": s.rx_bytes if s else 0,
            "tx_bytes": s.tx_bytes if s else 0,
        })
    if exists:
        holder = set(getattr(provider_for(out["provider"]), "own_pids", lambda n: [])(names))
        out["processes"] = [{"pid": p, "command": namespace.process_name(p)}
                            for p in namespace.pids_in_netns(names.netns) if p not in holder]
    return out


def list_vaults() -> list[dict[str, Any]]:
    out = []
    for name in up_names():
        try:
            out.append(status(name))
        except Exception as exc:
            out.append({"name": name, "error": str(exc)})
    return out


def last_handshake(name: str) -> float | None:
    names = VaultNames.of(name)
    handle = _tunnel_handle(names, state.read_state(names.name))
    stats = get_driver(handle.driver).stats(handle, names.netns)
    times = [p.last_handshake for p in stats.peers if p.last_handshake]
    return max(times) if times else None


def _nudge(addr: str) -> None:
    """Send one datagram into the tunnel: WireGuard only handshakes when it has data to send."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.sendto(b"netns-vault handshake nudge", (addr, 9))  # the discard port


def _nudge_target(record: dict) -> str:
    if record.get("dns"):
        return record["dns"][0]
    return "192.0.2.1"  # TEST-NET-1: routed into the tunnel like everything else, harmless


def wait_for_handshake(name: str, timeout: float, poll: float = 0.2) -> float | None:
    """Block until the first handshake or the timeout; returns its time or None."""
    names = VaultNames.of(name)
    target = _nudge_target(state.read_state(names.name) or {})
    deadline = time.monotonic() + timeout
    next_nudge = 0.0
    while True:
        when = last_handshake(name)
        now = time.monotonic()
        if when is not None or now >= deadline:
            return when
        if now >= next_nudge:  # WireGuard retries on its own, but only while it has data
            with contextlib.suppress(Exception):
                run_in_netns(names.netns, _nudge, target)
            next_nudge = now + 5.0
        time.sleep(poll)


# ---------------------------------------------------------------------------------------------
# check


@dataclass
class Invariant:
    name: str
    ok: bool
    detail: str

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "ok": self.ok, "detail": self.detail}


def check(name: str) -> list[Invariant]:
    """Verify the vault's invariants on the live system."""
    names = VaultNames.of(name)
    record = state.read_state(names.name)
    if not namespace.netns_exists(names.netns):
        return [Invariant("namespace", False, f"{names.netns_path} does not exist")]
    results = [Invariant("namespace", True, names.netns_path)]
    if record is None:
        results.append(Invariant("state", False, "no state file: the vault was not made by "
                                 "`vault up`, or its state was lost"))
        record = {}
    handle = _tunnel_handle(names, record)
    seen = run_in_netns(names.netns, _inspect_inside, handle.ifname, record.get("firewall"))
    results += _check_inside(seen, handle.ifname, record)
    results.append(_check_tunnel_outside(names, handle))
    results.append(_check_dns(names, record))
    results.append(_check_endpoints(names, handle, record))
    return results


def _check_inside(seen: dict, ifname: str, record: dict) -> list[Invariant]:
    out = []
    links = {link["name"]: link for link in seen["links"]}
    ok = set(links) == {"lo", ifname}
    out.append(Invariant("interfaces", ok, f"interfaces: {', '.join(sorted(links))}"
                         + ("" if ok else f" (expected exactly lo and {ifname})")))
    defaults = [r for r in seen["routes"] if r["dst_len"] == 0]
    ok = len(defaults) == 1 and defaults[0]["dev"] == ifname and not defaults[0]["gateway"]
    out.append(Invariant("default-route", ok, "default dev " + ", ".join(
        str(r["dev"]) for r in defaults) if defaults else "no default route"))
    want = sorted(record.get("addresses", []))
    got = sorted(a["cidr"] for a in seen["addresses"]
                 if a["dev"] == ifname and a["family"] == socket.AF_INET)
    out.append(Invariant("addresses", bool(want) and want == got,
                         f"{ifname}: {', '.join(got) or 'none'}"
                         + ("" if want == got else f" (expected {', '.join(want)})")))
    tun = links.get(ifname)
    want_mtu = record.get("mtu")
    ok = tun is not None and (want_mtu is None or tun["mtu"] == want_mtu)
    out.append(Invariant("mtu", ok, f"mtu {tun['mtu'] if tun else '?'}"
                         + ("" if ok else f" (expected {want_mtu})")))
    v6_all_off = all(seen["sysctl"][c] in ("1", "absent") for c in IPV6_SYSCTLS)
    out.append(Invariant("ipv6-sysctl", v6_all_off, ", ".join(
        f"{c}.disable_ipv6={seen['sysctl'][c]}" for c in IPV6_SYSCTLS)))
    v6_addrs = [a["cidr"] for a in seen["addresses"] if a["family"] == socket.AF_INET6]
    out.append(Invariant("ipv6-addresses", not v6_addrs,
                         "no IPv6 addresses" if not v6_addrs else ", ".join(v6_addrs)))
    out += [Invariant(**item) for item in seen["firewall"]]
    return out


def _check_tunnel_outside(names: VaultNames, handle: TunnelHandle) -> Invariant:
    if handle.driver != "userspace":
        return Invariant("socket-outside", True,
                         "kernel WireGuard: the UDP socket belongs to the namespace it was made in")
    pid = handle.pid
    if not pid or not _alive(pid):
        return Invariant("socket-outside", False, f"wireguard-go (pid {pid}) is not running")
    try:
        wg_ns = os.stat(f"/proc/{pid}/ns/net").st_ino
    except OSError as exc:
        return Invariant("socket-outside", False, f"cannot inspect wireguard-go: {exc}")
    inside = namespace.netns_inode(names.netns)
    ok = wg_ns != inside
    return Invariant("socket-outside", ok, f"wireguard-go pid {pid} runs "
                     + ("outside the vault" if ok else "INSIDE the vault"))


def _check_dns(names: VaultNames, record: dict) -> Invariant:
    servers = dns.read_nameservers(names.etc_dir)
    want = record.get("dns", [])
    if servers is None:
        return Invariant("dns", False, f"{names.etc_dir}/resolv.conf is missing")
    ok = servers == want
    detail = (f"resolv.conf: {', '.join(servers)}" if servers
              else "no resolver (DNS fails closed)")
    return Invariant("dns", ok, detail + ("" if ok else f" (expected {', '.join(want)})"))


def _check_endpoints(names: VaultNames, handle: TunnelHandle, record: dict) -> Invariant:
    peers = record.get("peers", [])
    try:
        stats = get_driver(handle.driver).stats(handle, names.netns)
    except Exception as exc:
        return Invariant("endpoint", False, f"cannot read the tunnel: {exc}")
    live = {p.public_key: p.endpoint for p in stats.peers}
    problems, shown = [], []
    for peer in peers:
        resolved = peer.get("resolved")
        if peer["public_key"] not in live:
            problems.append(f"peer {peer['public_key'][:8]}… missing from the tunnel")
        elif resolved and live[peer["public_key"]] != resolved:
            problems.append(f"endpoint is {live[peer['public_key']]}, recorded {resolved}")
        shown.append(f"{peer.get('endpoint')} -> {resolved}")
    return Invariant("endpoint", not problems, "; ".join(problems) or ", ".join(shown))


# ---------------------------------------------------------------------------------------------
# reload: re-create only the tunnel


class _ReloadRun(_UpRun):
    """`reload` shares up's tunnel steps; it first removes the old tunnel, and records state."""

    def __init__(self, names: VaultNames, cfg: WgConfig, driver: TunnelDriver, rb: Rollback,
                 endpoints: list[tuple[str, int] | None], record: dict):
        super().__init__(names, cfg, driver, PlainNamespace(), rb, endpoints)
        self.record = record
        self.touched = False

    def old_tunnel(self) -> None:
        self.touched = True
        old = TunnelHandle.from_dict(self.record["tunnel"])
        get_driver(old.driver).destroy(old, self.names.netns)
        _sweep_tunnel(self.names)  # and any wireguard-go a killed `reload` left serving it
        run_in_netns(self.names.netns, _delete_links_inside)

    def tunnel(self) -> None:
        # The firewall names the tunnel interface, which keeps its name: no rule changes.
        self.rb.push(f"stop tunnel {self.names.iface}",
                     lambda: _remove_tunnel(self.names, self.driver.name, self.handle))
        self.handle = self.driver.create(self.names.iface, state.log_path(self.names.name))
        self.record["tunnel"] = self.handle.to_dict()  # at once, so `down` finds it on failure
        state.write_state(self.names.name, self.record)

    def dns(self) -> None:
        etc_dir = self.names.etc_dir
        if (self.dns_servers != self.record.get("dns")
                or dns.read_nameservers(etc_dir) != self.dns_servers[:3]):
            dns.remove_dns_files(etc_dir)
            dns.write_dns_files(etc_dir, self.dns_servers, list(self.cfg.dns_search))

    def state(self) -> None:
        self.record.update(_config_record(self.cfg, self.endpoints), reloaded_at=time.time())
        state.write_state(self.names.name, self.record)


RELOAD_PLAN: tuple[tuple[str, Callable[[_ReloadRun], None]], ...] = (
    ("old-tunnel", _ReloadRun.old_tunnel),
    ("tunnel", _ReloadRun.tunnel),
    ("move", _ReloadRun.move),
    ("wireguard", _ReloadRun.wireguard),
    ("addresses", _ReloadRun.addresses_),
    ("dns", _ReloadRun.dns),
    ("state", _ReloadRun.state),
)
RELOAD_STEPS = tuple(step for step, _ in RELOAD_PLAN)


def _is_up(names: VaultNames) -> dict | None:
    record = state.read_state(names.name)
    return record if record is not None and namespace.netns_exists(names.netns) else None


def reload_tunnel(name: str, cfg: WgConfig | None = None, driver_choice: str | None = None,
                  on_step: StepHook | None = None,
                  endpoints: list[tuple[str, int] | None] | None = None) -> UpResult:
    """Tear down and re-create only the tunnel of vault NAME, in the namespace it already has.

    The namespace (and so every process and container in it) is never touched: programs see the
    tunnel interface vanish and come back. In between they have only `lo`: nothing leaks.
    With no `cfg`, the config file recorded at `up` is read again. A failure (or Ctrl-C) once
    the old tunnel is gone removes the half-made new one: the vault is left without a tunnel
    (it fails closed) until the next `reload`. `on_step(name)` runs after each of RELOAD_STEPS.
    """
    from .config import load_config

    names = VaultNames.of(name)
    if _is_up(names) is None:  # before locking: a vault that is not up gets no lock file
        raise NotFoundError(f"no vault named {name!r} is up")
    rb = Rollback()
    run: _ReloadRun | None = None
    try:
        with state.vault_lock(names.name) as lock:
            record = _is_up(names)
            if record is None:
                lock.remove_lock = True
                raise NotFoundError(f"no vault named {name!r} is up")
            cfg = cfg or load_config(record["config_path"])
            old = TunnelHandle.from_dict(record["tunnel"])
            driver = select_driver(driver_choice) if driver_choice else get_driver(old.driver)
            if endpoints is None:  # `vault supervise` passes the addresses it knows work
                endpoints = resolve_endpoints(cfg)
            run = _ReloadRun(names, cfg, driver, rb, endpoints, record)
            with rb:
                for step, action in RELOAD_PLAN:
                    log.debug("reload %s: %s", names.name, step)
                    action(run)
                    if on_step is not None:
                        on_step(step)
                rb.commit()
    except KeyboardInterrupt:
        if rb.committed:
            raise InterruptedAfterChange(
                f"interrupted after the tunnel of vault {names.name} was re-created; "
                "it is up") from None
        if run is not None and run.touched:
            raise InterruptedAfterChange(
                f"interrupted; vault {names.name} is up without a tunnel (traffic inside fails "
                f"closed): run `vault reload {names.name}`") from None
        raise
    finally:
        state.cleanup_dir()
    return UpResult(names.name, names.netns, driver.name, names.iface, run.addresses,
                    [f"{e[0]}:{e[1]}" for e in run.endpoints if e], run.dns_servers,
                    list(cfg.notices))
