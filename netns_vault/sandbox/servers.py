"""The world's servers, each a program in the isp namespace: the WireGuard server (wireguard-go),
DNS (dnsmasq) and the echo web server (web.py). Each is spawned, waited for until it serves, and
stopped; what it logged is read back for tests."""

from __future__ import annotations

import contextlib
import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from ..errors import SystemFailure, UsageError
from ..logs import get_logger
from .clients import ClientKeys
from .layout import (
    DNS_ADDR,
    DNSMASQ,
    ENDPOINT_ADDR,
    ENDPOINT_PORT,
    START_TIMEOUT,
    TUNNEL_SERVER_ADDR,
    VPN_NAME,
    WEB_ADDR,
    WEB_NAME,
    WEB_PORT,
    WIREGUARD_GO,
)
from .namespaces import clean_env, ip, ns_popen
from .processes import pid_has_udp_port, pid_listens, stop_process, tail, wait_until

if TYPE_CHECKING:
    from ..tunnel.base import TunnelStats

log = get_logger(__name__)


class Daemon:
    """A program run in namespace `ns`; `files(name)` is where its files go (the world's temp
    dir). Output (stdout and stderr) is appended to files(`output`)."""

    what = "daemon"
    output = "daemon.out"

    def __init__(self, ns: str, files: Callable[[str], str]) -> None:
        self.ns = ns
        self.files = files
        self.proc: subprocess.Popen | None = None

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    @property
    def pid(self) -> int | None:
        """The pid of the process last started (None before a start or after a stop)."""
        return self.proc.pid if self.proc is not None else None

    def _popen(self, argv: Sequence[str], **kwargs: Any) -> subprocess.Popen:
        with open(self.files(self.output), "ab") as out:
            self.proc = ns_popen(self.ns, argv, stdout=out, stderr=subprocess.STDOUT, **kwargs)
        return self.proc

    def _wait(self, cond: Callable[[], bool], what: str | None = None,
              details: Callable[[], str] | None = None) -> None:
        proc = self.proc
        assert proc is not None
        wait_until(cond, START_TIMEOUT, what or self.what, alive=lambda: proc.poll() is None,
                   details=details or (lambda: tail(self.files(self.output))))

    def stop(self) -> None:
        """Stop it (SIGTERM, then SIGKILL). Idempotent."""
        proc, self.proc = self.proc, None
        stop_process(proc, self.what)


class WireGuardServer(Daemon):
    """wireguard-go on interface `iface`, with a peer per client."""

    what = "wireguard-go server"
    output = "wireguard-go.log"

    def __init__(self, ns: str, files: Callable[[str], str], iface: str) -> None:
        super().__init__(ns, files)
        self.iface = iface

    @property
    def uapi_socket(self) -> str:
        from ..tunnel.uapi import socket_path_for

        return socket_path_for(self.iface)

    @property
    def log_path(self) -> str:
        return self.files(self.output)

    def spawn(self) -> None:
        if self.running:
            raise UsageError("the WireGuard server is already running")
        if os.path.exists(self.uapi_socket):  # a stale socket from a killed run
            os.unlink(self.uapi_socket)
        proc = self._popen([WIREGUARD_GO, self.iface],
                           env=clean_env(WG_PROCESS_FOREGROUND="1", LOG_LEVEL="verbose"))
        log.debug("wireguard-go %s started, pid %d", self.iface, proc.pid)

    def configure(self, private_key: str, clients: Sequence[ClientKeys]) -> None:
        """Once spawned: key, port and peers over UAPI, the address, link up; returns when the
        UDP port is bound."""
        from ..tunnel.uapi import UapiClient, UapiPeer, build_set_request

        proc = self.proc
        assert proc is not None
        client = UapiClient(self.uapi_socket)
        try:
            client.wait_ready(START_TIMEOUT, alive=lambda: proc.poll() is None)
        except SystemFailure as exc:
            raise SystemFailure(f"{exc}: {tail(self.log_path)}") from None
        peers = [UapiPeer(public_key=c.public_key, allowed_ips=[f"{c.address}/32"])
                 for c in clients]
        client.set(build_set_request(private_key, ENDPOINT_PORT, None, peers))
        ip(self.ns, "addr", "add", f"{TUNNEL_SERVER_ADDR}/24", "dev", self.iface)
        ip(self.ns, "link", "set", self.iface, "up")
        # wireguard-go binds its UDP port when it sees the link go up
        self._wait(lambda: pid_has_udp_port(proc.pid, ENDPOINT_PORT),
                   "wireguard-go server UDP port")

    def stop(self) -> None:
        super().stop()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.uapi_socket)

    def stats(self) -> TunnelStats:
        from ..tunnel.uapi import UapiClient

        return UapiClient(self.uapi_socket).get()


class DnsServer(Daemon):
    """dnsmasq on DNS_ADDR: WEB_NAME and VPN_NAME resolve, every query is logged."""

    what = "dnsmasq"
    output = "dnsmasq.stderr"

    @property
    def log_path(self) -> str:
        return self.files("dnsmasq.log")

    def spawn(self) -> None:
        self._popen([
            DNSMASQ, "--keep-in-foreground", "--conf-file=/dev/null", "--no-resolv",
            "--no-hosts", "--no-poll", "--bind-interfaces", f"--listen-address={DNS_ADDR}",
            "--port=53", f"--address=/{WEB_NAME}/{WEB_ADDR}",
            f"--address=/{VPN_NAME}/{ENDPOINT_ADDR}", "--log-queries",
            f"--log-facility={self.log_path}", f"--pid-file={self.files('dnsmasq.pid')}",
            "--user=root", "--group=root",
        ])

    def wait(self) -> None:
        proc = self.proc
        assert proc is not None
        self._wait(lambda: pid_listens(proc.pid, "udp", DNS_ADDR, 53),
                   details=lambda: tail(self.files(self.output)) or tail(self.log_path))

    def query_log(self) -> list[tuple[str, str, str]]:
        """(query type, name, client address) for every query dnsmasq logged."""
        try:
            with open(self.log_path, encoding="utf-8", errors="replace") as fh:
                text = fh.read()
        except FileNotFoundError:
            return []
        return [(m.group(1), m.group(2), m.group(3))
                for m in re.finditer(r"query\[(\w+)\] (\S+) from (\S+)", text)]

    def queries(self) -> list[tuple[str, str]]:
        """(client address, queried name) for every query dnsmasq logged, oldest first."""
        return [(client, name) for _qtype, name, client in self.query_log()]

    def wait_query(self, name: str, timeout: float = 2.0) -> list[tuple[str, str]]:
        """Wait until dnsmasq logged a query for `name`; returns queries() (maybe without)."""
        deadline = time.monotonic() + timeout
        while True:
            queries = self.queries()
            if any(q == name for _c, q in queries) or time.monotonic() >= deadline:
                return queries
            time.sleep(0.02)


class WebServer(Daemon):
    """The echo web server (web.py) on WEB_ADDR:WEB_PORT; one JSON line per request."""

    what = "web server"
    output = "web.stderr"

    @property
    def log_path(self) -> str:
        return self.files("web.jsonl")

    def spawn(self) -> None:
        self._popen([sys.executable, "-m", "netns_vault.sandbox.web", "--bind", WEB_ADDR,
                     "--port", str(WEB_PORT), "--log", self.log_path])

    def wait(self) -> None:
        proc = self.proc
        assert proc is not None
        self._wait(lambda: pid_listens(proc.pid, "tcp", WEB_ADDR, WEB_PORT))

    def requests(self) -> list[tuple[str, str]]:
        """(client address, path) of every request the echo web server answered."""
        out = []
        try:
            with open(self.log_path, encoding="utf-8") as fh:
                for line in fh:
                    with contextlib.suppress(ValueError, KeyError):
                        rec = json.loads(line)
                        out.append((rec["client"], rec["path"]))
        except FileNotFoundError:
            pass
        return out
