"""Probes from inside a namespace: HTTP (curl), DNS (a UDP query from a forked child), ping."""

from __future__ import annotations

import secrets
import socket
import struct
import subprocess
import time
from dataclasses import dataclass

from ..logs import get_logger
from ..nsexec import run_in_netns
from .layout import BUSYBOX, CURL, DNS_ADDR, WEB_URL
from .namespaces import ns_run

log = get_logger(__name__)


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
