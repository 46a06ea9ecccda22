"""The closed test world: a fake internet, a fake user machine and a fake LAN, all in namespaces.

Used by the integration tests and by `vault demo`. Nothing here is linked to the root network
namespace: every veth is created from inside a world namespace with its peer placed directly in
another world namespace, and no address, route or rule is ever added in the root namespace, so no
packet can leave the machine.

    isp  (the internet)                     host (the user's machine; `vault` runs here)
      lo    198.51.100.1/32  WireGuard        eth0  192.0.2.2/24, default via 192.0.2.1
            198.51.100.53/32 DNS (dnsmasq)    eth1  198.18.0.1/24 ----+
            203.0.113.80/32  web (echo)                               |
      up0   192.0.2.1/24 -------------- veth -- eth0                  |  lan (a LAN peer)
      <id>s 100.96.0.1/24 wireguard-go server                         +- eth0 198.18.0.2/24,
                                                                          default via 198.18.0.1

Client i of the WireGuard server has tunnel address 100.96.0.(2+i)/32; `World.write_client_config`
writes its wg-quick file. The echo web server answers `client=ADDR` with the source address it sees.

Every helper that runs something in a namespace uses `nsenter --net=/run/netns/NAME` (a process)
or `nsexec.run_in_netns` (a fork), never `ip netns exec`.
"""

from __future__ import annotations

import atexit
import contextlib
import functools
import ipaddress
import logging
import os
import re
import secrets
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..errors import SystemFailure, UsageError
from ..nsexec import netns_path, run_in_netns
from ..rollback import Rollback

if TYPE_CHECKING:
    from ..tunnel.base import TunnelStats

log = logging.getLogger(__name__)

# --- the world's addresses ------------------------------------------------------------------
GATEWAY = "192.0.2.1"  # isp side of the host uplink
HOST_ADDR = "192.0.2.2"  # host eth0
UPLINK_PREFIXLEN = 24
ENDPOINT_ADDR = "198.51.100.1"  # WireGuard server endpoint (isp lo)
ENDPOINT_PORT = 51820
DNS_ADDR = "198.51.100.53"  # dnsmasq (isp lo)
WEB_ADDR = "203.0.113.80"  # echo web server (isp lo)
WEB_PORT = 80
WEB_URL = f"http://{WEB_ADDR}/"
TUNNEL_SERVER_ADDR = "100.96.0.1"
TUNNEL_NET = "100.96.0.0/24"
LAN_HOST_ADDR = "198.18.0.1"  # host eth1
LAN_PEER_ADDR = "198.18.0.2"  # lan eth0
LAN_PREFIXLEN = 24
WEB_NAME = "web.demo"  # -> WEB_ADDR
VPN_NAME = "vpn.demo"  # -> ENDPOINT_ADDR
HOST_UPLINK_IFACE = "eth0"
HOST_LAN_IFACE = "eth1"
ISP_UPLINK_IFACE = "up0"
LAN_IFACE = "eth0"
DEFAULT_CLIENTS = 4

WIREGUARD_GO = "wireguard-go"
DNSMASQ = "/usr/sbin/dnsmasq"
TCPDUMP = "tcpdump"
BUSYBOX = "busybox"
CURL = "curl"
NSENTER = "nsenter"
REQUIRED_TOOLS = (WIREGUARD_GO, DNSMASQ, TCPDUMP, BUSYBOX, CURL, NSENTER, "ip")

START_TIMEOUT = 5.0  # each daemon must be ready within this
STOP_TIMEOUT = 3.0

_PROXY_VARS = ("http_proxy", "https_proxy", "all_proxy", "no_proxy", "ftp_proxy")


def client_address(index: int) -> str:
    """Tunnel address of client `index` (0-based): 100.96.0.(2+index)."""
    if not 0 <= index <= 252:
        raise UsageError(f"client index {index} out of range")
    return f"100.96.0.{2 + index}"


def missing_tools() -> list[str]:
    """The external programs the world needs that are not installed."""
    return [t for t in REQUIRED_TOOLS if shutil.which(t) is None]


def clean_env(**extra: str) -> dict[str, str]:
    """os.environ without proxy settings (a proxy would send test traffic elsewhere) plus extra."""
    env = {k: v for k, v in os.environ.items() if k.lower() not in _PROXY_VARS}
    env.update(extra)
    return env


# --- running things in a namespace ----------------------------------------------------------
def nsenter_argv(ns: str, argv: Sequence[str]) -> list[str]:
    """argv prefixed with `nsenter --net=PATH` (ns is a name under /run/netns or a path)."""
    path = netns_path(ns)
    if not os.path.exists(path):
        raise SystemFailure(f"network namespace {path} does not exist")
    return [NSENTER, f"--net={path}", "--", *argv]


def ns_run(ns: str, argv: Sequence[str], **kwargs: Any) -> subprocess.CompletedProcess:
    """subprocess.run(argv) inside namespace `ns` (name or path).

    Defaults: text=True, capture_output=True (unless stdout/stderr is given), timeout=30,
    env without proxy variables. Other keyword arguments go to subprocess.run.
    """
    kwargs.setdefault("text", True)
    if "stdout" not in kwargs and "stderr" not in kwargs:
        kwargs.setdefault("capture_output", True)
    kwargs.setdefault("timeout", 30)
    kwargs.setdefault("env", clean_env())
    kwargs.setdefault("stdin", subprocess.DEVNULL)
    return subprocess.run(nsenter_argv(ns, argv), **kwargs)


def ns_popen(ns: str, argv: Sequence[str], **kwargs: Any) -> subprocess.Popen:
    """subprocess.Popen(argv) inside namespace `ns`; the returned pid is the program's own
    (nsenter execs it). Defaults: stdin=DEVNULL, start_new_session=True, env without proxies."""
    kwargs.setdefault("stdin", subprocess.DEVNULL)
    kwargs.setdefault("start_new_session", True)
    kwargs.setdefault("env", clean_env())
    return subprocess.Popen(nsenter_argv(ns, argv), **kwargs)


def _ip(ns: str, *args: str) -> str:
    res = ns_run(ns, ["ip", *args], timeout=10)
    if res.returncode != 0:
        raise SystemFailure(f"ip {' '.join(args)} in {ns}: {res.stderr.strip()}")
    return res.stdout


def _write_proc_sys(values: dict[str, str]) -> None:
    # runs in a forked child inside the namespace: /proc/sys/net is the caller's netns
    for key, value in values.items():
        with open("/proc/sys/" + key.replace(".", "/"), "w") as fh:
            fh.write(value)


def stop_process(proc: subprocess.Popen | None, what: str, sig: int = signal.SIGTERM,
                 timeout: float = STOP_TIMEOUT) -> None:
    """Signal a process we started, wait, SIGKILL if it lingers. Idempotent."""
    if proc is None:
        return
    if proc.poll() is None:
        log.debug("stopping %s (pid %d)", what, proc.pid)
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(sig)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            log.warning("%s (pid %d) ignored signal %d; killing it", what, proc.pid, sig)
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            proc.wait(timeout)
    else:
        proc.wait()


def _wait_until(cond: Callable[[], bool], timeout: float, what: str,
                alive: Callable[[], bool] | None = None,
                details: Callable[[], str] | None = None) -> None:
    deadline = time.monotonic() + timeout
    delay = 0.005
    while not cond():
        if alive is not None and not alive():
            extra = f": {details()}" if details else ""
            raise SystemFailure(f"{what}: process exited{extra}")
        if time.monotonic() >= deadline:
            extra = f": {details()}" if details else ""
            raise SystemFailure(f"{what}: not ready after {timeout:g}s{extra}")
        time.sleep(delay)
        delay = min(delay * 2, 0.05)


def _proc_hex_addr(addr: str, port: int) -> str:
    """The /proc/net/{tcp,udp} spelling of an IPv4 address and port (host byte order)."""
    packed = socket.inet_aton(addr)
    return f"{struct.unpack('<I', packed)[0]:08X}:{port:04X}"


def _pid_listens(pid: int, table: str, addr: str, port: int) -> bool:
    """True if the netns of `pid` has a socket bound at addr:port in /proc/PID/net/TABLE."""
    want = _proc_hex_addr(addr, port)
    any_addr = _proc_hex_addr("0.0.0.0", port)
    try:
        with open(f"/proc/{pid}/net/{table}") as fh:
            next(fh, None)
            for line in fh:
                parts = line.split()
                if len(parts) < 4 or parts[1] not in (want, any_addr):
                    continue
                if table.startswith("tcp") and parts[3] != "0A":  # LISTEN
                    continue
                return True
    except OSError:
        return False
    return False


def _pid_has_udp_port(pid: int, port: int) -> bool:
    suffix = f":{port:04X}"
    for table in ("udp", "udp6"):
        try:
            with open(f"/proc/{pid}/net/{table}") as fh:
                next(fh, None)
                if any(line.split()[1].endswith(suffix) for line in fh if line.strip()):
                    return True
        except (OSError, IndexError):
            continue
    return False


def _pids_in_netns_inode(inode: int) -> list[int]:
    me = os.getpid()
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit() and int(entry) != me:
            with contextlib.suppress(OSError):
                if os.stat(f"/proc/{entry}/ns/net").st_ino == inode:
                    found.append(int(entry))
    return found


def _tail(path: str, limit: int = 800) -> str:
    try:
        with open(path, "rb") as fh:
            fh.seek(0, os.SEEK_END)
            size = fh.tell()
            fh.seek(max(0, size - limit))
            return fh.read().decode("utf-8", "replace").strip()
    except OSError:
        return ""


# --- the world ----------------------------------------------------------------------------
@dataclass(frozen=True)
class ClientKeys:
    index: int
    private_key: str = field(repr=False)
    public_key: str
    address: str


class World:
    """The closed test world. `with World() as w:` or `w.start()` ... `w.stop()`.

    Namespaces `<id>-isp`, `<id>-host`, `<id>-lan` with `<id>` = prefix + 4 random hex digits,
    so several worlds can coexist. `stop()` is idempotent and removes every namespace, process
    and file the world made.
    """

    GATEWAY = GATEWAY
    HOST_ADDR = HOST_ADDR
    ENDPOINT_ADDR = ENDPOINT_ADDR
    ENDPOINT_PORT = ENDPOINT_PORT
    DNS_ADDR = DNS_ADDR
    WEB_ADDR = WEB_ADDR
    WEB_PORT = WEB_PORT
    WEB_URL = WEB_URL
    WEB_NAME = WEB_NAME
    VPN_NAME = VPN_NAME
    TUNNEL_SERVER_ADDR = TUNNEL_SERVER_ADDR
    TUNNEL_NET = TUNNEL_NET
    LAN_HOST_ADDR = LAN_HOST_ADDR
    LAN_PEER_ADDR = LAN_PEER_ADDR
    HOST_UPLINK_IFACE = HOST_UPLINK_IFACE
    HOST_LAN_IFACE = HOST_LAN_IFACE
    client_address = staticmethod(client_address)

    def __init__(self, prefix: str = "nvt", clients: int = DEFAULT_CLIENTS, *,
                 ipv6: bool = False, tmp_root: str | None = None):
        if not re.fullmatch(r"[a-z][a-z0-9]{0,7}", prefix):
            raise UsageError(f"world prefix {prefix!r}: use 1-8 lowercase letters/digits")
        if not 1 <= clients <= 200:
            raise UsageError(f"world clients must be in [1, 200], got {clients}")
        self.id = prefix + secrets.token_hex(2)
        self.isp_ns = f"{self.id}-isp"
        self.host_ns = f"{self.id}-host"
        self.lan_ns = f"{self.id}-lan"
        self.server_iface = f"{self.id}s"  # global: it names the UAPI socket
        self.n_clients = clients
        self.ipv6 = ipv6
        self._tmp_root = tmp_root
        self.tmpdir: str | None = None
        self.server_private_key: str | None = None
        self.server_public_key: str | None = None
        self.clients: list[ClientKeys] = []
        self._server_proc: subprocess.Popen | None = None
        self._dns_proc: subprocess.Popen | None = None
        self._web_proc: subprocess.Popen | None = None
        self._rb: Rollback | None = None
        self._owner_pid: int | None = None
        self._ns_inodes: dict[str, int] = {}
        self._started = False

    def __repr__(self) -> str:
        return f"World({self.id!r}, started={self._started})"

    # -- paths --
    @property
    def uapi_socket(self) -> str:
        from ..tunnel.uapi import socket_path_for

        return socket_path_for(self.server_iface)

    def _file(self, name: str) -> str:
        if self.tmpdir is None:
            raise UsageError("the world is not started")
        return os.path.join(self.tmpdir, name)

    @property
    def dns_log(self) -> str:
        return self._file("dnsmasq.log")

    @property
    def web_log(self) -> str:
        return self._file("web.jsonl")

    @property
    def server_log(self) -> str:
        return self._file("wireguard-go.log")

    @property
    def namespaces(self) -> tuple[str, str, str]:
        return (self.isp_ns, self.host_ns, self.lan_ns)

    @property
    def started(self) -> bool:
        return self._started

    # -- lifecycle --
    def __enter__(self) -> World:
        self.start()
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self.stop()

    def start(self) -> World:
        if self._started:
            return self
        missing = missing_tools()
        if missing:
            raise SystemFailure(f"the test world needs: {', '.join(missing)}")

        t0 = time.monotonic()
        rb = Rollback()
        self._rb = rb
        self._owner_pid = os.getpid()
        try:
            self._build(rb)
        except BaseException:
            self._rb = None
            rb.undo_all()
            raise
        self._started = True
        atexit.register(self.stop)
        log.info("test world %s up in %.2fs (tmp %s)", self.id, time.monotonic() - t0,
                 self.tmpdir)
        return self

    def _build(self, rb: Rollback) -> None:
        from ..keys import generate_private_key, public_key

        self.tmpdir = rb.step("temp dir", lambda: tempfile.mkdtemp(
            prefix=f"netns-vault-{self.id}-", dir=self._tmp_root), self._remove_tmpdir)
        for ns in self.namespaces:
            rb.step(f"netns {ns}", functools.partial(self._create_ns, ns),
                    functools.partial(self._remove_ns, ns))
        self._setup_network()

        self.server_private_key = generate_private_key()
        self.server_public_key = public_key(self.server_private_key)
        self.clients = []
        for i in range(self.n_clients):
            priv = generate_private_key()
            self.clients.append(ClientKeys(i, priv, public_key(priv), client_address(i)))

        rb.push("wireguard-go server", self._stop_server)
        rb.push("dnsmasq", lambda: self._stop_attr("_dns_proc", "dnsmasq"))
        rb.push("web server", lambda: self._stop_attr("_web_proc", "web server"))
        # start all three, then wait for each: the waits overlap
        self._spawn_server()
        self._spawn_dnsmasq()
        self._spawn_web()
        self._finish_server()
        self._wait_dnsmasq()
        self._wait_web()

    def stop(self) -> list[str]:
        """Tear everything down; idempotent. Returns cleanup errors (also logged)."""
        if self._rb is None or self._owner_pid != os.getpid():
            return []  # never started, already stopped, or a forked child
        rb, self._rb = self._rb, None
        errors = rb.undo_all()
        self._started = False
        with contextlib.suppress(Exception):
            atexit.unregister(self.stop)
        log.info("test world %s stopped%s", self.id,
                 f" with {len(errors)} cleanup errors" if errors else "")
        return errors

    def _remove_tmpdir(self) -> None:
        if self.tmpdir:
            shutil.rmtree(self.tmpdir, ignore_errors=True)

    def _create_ns(self, ns: str) -> None:
        from ..namespace import create_netns

        create_netns(ns)
        # Remember the namespace itself: if /run/netns gets over-mounted by someone else, the
        # path no longer leads to it, but its processes can still be found by inode.
        self._ns_inodes[ns] = os.stat(netns_path(ns)).st_ino

    def _remove_ns(self, ns: str) -> None:
        from ..namespace import process_name, remove_netns

        # Anything still inside was started in the world (by us or a test): end it by pid.
        inode = self._ns_inodes.pop(ns, None)
        for pid in _pids_in_netns_inode(inode) if inode is not None else []:
            log.warning("process %d (%s) still in %s; killing it", pid, process_name(pid), ns)
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        remove_netns(ns)
        path = netns_path(ns)
        if os.path.lexists(path):
            raise SystemFailure(f"{path} could not be removed (is /run/netns mounted over?)")

    # -- network --
    def _setup_network(self) -> None:
        isp, host, lan = self.isp_ns, self.host_ns, self.lan_ns
        sysctls: dict[str, str] = {}
        if not self.ipv6:  # no link-local chatter (DAD, RS, MLD) in captures
            sysctls = {"net.ipv6.conf.all.disable_ipv6": "1",
                       "net.ipv6.conf.default.disable_ipv6": "1"}
        for ns in self.namespaces:
            if sysctls:
                run_in_netns(ns, _write_proc_sys, sysctls)
            _ip(ns, "link", "set", "lo", "up")
        run_in_netns(isp, _write_proc_sys, {"net.ipv4.ip_forward": "1"})

        # Veths are born in a world namespace with the peer put straight into another one.
        _ip(isp, "link", "add", ISP_UPLINK_IFACE, "type", "veth",
            "peer", "name", HOST_UPLINK_IFACE, "netns", host)
        _ip(lan, "link", "add", LAN_IFACE, "type", "veth",
            "peer", "name", HOST_LAN_IFACE, "netns", host)
        for ns, iface in ((host, HOST_UPLINK_IFACE), (host, HOST_LAN_IFACE)):
            _ip(ns, "link", "show", "dev", iface)  # raises if the peer did not land in host

        for addr in (f"{ENDPOINT_ADDR}/32", f"{DNS_ADDR}/32", f"{WEB_ADDR}/32"):
            _ip(isp, "addr", "add", addr, "dev", "lo")
        _ip(isp, "addr", "add", f"{GATEWAY}/{UPLINK_PREFIXLEN}", "dev", ISP_UPLINK_IFACE)
        _ip(isp, "link", "set", ISP_UPLINK_IFACE, "up")

        _ip(host, "addr", "add", f"{HOST_ADDR}/{UPLINK_PREFIXLEN}", "dev", HOST_UPLINK_IFACE)
        _ip(host, "link", "set", HOST_UPLINK_IFACE, "up")
        _ip(host, "addr", "add", f"{LAN_HOST_ADDR}/{LAN_PREFIXLEN}", "dev", HOST_LAN_IFACE)
        _ip(host, "link", "set", HOST_LAN_IFACE, "up")
        _ip(host, "route", "add", "default", "via", GATEWAY, "dev", HOST_UPLINK_IFACE)

        _ip(lan, "addr", "add", f"{LAN_PEER_ADDR}/{LAN_PREFIXLEN}", "dev", LAN_IFACE)
        _ip(lan, "link", "set", LAN_IFACE, "up")
        _ip(lan, "route", "add", "default", "via", LAN_HOST_ADDR, "dev", LAN_IFACE)

        # The VPN provider's exit does not route its clients back into the customer's own access
        # network (in this small world the ISP and the VPN provider share a box): so "the host's
        # gateway and addresses are unreachable from a vault" is a property tests can check.
        for chain, dst in (("INPUT", f"{GATEWAY}/32"),
                           ("FORWARD", f"{GATEWAY}/{UPLINK_PREFIXLEN}"),
                           ("FORWARD", f"{LAN_HOST_ADDR}/{LAN_PREFIXLEN}")):
            res = ns_run(isp, ["iptables-legacy", "-w", "-A", chain, "-s", TUNNEL_NET, "-d", dst,
                               "-j", "DROP"])
            if res.returncode != 0:
                raise SystemFailure(f"isp firewall: {res.stderr.strip()}")

    # -- WireGuard server --
    def _spawn_server(self) -> None:
        if self._server_proc is not None and self._server_proc.poll() is None:
            raise UsageError("the WireGuard server is already running")
        if os.path.exists(self.uapi_socket):  # a stale socket from a killed run
            os.unlink(self.uapi_socket)
        with open(self.server_log, "ab") as logf:
            self._server_proc = ns_popen(
                self.isp_ns, [WIREGUARD_GO, self.server_iface],
                stdout=logf, stderr=subprocess.STDOUT,
                env=clean_env(WG_PROCESS_FOREGROUND="1", LOG_LEVEL="verbose"))
        log.debug("wireguard-go %s started, pid %d", self.server_iface, self._server_proc.pid)

    def _finish_server(self) -> None:
        from ..tunnel.uapi import UapiClient, UapiPeer, build_set_request

        proc = self._server_proc
        assert proc is not None and self.server_private_key is not None
        alive = lambda: proc.poll() is None  # noqa: E731
        client = UapiClient(self.uapi_socket)
        try:
            client.wait_ready(START_TIMEOUT, alive=alive)
        except SystemFailure as exc:
            raise SystemFailure(f"{exc}: {_tail(self.server_log)}") from None
        peers = [UapiPeer(public_key=c.public_key, allowed_ips=[f"{c.address}/32"])
                 for c in self.clients]
        client.set(build_set_request(self.server_private_key, ENDPOINT_PORT, None, peers))
        _ip(self.isp_ns, "addr", "add", f"{TUNNEL_SERVER_ADDR}/24", "dev", self.server_iface)
        _ip(self.isp_ns, "link", "set", self.server_iface, "up")
        # wireguard-go binds its UDP port when it sees the link go up
        _wait_until(lambda: _pid_has_udp_port(proc.pid, ENDPOINT_PORT), START_TIMEOUT,
                    "wireguard-go server UDP port", alive=alive,
                    details=lambda: _tail(self.server_log))

    def _stop_server(self) -> None:
        proc, self._server_proc = self._server_proc, None
        stop_process(proc, "wireguard-go server")
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.uapi_socket)

    def _stop_attr(self, attr: str, what: str) -> None:
        proc = getattr(self, attr)
        setattr(self, attr, None)
        stop_process(proc, what)

    def server_down(self) -> None:
        """Stop the WireGuard server (its interface and UDP port go away). Idempotent."""
        self._require_started()
        self._stop_server()
        log.info("test world %s: WireGuard server down", self.id)

    def server_up(self) -> None:
        """Start the WireGuard server again with the same keys and peers. Idempotent."""
        self._require_started()
        if self.server_running:
            return
        try:
            self._spawn_server()
            self._finish_server()
        except BaseException:
            self._stop_server()
            raise
        log.info("test world %s: WireGuard server up", self.id)

    @property
    def server_running(self) -> bool:
        return self._server_proc is not None and self._server_proc.poll() is None

    @property
    def server_pid(self) -> int | None:
        return self._server_proc.pid if self.server_running else None  # type: ignore[union-attr]

    def server_stats(self) -> TunnelStats:
        """The server's view (tunnel.base.TunnelStats): a peer per client, with handshakes."""
        from ..tunnel.uapi import UapiClient

        self._require_started()
        return UapiClient(self.uapi_socket).get()

    def server_handshake(self, index: int = 0) -> float | None:
        """Time of the server's last handshake with client `index`, or None."""
        want = self.clients[index].public_key
        for peer in self.server_stats().peers:
            if peer.public_key == want:
                return peer.last_handshake
        return None

    # -- DNS --
    def _spawn_dnsmasq(self) -> None:
        argv = [
            DNSMASQ, "--keep-in-foreground", "--conf-file=/dev/null", "--no-resolv",
            "--no-hosts", "--no-poll", "--bind-interfaces", f"--listen-address={DNS_ADDR}",
            "--port=53", f"--address=/{WEB_NAME}/{WEB_ADDR}",
            f"--address=/{VPN_NAME}/{ENDPOINT_ADDR}", "--log-queries",
            f"--log-facility={self.dns_log}", f"--pid-file={self._file('dnsmasq.pid')}",
            "--user=root", "--group=root",
        ]
        with open(self._file("dnsmasq.stderr"), "ab") as errf:
            self._dns_proc = ns_popen(self.isp_ns, argv, stdout=errf, stderr=subprocess.STDOUT)

    def _wait_dnsmasq(self) -> None:
        proc = self._dns_proc
        assert proc is not None
        _wait_until(lambda: _pid_listens(proc.pid, "udp", DNS_ADDR, 53), START_TIMEOUT,
                    "dnsmasq", alive=lambda: proc.poll() is None,
                    details=lambda: _tail(self._file("dnsmasq.stderr")) or _tail(self.dns_log))

    def dns_queries(self) -> list[tuple[str, str]]:
        """(client address, queried name) for every query dnsmasq logged, oldest first."""
        return [(client, name) for _qtype, name, client in self.dns_query_log()]

    def dns_query_log(self) -> list[tuple[str, str, str]]:
        """(query type, name, client address) for every query dnsmasq logged."""
        try:
            with open(self.dns_log, encoding="utf-8", errors="replace") as fh:
                text = fh.read()
        except FileNotFoundError:
            return []
        return [(m.group(1), m.group(2), m.group(3))
                for m in re.finditer(r"query\[(\w+)\] (\S+) from (\S+)", text)]

    def wait_dns_query(self, name: str, timeout: float = 2.0) -> list[tuple[str, str]]:
        """Wait until dnsmasq logged a query for `name`; returns dns_queries() (maybe without)."""
        deadline = time.monotonic() + timeout
        while True:
            queries = self.dns_queries()
            if any(q == name for _c, q in queries) or time.monotonic() >= deadline:
                return queries
            time.sleep(0.02)

    # -- web --
    def _spawn_web(self) -> None:
        argv = [sys.executable, "-m", "netns_vault.sandbox.web", "--bind", WEB_ADDR,
                "--port", str(WEB_PORT), "--log", self.web_log]
        with open(self._file("web.stderr"), "ab") as errf:
            self._web_proc = ns_popen(self.isp_ns, argv, stdout=errf, stderr=subprocess.STDOUT)

    def _wait_web(self) -> None:
        proc = self._web_proc
        assert proc is not None
        _wait_until(lambda: _pid_listens(proc.pid, "tcp", WEB_ADDR, WEB_PORT), START_TIMEOUT,
                    "web server", alive=lambda: proc.poll() is None,
                    details=lambda: _tail(self._file("web.stderr")))

    def web_requests(self) -> list[tuple[str, str]]:
        """(client address, path) of every request the echo web server answered."""
        import json

        out = []
        try:
            with open(self.web_log, encoding="utf-8") as fh:
                for line in fh:
                    with contextlib.suppress(ValueError, KeyError):
                        rec = json.loads(line)
                        out.append((rec["client"], rec["path"]))
        except FileNotFoundError:
            pass
        return out

    def web_clients(self) -> list[str]:
        return [c for c, _p in self.web_requests()]

    # -- client configs --
    def client_config_text(self, index: int = 0, dns: bool = True,
                           endpoint_host: str | None = None) -> str:
        self._require_started()
        c = self.clients[index]
        lines = ["[Interface]", f"PrivateKey = {c.private_key}", f"Address = {c.address}/32"]
        if dns:
            lines.append(f"DNS = {DNS_ADDR}")
        host = endpoint_host or ENDPOINT_ADDR
        if ":" in host and not host.startswith("["):
            host = f"[{host}]"
        lines += ["", "[Peer]", f"PublicKey = {self.server_public_key}",
                  f"Endpoint = {host}:{ENDPOINT_PORT}", "AllowedIPs = 0.0.0.0/0, ::/0",
                  "PersistentKeepalive = 0", ""]
        return "\n".join(lines)

    def write_client_config(self, path: str, index: int = 0, dns: bool = True,
                            endpoint_host: str | None = None) -> str:
        """Write client `index`'s wg-quick config to `path` (mode 0600); returns `path`."""
        text = self.client_config_text(index, dns=dns, endpoint_host=endpoint_host)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            os.fchmod(fh.fileno(), 0o600)
            fh.write(text)
        return path

    # -- running things --
    def ns_run(self, ns: str, argv: Sequence[str], **kwargs: Any) -> subprocess.CompletedProcess:
        return ns_run(ns, argv, **kwargs)

    def host_run(self, argv: Sequence[str], **kwargs: Any) -> subprocess.CompletedProcess:
        return ns_run(self.host_ns, argv, **kwargs)

    def isp_run(self, argv: Sequence[str], **kwargs: Any) -> subprocess.CompletedProcess:
        return ns_run(self.isp_ns, argv, **kwargs)

    def lan_run(self, argv: Sequence[str], **kwargs: Any) -> subprocess.CompletedProcess:
        return ns_run(self.lan_ns, argv, **kwargs)

    def host_popen(self, argv: Sequence[str], **kwargs: Any) -> subprocess.Popen:
        return ns_popen(self.host_ns, argv, **kwargs)

    def capture(self, ns: str | None = None, iface: str = HOST_UPLINK_IFACE,
                bpf_filter: str = "") -> Capture:
        """A Capture (default: host eth0) writing into the world's temp dir."""
        self._require_started()
        return Capture(ns or self.host_ns, iface, bpf_filter, directory=self.tmpdir)

    def _require_started(self) -> None:
        if self._rb is None:
            raise UsageError("the world is not started")


# --- probes -------------------------------------------------------------------------------
@dataclass
class ProbeResult:
    ok: bool
    output: str = ""
    error: str = ""
    elapsed: float = 0.0

    def __bool__(self) -> bool:
        return self.ok


def http_probe(ns: str, url: str, timeout: float = 3.0) -> ProbeResult:
    """GET `url` with curl inside `ns`; ok only for a 2xx answer."""
    t0 = time.monotonic()
    argv = [CURL, "-sS", "--fail", "--noproxy", "*", "--max-time", f"{timeout:g}",
            "--connect-timeout", f"{timeout:g}", url]
    try:
        res = ns_run(ns, argv, timeout=timeout + 5)
    except subprocess.TimeoutExpired:
        return ProbeResult(False, error="curl hung", elapsed=time.monotonic() - t0)
    elapsed = time.monotonic() - t0
    if res.returncode != 0:
        log.debug("GET %s in %s failed: %s", url, ns, res.stderr.strip())
        return ProbeResult(False, res.stdout, res.stderr.strip() or f"curl exit {res.returncode}",
                           elapsed)
    return ProbeResult(True, res.stdout, "", elapsed)


def http_get(ns: str, url: str = WEB_URL, timeout: float = 3.0) -> str | None:
    """The body of GET `url` fetched from inside `ns` (name or path), or None on any failure."""
    res = http_probe(ns, url, timeout)
    return res.output if res.ok else None


def _dns_query_packet(qid: int, name: str, qtype: int) -> bytes:
    labels = [lbl for lbl in name.rstrip(".").split(".") if lbl]
    qname = b"".join(bytes([len(lbl)]) + lbl.encode("ascii") for lbl in labels) + b"\0"
    return struct.pack("!HHHHHH", qid, 0x0100, 1, 0, 0, 0) + qname + struct.pack("!HH", qtype, 1)


def _skip_name(buf: bytes, off: int) -> int:
    while True:
        n = buf[off]
        if n == 0:
            return off + 1
        if n & 0xC0 == 0xC0:
            return off + 2
        off += 1 + n


def _dns_parse_answers(buf: bytes, qid: int, qtype: int) -> tuple[int, list[str]]:
    rid, flags, qd, an, _ns, _ar = struct.unpack("!HHHHHH", buf[:12])
    if rid != qid or not flags & 0x8000:
        raise ValueError("not our answer")
    off = 12
    for _ in range(qd):
        off = _skip_name(buf, off) + 4
    found = []
    for _ in range(an):
        off = _skip_name(buf, off)
        rtype, _rclass, _ttl, rdlen = struct.unpack("!HHIH", buf[off:off + 10])
        off += 10
        rdata = buf[off:off + rdlen]
        off += rdlen
        if rtype == qtype == 1 and rdlen == 4:
            found.append(socket.inet_ntop(socket.AF_INET, rdata))
        elif rtype == qtype == 28 and rdlen == 16:
            found.append(socket.inet_ntop(socket.AF_INET6, rdata))
    return flags & 0xF, found


def _dns_lookup_here(name: str, server: str, timeout: float, qtype: int) -> dict:
    qid = secrets.randbelow(65536)
    family = socket.AF_INET6 if ":" in server else socket.AF_INET
    with socket.socket(family, socket.SOCK_DGRAM) as s:
        s.settimeout(timeout / 2)
        deadline = time.monotonic() + timeout
        packet = _dns_query_packet(qid, name, qtype)
        for _attempt in range(2):
            try:
                s.sendto(packet, (server, 53))
            except OSError as exc:
                return {"error": f"send: {exc.strerror or exc}"}
            while time.monotonic() < deadline:
                try:
                    data, _peer = s.recvfrom(4096)
                except TimeoutError:
                    break
                except OSError as exc:
                    return {"error": f"recv: {exc.strerror or exc}"}
                try:
                    rcode, answers = _dns_parse_answers(data, qid, qtype)
                except (ValueError, struct.error, IndexError):
                    continue
                return {"rcode": rcode, "answers": answers}
    return {"error": "timeout"}


def dns_resolve(ns: str, name: str, server: str = DNS_ADDR, timeout: float = 2.0,
                qtype: str = "A") -> ProbeResult:
    """Ask `server` for `name` from inside `ns` (a UDP query from a forked child).

    ok when an address came back; output is the addresses, one a line."""
    t0 = time.monotonic()
    code = {"A": 1, "AAAA": 28}[qtype]
    res = run_in_netns(ns, _dns_lookup_here, name, server, timeout, code)
    elapsed = time.monotonic() - t0
    if "error" in res:
        return ProbeResult(False, error=res["error"], elapsed=elapsed)
    if not res["answers"]:
        return ProbeResult(False, error=f"rcode {res['rcode']}, no answer", elapsed=elapsed)
    return ProbeResult(True, "\n".join(res["answers"]), "", elapsed)


def dns_lookup(ns: str, name: str, server: str = DNS_ADDR, timeout: float = 2.0) -> str | None:
    """The first IPv4 address `server` gives for `name`, asked from inside `ns`; None on failure."""
    res = dns_resolve(ns, name, server, timeout)
    return res.output.splitlines()[0] if res.ok else None


def ping(ns: str, addr: str, timeout: float = 2.0) -> bool:
    """One ICMP echo from inside `ns`; True if it was answered within `timeout`."""
    wait = max(1, int(round(timeout)))
    try:
        res = ns_run(ns, [BUSYBOX, "ping", "-c", "1", "-W", str(wait), addr], timeout=wait + 5)
    except subprocess.TimeoutExpired:
        return False
    return res.returncode == 0


# --- packet capture -----------------------------------------------------------------------
@dataclass(frozen=True)
class Packet:
    """One captured frame, reduced to what leak checks need."""

    family: str  # "ipv4" | "ipv6" | "arp" | "other"
    proto: str  # "tcp" | "udp" | "icmp" | "icmp6" | "arp" | "ip:N" | "ethertype:0xNNNN"
    src: str | None = None
    dst: str | None = None
    sport: int | None = None
    dport: int | None = None
    length: int = 0
    ts: float = 0.0  # capture time (epoch seconds)

    @property
    def is_arp(self) -> bool:
        return self.family == "arp"

    def involves(self, addr: str, port: int | None = None) -> bool:
        if self.src == addr and (port is None or self.sport == port):
            return True
        return self.dst == addr and (port is None or self.dport == port)

    def __str__(self) -> str:
        s = f"{self.src}:{self.sport}" if self.sport is not None else str(self.src)
        d = f"{self.dst}:{self.dport}" if self.dport is not None else str(self.dst)
        return f"{self.proto} {s} > {d} len {self.length}"


_LINKTYPE_ETHERNET = 1
_LINKTYPE_RAW = (101, 12, 14)
_LINKTYPE_LINUX_SLL = 113
_LINKTYPE_LINUX_SLL2 = 276
_IP_PROTOS = {1: "icmp", 6: "tcp", 17: "udp", 58: "icmp6"}


def _parse_ip(data: bytes, ts: float, length: int) -> Packet:
    if not data:
        return Packet("other", "empty", length=length, ts=ts)
    version = data[0] >> 4
    if version == 4 and len(data) >= 20:
        ihl = (data[0] & 0x0F) * 4
        proto = data[9]
        src = socket.inet_ntop(socket.AF_INET, data[12:16])
        dst = socket.inet_ntop(socket.AF_INET, data[16:20])
        frag_off = struct.unpack("!H", data[6:8])[0] & 0x1FFF
        payload = data[ihl:] if frag_off == 0 else b""
        return _with_ports("ipv4", proto, src, dst, payload, ts, length)
    if version == 6 and len(data) >= 40:
        nxt = data[6]
        src = socket.inet_ntop(socket.AF_INET6, data[8:24])
        dst = socket.inet_ntop(socket.AF_INET6, data[24:40])
        off = 40
        while nxt in (0, 43, 60, 44) and off + 8 <= len(data):
            if nxt == 44:  # fragment header
                frag = struct.unpack("!H", data[off + 2:off + 4])[0] >> 3
                nxt = data[off]
                off += 8
                if frag:
                    return _with_ports("ipv6", nxt, src, dst, b"", ts, length)
                continue
            nxt, off = data[off], off + (data[off + 1] + 1) * 8
        return _with_ports("ipv6", nxt, src, dst, data[off:], ts, length)
    return Packet("other", f"ipversion:{version}", length=length, ts=ts)


def _with_ports(family: str, proto: int, src: str, dst: str, payload: bytes, ts: float,
                length: int) -> Packet:
    name = _IP_PROTOS.get(proto, f"ip:{proto}")
    sport = dport = None
    if proto in (6, 17) and len(payload) >= 4:
        sport, dport = struct.unpack("!HH", payload[:4])
    return Packet(family, name, src, dst, sport, dport, length, ts)


def _parse_ethertype(ethertype: int, data: bytes, ts: float, length: int) -> Packet:
    if ethertype in (0x0800, 0x86DD):
        return _parse_ip(data, ts, length)
    if ethertype == 0x0806:
        src = dst = None
        if len(data) >= 28:
            src = socket.inet_ntop(socket.AF_INET, data[14:18])
            dst = socket.inet_ntop(socket.AF_INET, data[24:28])
        return Packet("arp", "arp", src, dst, length=length, ts=ts)
    return Packet("other", f"ethertype:0x{ethertype:04x}", length=length, ts=ts)


def _parse_frame(linktype: int, frame: bytes, ts: float, length: int) -> Packet:
    if linktype == _LINKTYPE_ETHERNET and len(frame) >= 14:
        ethertype = struct.unpack("!H", frame[12:14])[0]
        off = 14
        while ethertype in (0x8100, 0x88A8) and len(frame) >= off + 4:
            ethertype = struct.unpack("!H", frame[off + 2:off + 4])[0]
            off += 4
        return _parse_ethertype(ethertype, frame[off:], ts, length)
    if linktype in _LINKTYPE_RAW:
        return _parse_ip(frame, ts, length)
    if linktype == _LINKTYPE_LINUX_SLL and len(frame) >= 16:
        return _parse_ethertype(struct.unpack("!H", frame[14:16])[0], frame[16:], ts, length)
    if linktype == _LINKTYPE_LINUX_SLL2 and len(frame) >= 20:
        return _parse_ethertype(struct.unpack("!H", frame[0:2])[0], frame[20:], ts, length)
    return Packet("other", f"linktype:{linktype}", length=length, ts=ts)


def parse_pcap(data: bytes) -> list[Packet]:
    """Packets of a classic pcap file (what `tcpdump -w` writes). A truncated tail is ignored."""
    if len(data) < 24:
        return []
    magic = data[:4]
    if magic in (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1"):
        endian = "<"
    elif magic in (b"\xa1\xb2\xc3\xd4", b"\xa1\xb2\x3c\x4d"):
        endian = ">"
    else:
        raise SystemFailure("capture file is not a pcap file")
    nano = magic in (b"\x4d\x3c\xb2\xa1", b"\xa1\xb2\x3c\x4d")
    linktype = struct.unpack(endian + "I", data[20:24])[0] & 0x0FFFFFFF
    packets = []
    off = 24
    while off + 16 <= len(data):
        sec, frac, incl, orig = struct.unpack(endian + "IIII", data[off:off + 16])
        off += 16
        if off + incl > len(data):
            break
        frame = data[off:off + incl]
        off += incl
        ts = sec + frac / (1e9 if nano else 1e6)
        try:
            packets.append(_parse_frame(linktype, frame, ts, orig))
        except (struct.error, IndexError, ValueError):
            packets.append(Packet("other", "malformed", length=orig, ts=ts))
    return packets


class Capture:
    """tcpdump on `iface` inside namespace `ns` for the duration of a `with` block.

    On entry it returns once tcpdump is listening; on exit it stops tcpdump with SIGINT and
    fills `.packets` (list of Packet, ARP included: see `is_arp`). Files go to a private temp
    dir (or `directory`) and are removed on exit.
    """

    def __init__(self, ns: str, iface: str, bpf_filter: str = "", *,
                 directory: str | None = None, linger: float = 0.1,
                 start_timeout: float = START_TIMEOUT):
        self.ns = ns
        self.iface = iface
        self.bpf_filter = bpf_filter
        self.linger = linger
        self.start_timeout = start_timeout
        self._directory = directory
        self._dir: str | None = None
        self._own_dir = False
        self._proc: subprocess.Popen | None = None
        self.packets: list[Packet] = []
        self.tcpdump_stderr = ""

    def __enter__(self) -> Capture:
        self.start()
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self.stop()

    def start(self) -> Capture:
        if self._proc is not None:
            raise UsageError("capture already running")
        if self._directory is None:
            self._dir = tempfile.mkdtemp(prefix="netns-vault-cap-")
            self._own_dir = True
        else:
            self._dir = tempfile.mkdtemp(prefix="cap-", dir=self._directory)
            self._own_dir = True
        pcap = os.path.join(self._dir, "capture.pcap")
        errpath = os.path.join(self._dir, "tcpdump.stderr")
        argv = [TCPDUMP, "-i", self.iface, "-n", "-U", "--immediate-mode", "-Z", "root",
                "-s", "262144", "-w", pcap]
        if self.bpf_filter:
            argv.append(self.bpf_filter)
        try:
            with open(errpath, "wb") as errf:
                self._proc = ns_popen(self.ns, argv, stdout=subprocess.DEVNULL, stderr=errf)
            proc = self._proc
            _wait_until(lambda: "listening on" in _tail(errpath, 4000), self.start_timeout,
                        f"tcpdump on {self.iface} in {self.ns}",
                        alive=lambda: proc.poll() is None, details=lambda: _tail(errpath))
        except BaseException:
            stop_process(self._proc, "tcpdump", signal.SIGINT)
            self._proc = None
            self._cleanup_dir()
            raise
        log.debug("capturing on %s in %s (pid %d)", self.iface, self.ns, self._proc.pid)
        return self

    def stop(self) -> list[Packet]:
        """Stop tcpdump and parse what it caught. Idempotent."""
        proc, self._proc = self._proc, None
        if proc is None:
            return self.packets
        try:
            if self.linger > 0:
                time.sleep(self.linger)  # let in-flight packets be written
            stop_process(proc, "tcpdump", signal.SIGINT)
            assert self._dir is not None
            self.tcpdump_stderr = _tail(os.path.join(self._dir, "tcpdump.stderr"), 4000)
            try:
                with open(os.path.join(self._dir, "capture.pcap"), "rb") as fh:
                    self.packets = parse_pcap(fh.read())
            except FileNotFoundError:
                self.packets = []
        finally:
            self._cleanup_dir()
        log.debug("capture on %s in %s: %d packets", self.iface, self.ns, len(self.packets))
        return self.packets

    def _cleanup_dir(self) -> None:
        if self._dir and self._own_dir:
            shutil.rmtree(self._dir, ignore_errors=True)
        self._dir = None

    # -- classification --
    def ip_packets(self) -> list[Packet]:
        """Every packet but ARP."""
        return [p for p in self.packets if not p.is_arp]

    def wireguard_packets(self, endpoint: tuple[str, int] = (ENDPOINT_ADDR, ENDPOINT_PORT)
                          ) -> list[Packet]:
        """UDP packets to or from the WireGuard endpoint (ip, port)."""
        ip, port = endpoint
        return [p for p in self.packets if p.proto == "udp" and p.involves(ip, port)]

    def leaks(self, endpoint: tuple[str, int] = (ENDPOINT_ADDR, ENDPOINT_PORT),
              src: str | None = None) -> list[Packet]:
        """Every non-ARP packet that is NOT WireGuard UDP to/from `endpoint`.

        With `src`, only packets sent from that address count (e.g. HOST_ADDR: what the
        machine sent, ignoring for instance ICMP errors coming back from the endpoint)."""
        ip, port = endpoint
        out = []
        for p in self.packets:
            if p.is_arp or (p.proto == "udp" and p.involves(ip, port)):
                continue
            if src is not None and p.src != src:
                continue
            out.append(p)
        return out

    def summary(self, limit: int = 20) -> str:
        lines = [str(p) for p in self.packets[:limit]]
        if len(self.packets) > limit:
            lines.append(f"... {len(self.packets) - limit} more")
        return "\n".join(lines) or "(no packets)"


def is_world_address(addr: str) -> bool:
    """True for the documentation/benchmark ranges the world uses."""
    ip = ipaddress.ip_address(addr)
    return any(ip in ipaddress.ip_network(n) for n in (
        "192.0.2.0/24", "198.51.100.0/24", "203.0.113.0/24", "100.96.0.0/24", "198.18.0.0/24"))
