"""Packet capture: tcpdump in a namespace (`Capture`) and a reader of the pcap it writes."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import struct
import subprocess
import tempfile
import time
from dataclasses import dataclass

from ..errors import SystemFailure, UsageError
from ..logs import get_logger
from .layout import ENDPOINT_ADDR, ENDPOINT_PORT, START_TIMEOUT, TCPDUMP
from .namespaces import ns_popen
from .processes import stop_process, tail, wait_until

log = get_logger(__name__)


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
    quoted: Packet | None = None  # for an ICMP error: the packet it is about (its headers)

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
    quoted = None
    if proto in (6, 17) and len(payload) >= 4:
        sport, dport = struct.unpack("!HH", payload[:4])
    elif proto in (1, 58) and len(payload) > 8 and _is_icmp_error(proto, payload[0]):
        quoted = _parse_ip(payload[8:], ts, len(payload) - 8)
    return Packet(family, name, src, dst, sport, dport, length, ts, quoted)


def _is_icmp_error(proto: int, icmp_type: int) -> bool:
    """Destination unreachable, time exceeded, parameter problem (and ICMPv6's packet too big):
    the kinds that quote the packet they are about."""
    return icmp_type in ((3, 11, 12) if proto == 1 else (1, 2, 3, 4))


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
            wait_until(lambda: "listening on" in tail(errpath, 4000), self.start_timeout,
                        f"tcpdump on {self.iface} in {self.ns}",
                        alive=lambda: proc.poll() is None, details=lambda: tail(errpath))
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
            self.tcpdump_stderr = tail(os.path.join(self._dir, "tcpdump.stderr"), 4000)
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
            if p.is_arp or _is_wireguard(p, ip, port):
                continue
            if p.quoted is not None and _is_wireguard(p.quoted, ip, port):
                # The kernel's ICMP error about an encrypted WireGuard datagram (e.g. the server
                # still sending to the closed port of a wireguard-go killed earlier): it quotes
                # only ciphertext headers, nothing a program in a vault sent.
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


def _is_wireguard(p: Packet, ip: str, port: int) -> bool:
    """WireGuard UDP to or from the endpoint, or coming FROM the server's WireGuard port on
    another of its addresses (the server answers a peer at the address that peer last used):
    encrypted, and inbound, so never a leak of the host's."""
    if p.proto != "udp":
        return False
    return p.involves(ip, port) or (p.sport == port and p.dport != port)
