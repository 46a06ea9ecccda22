"""Processes the world starts: stopping them, waiting for them, and what /proc says of them."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import struct
import subprocess
import time
from collections.abc import Callable

from ..errors import SystemFailure
from ..logs import get_logger
from .layout import STOP_TIMEOUT

log = get_logger(__name__)


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


def wait_until(cond: Callable[[], bool], timeout: float, what: str,
                alive: Callable[[], bool] | None = None,
                details: Callable[[], str] | None = None) -> None:
    """Poll `cond` until true; SystemFailure when `timeout` passes or `alive` says the process
    died (with `details()` in the message)."""
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


def pid_listens(pid: int, table: str, addr: str, port: int) -> bool:
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


def pid_has_udp_port(pid: int, port: int) -> bool:
    """True if the netns of `pid` has a UDP socket on `port` (any address, IPv4 or IPv6)."""
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


def tail(path: str, limit: int = 800) -> str:
    """The last `limit` bytes of a file as text ("" if it cannot be read)."""
    try:
        with open(path, "rb") as fh:
            fh.seek(0, os.SEEK_END)
            size = fh.tell()
            fh.seek(max(0, size - limit))
            return fh.read().decode("utf-8", "replace").strip()
    except OSError:
        return ""
