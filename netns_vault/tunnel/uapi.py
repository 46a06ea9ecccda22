"""The WireGuard cross-platform UAPI (https://www.wireguard.com/xplatform/) as spoken by wireguard-go.

One request per connection on `/var/run/wireguard/IFNAME.sock`:
  set: "set=1\\n" + key=value lines + "\\n"  ->  "errno=N\\n\\n"
  get: "get=1\\n\\n"                          ->  key=value lines + "errno=0\\n\\n"
Keys travel as lowercase hex.

`build_set_request` and `parse_get_response` are pure. The request text contains the private key:
never log it or put it in an exception; `redact()` makes it printable.
"""

from __future__ import annotations

import errno as errno_mod
import ipaddress
import os
import re
import socket
import time
from collections.abc import Callable, Iterable

from ..errors import SystemFailure
from ..keys import hex_to_key, key_to_hex
from ..logs import DEBUG, get_logger
from .base import PeerStats, TunnelStats, ValueObject

log = get_logger(__name__)

SOCKET_DIR = "/var/run/wireguard"
MAX_RESPONSE = 4 * 1024 * 1024

_SECRET_KEYS = ("private_key", "preshared_key")
_REDACT_RE = re.compile(r"^(" + "|".join(_SECRET_KEYS) + r")=.*$", re.MULTILINE)


def socket_path_for(ifname: str) -> str:
    return f"{SOCKET_DIR}/{ifname}.sock"


class UapiPeer(ValueObject):
    """A peer as a UAPI set request names it (immutable)."""

    __slots__ = ("public_key", "preshared_key", "endpoint", "allowed_ips",
                 "persistent_keepalive")
    public_key: str
    preshared_key: str | None
    endpoint: str | None
    allowed_ips: list[str]
    persistent_keepalive: int | None

    def __init__(self, public_key: str, preshared_key: str | None = None,
                 endpoint: str | None = None, allowed_ips: list[str] | None = None,
                 persistent_keepalive: int | None = None):
        set_ = object.__setattr__
        set_(self, "public_key", public_key)  # base64
        set_(self, "preshared_key", preshared_key)  # base64
        set_(self, "endpoint", endpoint)  # "ip:port" or "[v6]:port"
        set_(self, "allowed_ips", allowed_ips if allowed_ips is not None else [])
        set_(self, "persistent_keepalive", persistent_keepalive)

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"UapiPeer is immutable: cannot set {name}")

    def __delattr__(self, name: str) -> None:
        raise AttributeError(f"UapiPeer is immutable: cannot delete {name}")

    def __repr__(self) -> str:  # never show the preshared key
        psk = "<redacted>" if self.preshared_key is not None else None
        return (
            f"UapiPeer(public_key={self.public_key!r}, preshared_key={psk}, "
            f"endpoint={self.endpoint!r}, allowed_ips={self.allowed_ips!r}, "
            f"persistent_keepalive={self.persistent_keepalive!r})"
        )


def redact(text: str) -> str:
    """`text` with the values of private_key= and preshared_key= lines replaced."""
    return _REDACT_RE.sub(r"\1=<redacted>", text)


def format_endpoint(host: str, port: int) -> str:
    """("1.2.3.4", 51820) -> "1.2.3.4:51820"; ("2001:db8::1", 51820) -> "[2001:db8::1]:51820"."""
    addr = ipaddress.ip_address(host.strip("[]"))
    _check_int("endpoint port", port, 1, 65535)
    return f"[{addr}]:{port}" if addr.version == 6 else f"{addr}:{port}"


def _check_int(what: str, value: int, lo: int, hi: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise ValueError(f"{what} must be an integer in [{lo}, {hi}], got {value!r}")
    return value


def _check_endpoint(endpoint: str) -> str:
    m = re.fullmatch(r"\[([0-9A-Fa-f:.]+)\]:(\d{1,5})|([0-9.]+):(\d{1,5})", endpoint)
    if not m:
        raise ValueError(f"endpoint {endpoint!r} is not ip:port or [ipv6]:port")
    host = m.group(1) or m.group(3)
    port = int(m.group(2) or m.group(4))
    try:
        return format_endpoint(host, port)
    except ValueError as exc:
        raise ValueError(f"endpoint {endpoint!r}: {exc}") from None


def _check_allowed_ip(net: str) -> str:
    try:
        return str(ipaddress.ip_network(str(net), strict=False))
    except ValueError as exc:
        raise ValueError(f"allowed IP {net!r}: {exc}") from None


def _public_hex(b64: str) -> str:
    try:
        return key_to_hex(b64)
    except ValueError as exc:
        raise ValueError(f"peer public key: {exc}") from None


def _secret_hex(what: str, b64: str) -> str:
    try:
        return key_to_hex(b64)
    except ValueError as exc:  # the message of key_to_hex never contains the key
        raise ValueError(f"{what}: {exc}") from None


def build_set_request(
    private_key_b64: str,
    listen_port: int | None,
    fwmark: int | None,
    peers: Iterable[UapiPeer],
) -> str:
    """The complete `set=1` request, replacing every peer and every allowed IP.

    None means "not set": listen_port None lets wireguard-go pick a port; fwmark None leaves it
    at 0. Raises ValueError (never quoting a secret) on a malformed value.
    """
    lines = ["set=1", f"private_key={_secret_hex('private key', private_key_b64)}"]
    if listen_port is not None:
        lines.append(f"listen_port={_check_int('listen port', listen_port, 0, 65535)}")
    if fwmark is not None:
        lines.append(f"fwmark={_check_int('fwmark', fwmark, 0, 2**32 - 1)}")
    lines.append("replace_peers=true")
    for peer in peers:
        lines.append(f"public_key={_public_hex(peer.public_key)}")
        if peer.preshared_key is not None:
            lines.append(f"preshared_key={_secret_hex('preshared key', peer.preshared_key)}")
        if peer.endpoint is not None:
            lines.append(f"endpoint={_check_endpoint(peer.endpoint)}")
        if peer.persistent_keepalive is not None:
            ka = _check_int("persistent keepalive", peer.persistent_keepalive, 0, 65535)
            lines.append(f"persistent_keepalive_interval={ka}")
        lines.append("replace_allowed_ips=true")
        for net in peer.allowed_ips:
            lines.append(f"allowed_ip={_check_allowed_ip(net)}")
    return "\n".join(lines) + "\n\n"


def parse_errno(text: str) -> int:
    """The errno of a UAPI reply ("errno=N" line); SystemFailure if there is none."""
    for line in reversed(text.splitlines()):
        if line.startswith("errno="):
            try:
                return int(line[len("errno="):])
            except ValueError:
                break
    raise SystemFailure("wireguard-go UAPI reply has no errno line")


def _errno_text(n: int) -> str:
    code = abs(n)
    name = errno_mod.errorcode.get(code)
    return f"errno={n} ({name}: {os.strerror(code)})" if name else f"errno={n}"


def parse_get_response(text: str) -> TunnelStats:
    """Parse a `get=1` reply. Secrets in it (private_key, preshared_key) are ignored."""
    code = parse_errno(text)
    if code != 0:
        raise SystemFailure(f"wireguard-go UAPI get failed: {_errno_text(code)}")
    listen_port: int | None = None
    peers: list[PeerStats] = []
    cur: dict | None = None

    def finish() -> None:
        if cur is None:
            return
        sec, nsec = cur["hs_sec"], cur["hs_nsec"]
        peers.append(
            PeerStats(
                public_key=cur["public_key"],
                endpoint=cur["endpoint"],
                last_handshake=(sec + nsec / 1e9) if (sec or nsec) else None,
                rx_bytes=cur["rx"],
                tx_bytes=cur["tx"],
            )
        )

    for raw in text.splitlines():
        line = raw.strip()
        if not line or "=" not in line:
            continue
        key, _, value = line.partition("=")
        try:
            if key == "public_key":
                finish()
                cur = {"public_key": hex_to_key(value), "endpoint": None, "hs_sec": 0,
                       "hs_nsec": 0, "rx": 0, "tx": 0}
            elif key == "listen_port" and cur is None:
                listen_port = int(value) or None
            elif cur is None:
                continue
            elif key == "endpoint":
                cur["endpoint"] = value or None
            elif key == "last_handshake_time_sec":
                cur["hs_sec"] = int(value)
            elif key == "last_handshake_time_nsec":
                cur["hs_nsec"] = int(value)
            elif key == "rx_bytes":
                cur["rx"] = int(value)
            elif key == "tx_bytes":
                cur["tx"] = int(value)
        except ValueError:
            shown = "<redacted>" if key in _SECRET_KEYS else repr(value)
            raise SystemFailure(f"wireguard-go UAPI get: bad value for {key}: {shown}") from None
    finish()
    return TunnelStats(listen_port=listen_port, peers=peers)


def get_many(socket_paths: list[str], timeout: float = 5.0) -> list[TunnelStats | Exception]:
    """`UapiClient(path).get()` of every path at once, in one thread: every request is sent
    before any reply is read, so the wireguard-go processes answer in parallel (a listing of 100
    vaults waits for the slowest, not for the sum). An error per socket is in its place."""
    import selectors

    out: list[TunnelStats | Exception | None] = [None] * len(socket_paths)
    bufs: dict[int, bytearray] = {}
    sel = selectors.DefaultSelector()
    socks: dict[int, socket.socket] = {}
    try:
        for i, path in enumerate(socket_paths):
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                s.settimeout(timeout)
                s.connect(path)  # a unix socket: accepted by the kernel, or refused, at once
                s.sendall(b"get=1\n\n")
                s.setblocking(False)
            except OSError as exc:
                s.close()
                out[i] = SystemFailure(f"wireguard-go UAPI {path}: {exc.strerror or exc}")
                continue
            socks[i] = s
            bufs[i] = bytearray()
            sel.register(s, selectors.EVENT_READ, i)
        deadline = time.monotonic() + timeout
        while socks:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            for key, _ in sel.select(left):
                i = key.data
                try:
                    chunk = socks[i].recv(65536)
                except BlockingIOError:
                    continue
                except OSError as exc:
                    chunk, out[i] = b"", SystemFailure(
                        f"wireguard-go UAPI {socket_paths[i]}: {exc.strerror or exc}")
                bufs[i] += chunk
                done = not chunk or bufs[i].endswith(b"\n\n") or len(bufs[i]) > MAX_RESPONSE
                if done:
                    sel.unregister(socks[i])
                    socks.pop(i).close()
                    if out[i] is None:
                        out[i] = _reply(socket_paths[i], bufs[i])
        for i in socks:
            out[i] = SystemFailure(f"wireguard-go UAPI {socket_paths[i]}: no reply in {timeout:g}s")
    finally:
        for s in socks.values():
            s.close()
        sel.close()
    return [r if r is not None else SystemFailure("no reply") for r in out]


def _reply(path: str, buf: bytearray) -> TunnelStats | Exception:
    if len(buf) > MAX_RESPONSE:
        return SystemFailure(f"wireguard-go UAPI {path}: reply too large")
    if not buf.endswith(b"\n\n"):
        return SystemFailure(f"wireguard-go UAPI {path}: truncated reply")
    try:
        return parse_get_response(buf.decode("utf-8", "replace"))
    except Exception as exc:
        return exc


class UapiClient:
    """Talks to one wireguard-go UAPI socket; one connection per request."""

    def __init__(self, socket_path: str, timeout: float = 5.0):
        self.socket_path = socket_path
        self.timeout = timeout

    def _connect(self, timeout: float | None = None) -> socket.socket:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(self.timeout if timeout is None else timeout)
        try:
            s.connect(self.socket_path)
        except BaseException:
            s.close()
            raise
        return s

    def _exchange(self, request: str) -> str:
        try:
            with self._connect() as s:
                s.sendall(request.encode("ascii"))
                buf = bytearray()
                while not buf.endswith(b"\n\n"):
                    chunk = s.recv(65536)
                    if not chunk:
                        break
                    buf += chunk
                    if len(buf) > MAX_RESPONSE:
                        raise SystemFailure(
                            f"wireguard-go UAPI {self.socket_path}: reply too large"
                        )
        except OSError as exc:
            raise SystemFailure(
                f"wireguard-go UAPI {self.socket_path}: {exc.strerror or exc}"
            ) from None
        if not buf.endswith(b"\n\n"):
            raise SystemFailure(f"wireguard-go UAPI {self.socket_path}: truncated reply")
        return buf.decode("utf-8", "replace")

    def set(self, request_text: str) -> None:
        """Send a `set=1` request (from build_set_request); SystemFailure on a non-zero errno."""
        if not request_text.startswith("set=1\n") or not request_text.endswith("\n\n"):
            raise ValueError("not a UAPI set request")
        if log.isEnabledFor(DEBUG):
            log.debug("UAPI %s <- %s", self.socket_path, redact(request_text).rstrip("\n"))
        reply = self._exchange(request_text)
        code = parse_errno(reply)
        log.debug("UAPI %s -> errno=%d", self.socket_path, code)
        if code != 0:
            raise SystemFailure(
                f"wireguard-go rejected the configuration on {self.socket_path}: "
                f"{_errno_text(code)}"
            )

    def get(self) -> TunnelStats:
        reply = self._exchange("get=1\n\n")
        if log.isEnabledFor(DEBUG):
            log.debug("UAPI %s -> %s", self.socket_path, redact(reply).rstrip("\n"))
        return parse_get_response(reply)

    def device_field(self, key: str) -> str | None:
        """One device-level value of a `get=1` reply (e.g. "fwmark"), or None if absent.

        Never asks for a secret: private_key is refused."""
        if key in _SECRET_KEYS:
            raise ValueError(f"{key} is a secret")
        reply = self._exchange("get=1\n\n")
        code = parse_errno(reply)
        if code != 0:
            raise SystemFailure(f"wireguard-go UAPI get failed: {_errno_text(code)}")
        for line in reply.splitlines():
            name, _, value = line.partition("=")
            if name == "public_key":
                break  # the peers start: no device field after this
            if name == key:
                return value
        return None

    def accepts(self) -> bool:
        """True if something is listening on the socket right now."""
        try:
            with self._connect(timeout=min(self.timeout, 0.5)):
                return True
        except OSError:
            return False

    def wait_ready(self, timeout: float, alive: Callable[[], bool] | None = None) -> None:
        """Poll until the socket accepts a connection.

        SystemFailure after `timeout` seconds, or as soon as `alive()` (if given) returns False.
        """
        start = time.monotonic()
        deadline = start + timeout
        delay = 0.002
        while True:
            if self.accepts():
                return
            if alive is not None and not alive():
                raise SystemFailure(f"wireguard-go exited before {self.socket_path} appeared")
            if time.monotonic() >= deadline:
                raise SystemFailure(
                    f"wireguard-go UAPI socket {self.socket_path} not ready after {timeout:g}s"
                )
            time.sleep(delay)
            # A fine poll while wireguard-go normally starts (10-40 ms): a doubling delay from
            # 10 ms checked at 10, 30, 70 ms, so a start of 12 ms (a busy machine) cost 30 ms.
            # A connect() to a missing socket is cheap; back off only after a slow start.
            if time.monotonic() - start > 0.2:
                delay = min(delay * 2, 0.1)
