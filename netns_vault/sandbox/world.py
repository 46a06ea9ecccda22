"""The closed world as one object: three namespaces (isp, host, lan) wired together (network.py),
a WireGuard server, DNS and a web server in the isp (servers.py), client keys (clients.py).

Nothing here is linked to the root network namespace: every veth is created from inside a world
namespace with its peer placed directly in another world namespace, and no address, route or rule
is ever added in the root namespace, so no packet can leave the machine.
"""

from __future__ import annotations

import atexit
import contextlib
import functools
import os
import re
import secrets
import shutil
import subprocess
import tempfile
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from ..errors import SystemFailure, UsageError
from ..logs import get_logger
from ..rollback import Rollback
from . import layout
from .capture import Capture
from .clients import ClientKeys, client_config_text, make_keys, write_private_file
from .layout import DEFAULT_CLIENTS, missing_tools
from .namespaces import Namespaces, ns_popen, ns_run
from .network import wire
from .servers import DnsServer, WebServer, WireGuardServer

if TYPE_CHECKING:
    from ..tunnel.base import TunnelStats

log = get_logger(__name__)


class World:
    """The closed test world. `with World() as w:` or `w.start()` ... `w.stop()`.

    Namespaces `<id>-isp`, `<id>-host`, `<id>-lan` with `<id>` = prefix + 4 random hex digits,
    so several worlds can coexist. `stop()` is idempotent and removes every namespace, process
    and file the world made.
    """

    GATEWAY = layout.GATEWAY
    HOST_ADDR = layout.HOST_ADDR
    ENDPOINT_ADDR = layout.ENDPOINT_ADDR
    ENDPOINT_PORT = layout.ENDPOINT_PORT
    DNS_ADDR = layout.DNS_ADDR
    WEB_ADDR = layout.WEB_ADDR
    WEB_PORT = layout.WEB_PORT
    WEB_URL = layout.WEB_URL
    WEB_NAME = layout.WEB_NAME
    VPN_NAME = layout.VPN_NAME
    TUNNEL_SERVER_ADDR = layout.TUNNEL_SERVER_ADDR
    TUNNEL_NET = layout.TUNNEL_NET
    LAN_HOST_ADDR = layout.LAN_HOST_ADDR
    LAN_PEER_ADDR = layout.LAN_PEER_ADDR
    HOST_UPLINK_IFACE = layout.HOST_UPLINK_IFACE
    HOST_LAN_IFACE = layout.HOST_LAN_IFACE
    client_address = staticmethod(layout.client_address)

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
        self.server = WireGuardServer(self.isp_ns, self._file, self.server_iface)
        self.dns = DnsServer(self.isp_ns, self._file)
        self.web = WebServer(self.isp_ns, self._file)
        self._namespaces = Namespaces()
        self._rb: Rollback | None = None
        self._owner_pid: int | None = None
        self._started = False

    def __repr__(self) -> str:
        return f"World({self.id!r}, started={self._started})"

    # -- paths --
    @property
    def uapi_socket(self) -> str:
        return self.server.uapi_socket

    def _file(self, name: str) -> str:
        if self.tmpdir is None:
            raise UsageError("the world is not started")
        return os.path.join(self.tmpdir, name)

    @property
    def dns_log(self) -> str:
        return self.dns.log_path

    @property
    def web_log(self) -> str:
        return self.web.log_path

    @property
    def server_log(self) -> str:
        return self.server.log_path

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
        self.tmpdir = rb.step("temp dir", lambda: tempfile.mkdtemp(
            prefix=f"netns-vault-{self.id}-", dir=self._tmp_root), self._remove_tmpdir)
        for ns in self.namespaces:
            rb.step(f"netns {ns}", functools.partial(self._namespaces.create, ns),
                    functools.partial(self._namespaces.remove, ns))
        wire(self.isp_ns, self.host_ns, self.lan_ns, ipv6=self.ipv6)

        keys = make_keys(self.n_clients)
        self.server_private_key = keys.server_private_key
        self.server_public_key = keys.server_public_key
        self.clients = keys.clients

        rb.push("wireguard-go server", self.server.stop)
        rb.push("dnsmasq", self.dns.stop)
        rb.push("web server", self.web.stop)
        # start all three, then wait for each: the waits overlap
        self.server.spawn()
        self.dns.spawn()
        self.web.spawn()
        self.server.configure(keys.server_private_key, self.clients)
        self.dns.wait()
        self.web.wait()

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

    def _require_started(self) -> None:
        if self._rb is None:
            raise UsageError("the world is not started")

    # -- the WireGuard server --
    def server_down(self) -> None:
        """Stop the WireGuard server (its interface and UDP port go away). Idempotent."""
        self._require_started()
        self.server.stop()
        log.info("test world %s: WireGuard server down", self.id)

    def server_up(self) -> None:
        """Start the WireGuard server again with the same keys and peers. Idempotent."""
        self._require_started()
        if self.server.running:
            return
        assert self.server_private_key is not None
        try:
            self.server.spawn()
            self.server.configure(self.server_private_key, self.clients)
        except BaseException:
            self.server.stop()
            raise
        log.info("test world %s: WireGuard server up", self.id)

    def add_scale_clients(self, n: int) -> list[ClientKeys]:
        """`n` more clients (clients.make_scale_clients: 100.96.1.0 upwards), made peers of the
        running server with the world's own clients, and 100.96.0.0/16 routed to the server
        inside the isp namespace. For scale benchmarks; their configs: client_config_text(c, ...)."""
        from ..tunnel.uapi import UapiClient, UapiPeer, build_set_request
        from .clients import make_scale_clients
        from .layout import ENDPOINT_PORT

        self._require_started()
        extra = make_scale_clients(n)
        self.extra_clients = getattr(self, "extra_clients", []) + extra
        peers = [UapiPeer(public_key=c.public_key, allowed_ips=[f"{c.address}/32"])
                 for c in [*self.clients, *self.extra_clients]]
        assert self.server_private_key is not None
        UapiClient(self.uapi_socket).set(build_set_request(self.server_private_key,
                                                           ENDPOINT_PORT, None, peers))
        self.ns_run(self.isp_ns, ["ip", "route", "replace", "100.96.0.0/16", "dev",
                                  self.server_iface], check=True)
        return extra

    @property
    def server_running(self) -> bool:
        return self.server.running

    def server_stats(self) -> TunnelStats:
        """The server's view (tunnel.base.TunnelStats): a peer per client, with handshakes."""
        self._require_started()
        return self.server.stats()

    def server_handshake(self, index: int = 0) -> float | None:
        """Time of the server's last handshake with client `index`, or None."""
        want = self.clients[index].public_key
        for peer in self.server_stats().peers:
            if peer.public_key == want:
                return peer.last_handshake
        return None

    # -- what DNS and the web server saw --
    def dns_queries(self) -> list[tuple[str, str]]:
        """(client address, queried name) for every query dnsmasq logged, oldest first."""
        return self.dns.queries()

    def dns_query_log(self) -> list[tuple[str, str, str]]:
        """(query type, name, client address) for every query dnsmasq logged."""
        return self.dns.query_log()

    def wait_dns_query(self, name: str, timeout: float = 2.0) -> list[tuple[str, str]]:
        """Wait until dnsmasq logged a query for `name`; returns dns_queries() (maybe without)."""
        return self.dns.wait_query(name, timeout)

    def web_requests(self) -> list[tuple[str, str]]:
        """(client address, path) of every request the echo web server answered."""
        return self.web.requests()

    def web_clients(self) -> list[str]:
        return [c for c, _p in self.web_requests()]

    # -- client configs --
    def client_config_text(self, index: int = 0, dns: bool = True,
                           endpoint_host: str | None = None) -> str:
        self._require_started()
        assert self.server_public_key is not None
        return client_config_text(self.clients[index], self.server_public_key, dns=dns,
                                  endpoint_host=endpoint_host)

    def write_client_config(self, path: str, index: int = 0, dns: bool = True,
                            endpoint_host: str | None = None) -> str:
        """Write client `index`'s wg-quick config to `path` (mode 0600); returns `path`."""
        text = self.client_config_text(index, dns=dns, endpoint_host=endpoint_host)
        return write_private_file(path, text)

    # -- running things --
    def ns_run(self, ns: str, argv: Sequence[str], **kwargs: Any) -> subprocess.CompletedProcess:
        return ns_run(ns, argv, **kwargs)

    def host_run(self, argv: Sequence[str], **kwargs: Any) -> subprocess.CompletedProcess:
        return ns_run(self.host_ns, argv, **kwargs)

    def isp_run(self, argv: Sequence[str], **kwargs: Any) -> subprocess.CompletedProcess:
        return ns_run(self.isp_ns, argv, **kwargs)

    def host_popen(self, argv: Sequence[str], **kwargs: Any) -> subprocess.Popen:
        return ns_popen(self.host_ns, argv, **kwargs)

    def capture(self, ns: str | None = None, iface: str = HOST_UPLINK_IFACE,
                bpf_filter: str = "") -> Capture:
        """A Capture (default: host eth0) writing into the world's temp dir."""
        self._require_started()
        return Capture(ns or self.host_ns, iface, bpf_filter, directory=self.tmpdir)
