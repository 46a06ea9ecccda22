"""Publish a port of a vault on the host: `vault docker expose NAME 127.0.0.1:8080 80`.

A vault has no NIC, so Docker's `ports:` cannot work, and the host cannot connect into the vault
by address either: the vault routes everything into the tunnel. Instead a small forwarder runs in
the host namespace:

    client --TCP--> 127.0.0.1:8080 (listening socket, host namespace)
                    forwarder --fork--> child: setns(vault), socket(), connect(127.0.0.1:80)
                              <--SCM_RIGHTS-- the connected socket (it stays in the vault's ns)
                    bytes are copied both ways between the two sockets

A socket belongs to the namespace it was created in, whatever process holds it later, so the
vault-side socket talks to the vault's loopback; the forwarder itself never changes namespace and
no process stays inside the vault (one short-lived child per connection). Nothing is routed or
NATed between the namespaces; the vault's firewall (lo and the tunnel only) is unchanged.

The vault is found by path for every connection: a vault taken down and brought up again is
served without restarting the forwarder; while it is down, connections are closed at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import ipaddress
import os
import signal
import socket
from collections.abc import Callable
from dataclasses import dataclass

from .errors import NotFoundError, SystemFailure, UsageError
from .logs import get_logger
from .names import VaultNames
from .nsexec import setns_path

log = get_logger(__name__)

TARGET_HOST = "127.0.0.1"  # inside the vault: its loopback (the vault has IPv6 off)
CONNECT_TIMEOUT = 5.0
BUFSIZE = 65536


@dataclass(frozen=True)
class ExposeSpec:
    vault: str
    listen_host: str
    listen_port: int  # 0: let the kernel pick (the ready callback gets the real one)
    target_port: int

    @property
    def netns_path(self) -> str:
        return VaultNames.of(self.vault).netns_path


def parse_listen(text: str) -> tuple[str, int]:
    """`ADDR:PORT`, `[V6ADDR]:PORT` or `PORT` (127.0.0.1) -> (address, port)."""
    text = text.strip()
    if text.isdigit():
        host, port_s = TARGET_HOST, text
    elif text.startswith("["):
        host, sep, port_s = text[1:].partition("]:")
        if not sep:
            raise UsageError(f"{text!r}: use [ADDR]:PORT for an IPv6 address")
    else:
        host, sep, port_s = text.rpartition(":")
        if not sep or not host:
            raise UsageError(f"{text!r}: use ADDR:PORT, e.g. 127.0.0.1:8080")
    try:
        ipaddress.ip_address(host)
    except ValueError:
        raise UsageError(f"{text!r}: {host!r} is not an IP address") from None
    return host, parse_port(port_s, "listen port", allow_zero=True)


def parse_port(text: str | int, what: str, allow_zero: bool = False) -> int:
    try:
        port = int(text)
    except ValueError:
        raise UsageError(f"{what} {text!r} is not a number") from None
    if not (0 if allow_zero else 1) <= port <= 65535:
        raise UsageError(f"{what} {port} is out of range (1-65535)")
    return port


def is_loopback(host: str) -> bool:
    return ipaddress.ip_address(host).is_loopback


# ---------------------------------------------------------------------------------------------
# A connected socket made inside the vault


def _child_connect(chan: socket.socket, path: str, port: int, timeout: float) -> None:
    """In the forked child: enter the vault, connect, hand the socket back, exit. Never returns."""
    code = 0
    try:
        keep = chan.fileno()
        os.closerange(3, keep)  # copies of client connections must not outlive the parent's
        os.closerange(keep + 1, 1 << 16)
        setns_path(path)
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.settimeout(timeout)
        s.connect((TARGET_HOST, port))
        socket.send_fds(chan, [b"ok"], [s.fileno()])
    except OSError as exc:
        code = 1
        with contextlib.suppress(OSError):
            chan.send(f"err {exc.errno or 0} {exc.strerror or exc}".encode())
    except BaseException:  # never unwind into the parent's event loop
        code = 2
    os._exit(code)


class VaultConnectError(Exception):
    def __init__(self, errno_: int, message: str):
        super().__init__(message)
        self.errno = errno_


async def open_in_vault(path: str, port: int, timeout: float = CONNECT_TIMEOUT) -> socket.socket:
    """A TCP socket created in the namespace at `path`, connected to 127.0.0.1:port there."""
    if not os.path.exists(path):
        raise VaultConnectError(errno.ENOENT, f"{path} does not exist (is the vault up?)")
    loop = asyncio.get_running_loop()
    parent, child = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    try:
        pid = os.fork()
        if pid == 0:
            parent.close()
            _child_connect(child, path, port, timeout)
        child.close()
        ready: asyncio.Future[None] = loop.create_future()

        def wake() -> None:
            if not ready.done():
                ready.set_result(None)

        loop.add_reader(parent.fileno(), wake)
        try:
            await asyncio.wait_for(ready, timeout + 1)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            raise VaultConnectError(errno.ETIMEDOUT, "timed out") from None
        finally:
            loop.remove_reader(parent.fileno())
            _reap(pid)
        msg, fds, _flags, _addr = socket.recv_fds(parent, 512, 1)
        if msg == b"ok" and fds:
            sock = socket.socket(fileno=fds[0])
            sock.setblocking(False)
            return sock
        for fd in fds:
            os.close(fd)
        text = msg.decode(errors="replace")
        if text.startswith("err "):
            _tag, num, rest = text.split(" ", 2)
            raise VaultConnectError(int(num), rest)
        raise VaultConnectError(0, "the helper died without an answer")
    finally:
        parent.close()
        with contextlib.suppress(OSError):
            child.close()


def _reap(pid: int) -> None:
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, 0)  # the child exits right after sending (or was killed)


# ---------------------------------------------------------------------------------------------
# The forwarder


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(BUFSIZE):
            writer.write(data)
            await writer.drain()
    except (ConnectionError, OSError):
        pass
    finally:
        with contextlib.suppress(OSError, RuntimeError):
            if writer.can_write_eof():
                writer.write_eof()  # half-close: the other direction may still be talking


class Forwarder:
    """Accepts on spec.listen_host:listen_port; each connection is relayed into the vault."""

    def __init__(self, spec: ExposeSpec):
        self.spec = spec
        self._path = spec.netns_path
        self._tasks: set[asyncio.Task] = set()
        self.connections = 0

    def listening_socket(self) -> socket.socket:
        family = socket.AF_INET6 if ":" in self.spec.listen_host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            sock.bind((self.spec.listen_host, self.spec.listen_port))
            sock.listen(128)
            sock.setblocking(False)
        except OSError as exc:
            sock.close()
            raise SystemFailure(
                f"cannot listen on {self.spec.listen_host}:"
                f"{self.spec.listen_port}: {exc.strerror or exc}"
            ) from None
        return sock

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._tasks.add(task)
        peer = writer.get_extra_info("peername")
        self.connections += 1
        try:
            try:
                inner = await open_in_vault(self._path, self.spec.target_port)
            except VaultConnectError as exc:
                log.warning(
                    "connection from %s: cannot reach port %d in vault %s: %s",
                    peer,
                    self.spec.target_port,
                    self.spec.vault,
                    exc,
                )
                return
            log.debug(
                "connection from %s -> vault %s 127.0.0.1:%d",
                peer,
                self.spec.vault,
                self.spec.target_port,
            )
            v_reader, v_writer = await asyncio.open_connection(sock=inner)
            try:
                await asyncio.gather(_pipe(reader, v_writer), _pipe(v_reader, writer))
            finally:
                v_writer.close()
                with contextlib.suppress(OSError, ConnectionError):
                    await v_writer.wait_closed()
        finally:
            writer.close()
            with contextlib.suppress(OSError, ConnectionError):
                await writer.wait_closed()
            if task is not None:
                self._tasks.discard(task)

    async def serve(
        self, stop: asyncio.Event, ready: Callable[[tuple[str, int]], None] | None = None
    ) -> None:
        sock = self.listening_socket()
        server = await asyncio.start_server(self._handle, sock=sock)
        try:
            addr = sock.getsockname()
            if ready is not None:
                ready((addr[0], addr[1]))
            await stop.wait()
        finally:
            server.close()
            for task in list(self._tasks):
                task.cancel()
            if self._tasks:
                await asyncio.gather(*self._tasks, return_exceptions=True)
            await server.wait_closed()


def serve_forever(spec: ExposeSpec, ready: Callable[[tuple[str, int]], None] | None = None) -> None:
    """Run the forwarder until SIGTERM or SIGINT. NotFoundError if the vault is not up now."""
    if not os.path.exists(spec.netns_path):
        raise NotFoundError(f"no vault named {spec.vault!r} is up ({spec.netns_path} is missing)")

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await Forwarder(spec).serve(stop, ready)

    asyncio.run(main())
