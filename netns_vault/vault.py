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
from .errors import ConflictError, NotFoundError, SystemFailure
from .firewall.walls import apply_vault, inspect_vault
from .names import VaultNames
from .nsexec import run_in_netns
from .rollback import Rollback
from .tunnel import TunnelDriver, TunnelHandle, get_driver, select_driver
from .tunnel.links import configure_tunnel_link, link_exists

log = logging.getLogger(__name__)

IPV6_SYSCTLS = ipv6.KEYS
DEFAULT_MTU = 1420
STATE_VERSION = 1

# Fault injection for the rollback tests: NETNS_VAULT_FAIL_AFTER=<step name> makes `up` fail
# right after that step, as if the next step had failed.
FAIL_AFTER_ENV = "NETNS_VAULT_FAIL_AFTER"
SLOW_STEP_ENV = "NETNS_VAULT_SLOW_STEP"

UP_STEPS = ("namespace", "inside", "tunnel", "move", "wireguard", "addresses", "dns", "state")


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
        rb.step(f"ip netns add {names.netns}", lambda: namespace.create_netns(names.netns),
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


# ---------------------------------------------------------------------------------------------
# Work done inside the vault's namespace (these run in a forked child; keep them JSON in/out).


def _prepare_inside(ifname: str) -> None:
    """Before the tunnel exists: IPv6 off, lo up, the firewall walls up."""
    from pyroute2 import IPRoute

    ipv6.disable()  # a kernel without IPv6: nothing to disable; the firewall walls it anyway
    with IPRoute() as ipr:
        (lo,) = ipr.link_lookup(ifname="lo")
        ipr.link("set", index=lo, state="up")
    apply_vault(ifname)


def _inspect_inside(ifname: str) -> dict[str, Any]:
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
    out["firewall"] = inspect_vault(ifname)
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


def _maybe_fail(step: str) -> None:
    if os.environ.get(FAIL_AFTER_ENV) == step:
        raise SystemFailure(f"injected failure after step {step!r}")
    if os.environ.get(SLOW_STEP_ENV) == step:
        time.sleep(30)  # a window for the tests to interrupt `up` mid-way


def up(name: str, cfg: WgConfig, driver_choice: str = "auto", provider_kind: str = "netns",
       progress: Callable[[str], None] | None = None) -> UpResult:
    """Create vault NAME from a parsed config. Returns once the vault is ready (not handshaken)."""
    names = VaultNames.of(name)
    say = progress or (lambda msg: None)
    driver = select_driver(driver_choice)
    provider = provider_for(provider_kind)
    try:
        with state.vault_lock(names.name) as lock:
            try:
                return _up_locked(names, cfg, driver, provider, say)
            except BaseException:
                # Nothing of this vault exists now (a conflict leaves the other vault's
                # state): leave no lock file behind either.
                if state.read_state(names.name) is None:
                    lock.remove_lock = True
                raise
    except BaseException:
        state.cleanup_dir()  # and /run/netns-vault itself, when nothing else is in it
        raise


def _up_locked(names: VaultNames, cfg: WgConfig, driver: TunnelDriver,
               provider: NamespaceProvider, say: Callable[[str], None]) -> UpResult:
    if namespace.netns_exists(names.netns) or os.path.lexists(names.netns_path):
        raise ConflictError(f"vault {names.name} already exists (namespace {names.netns})")
    if state.read_state(names.name) is not None:
        raise ConflictError(f"vault {names.name} already exists (state in {state.STATE_DIR})")
    if os.path.exists(names.etc_dir):
        raise ConflictError(f"{names.etc_dir} already exists; remove it or pick another name")
    if link_exists(names.iface):
        raise ConflictError(f"an interface named {names.iface} already exists on the host")
    endpoints = resolve_endpoints(cfg)
    addresses = [str(a) for a in cfg.ipv4_addresses]
    dns_servers = [str(a) for a in cfg.ipv4_dns]
    notices = list(cfg.notices)
    if not dns_servers:
        notices.append(dns.NO_DNS_WARNING)
    with Rollback() as rb:
        provider.create(names, rb, dns_servers, list(cfg.dns_search))
        say(f"namespace {names.netns} created")
        _maybe_fail("namespace")

        run_in_netns(names.netns, _prepare_inside, names.iface)
        say("IPv6 disabled, iptables and ip6tables walls up")
        _maybe_fail("inside")

        handle = driver.create(names.iface, state.log_path(names.name))
        rb.push(f"stop tunnel {names.iface}",
                lambda: driver.destroy(handle, names.netns))
        rb.push("remove wireguard log", lambda: state.remove_log(names.name))
        say(f"tunnel {names.iface} created on the host ({driver.name} driver)")
        _maybe_fail("tunnel")

        _move_link(names.iface, names.netns)
        say(f"tunnel moved into {names.netns}")
        _maybe_fail("move")

        driver.configure(handle, cfg, endpoints, names.netns)
        say("WireGuard configured")
        _maybe_fail("wireguard")

        run_in_netns(names.netns, configure_tunnel_link, names.iface, addresses,
                     cfg.mtu or DEFAULT_MTU)
        say("addresses and default route set")
        _maybe_fail("addresses")

        rb.step(f"write {names.etc_dir}",
                lambda: dns.write_dns_files(names.etc_dir, dns_servers, list(cfg.dns_search)),
                lambda: dns.remove_dns_files(names.etc_dir))
        _maybe_fail("dns")

        record = {
            "version": STATE_VERSION,
            "name": names.name,
            "netns": names.netns,
            "provider": provider.kind,
            "tunnel": handle.to_dict(),
            **_config_record(cfg, endpoints),
            "created_at": time.time(),
        }
        rb.step("write state", lambda: state.write_state(names.name, record),
                lambda: state.remove_state(names.name))
        _maybe_fail("state")
        rb.commit()
    return UpResult(names.name, names.netns, driver.name, names.iface, addresses,
                    [f"{e[0]}:{e[1]}" for e in endpoints if e], dns_servers, notices)


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


def down(name: str, kill: bool = False, force: bool = False) -> DownResult:
    """Take vault NAME down. Idempotent; works from another process's state or from none.

    The tunnel goes first, so a process still inside is left with only `lo`: it loses its network,
    it never gets another one.
    """
    names = VaultNames.of(name)
    with state.vault_lock(names.name, remove_after=True):
        record = state.read_state(names.name)
        exists = namespace.netns_exists(names.netns) or os.path.lexists(names.netns_path)
        if record is None and not exists and not os.path.exists(names.etc_dir):
            state.remove_log(names.name)
            return DownResult(names.name, False, [], False)
        provider = provider_for((record or {}).get("provider", "netns"))
        holder_pids = set(getattr(provider, "own_pids", lambda n: [])(names))
        problems: list[str] = []
        inside: list[tuple[int, str]] = []
        if exists:
            if provider.kind == "docker" and not force:
                # Refuses (ConflictError) while containers are attached; before anything changes.
                getattr(provider, "check_detachable", lambda n: None)(names)
            pids = [p for p in namespace.pids_in_netns(names.netns) if p not in holder_pids]
            inside = [(p, namespace.process_name(p)) for p in pids]
            if kill and pids:
                _terminate(pids)
        handle = _tunnel_handle(names, record)
        if exists:
            # Imported once here, the forked helpers below inherit it instead of each paying
            # ~100 ms to import it again.
            import pyroute2  # noqa: F401
        try:
            get_driver(handle.driver).destroy(handle, names.netns if exists else None)
        except Exception as exc:
            problems.append(f"stopping tunnel: {exc}")
        if exists:
            try:
                run_in_netns(names.netns, _delete_links_inside)
            except Exception as exc:
                problems.append(f"clearing interfaces: {exc}")
        if exists or provider.kind == "docker":  # a holder outlives /run/netns (reboot)
            try:
                provider.destroy(names, force)
            except ConflictError:
                raise
            except Exception as exc:
                problems.append(f"removing namespace: {exc}")
        if not kill:  # only what still runs: `--force` stopped the attached containers
            inside = [(pid, cmd) for pid, cmd in inside if _alive(pid)]
        dns.remove_dns_files(names.etc_dir)
        state.remove_state(names.name)
        state.remove_log(names.name)
    state.cleanup_dir()
    if problems:
        raise SystemFailure(f"vault {name} is down, with problems: " + "; ".join(problems))
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
    seen = run_in_netns(names.netns, _inspect_inside, handle.ifname)
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


def reload_tunnel(name: str, cfg: WgConfig | None = None, driver_choice: str | None = None,
                  progress: Callable[[str], None] | None = None) -> UpResult:
    """Tear down and re-create only the tunnel of vault NAME, in the namespace it already has.

    The namespace (and so every process and container in it) is never touched: programs see the
    tunnel interface vanish and come back. In between they have only `lo`: nothing leaks.
    With no `cfg`, the config file recorded at `up` is read again.
    """
    from .config import load_config

    names = VaultNames.of(name)
    say = progress or (lambda msg: None)
    with state.vault_lock(names.name):
        record = state.read_state(names.name)
        if record is None or not namespace.netns_exists(names.netns):
            raise NotFoundError(f"no vault named {name!r} is up")
        cfg = cfg or load_config(record["config_path"])
        old = TunnelHandle.from_dict(record["tunnel"])
        driver = select_driver(driver_choice) if driver_choice else get_driver(old.driver)
        endpoints = resolve_endpoints(cfg)
        addresses = [str(a) for a in cfg.ipv4_addresses]
        dns_servers = [str(a) for a in cfg.ipv4_dns]

        get_driver(old.driver).destroy(old, names.netns)
        run_in_netns(names.netns, _delete_links_inside)
        say("old tunnel removed (the vault has only lo now)")
        # The firewall names the tunnel interface, which keeps its name: no rule changes.
        handle = driver.create(names.iface, state.log_path(names.name))
        record["tunnel"] = handle.to_dict()  # recorded at once, so `down` finds it on failure
        state.write_state(names.name, record)
        _move_link(names.iface, names.netns)
        driver.configure(handle, cfg, endpoints, names.netns)
        run_in_netns(names.netns, configure_tunnel_link, names.iface, addresses,
                     cfg.mtu or DEFAULT_MTU)
        say(f"tunnel {names.iface} re-created ({driver.name} driver)")
        if dns_servers != record.get("dns"):
            dns.remove_dns_files(names.etc_dir)
            dns.write_dns_files(names.etc_dir, dns_servers, list(cfg.dns_search))
        record.update(_config_record(cfg, endpoints), reloaded_at=time.time())
        state.write_state(names.name, record)
    return UpResult(names.name, names.netns, driver.name, names.iface, addresses,
                    [f"{e[0]}:{e[1]}" for e in endpoints if e], dns_servers, list(cfg.notices))
