"""Reading /proc: is a process alive, its command line, its network namespace, and which
processes share one. The one home of these helpers (standard library only).

A pid is "alive" when its process exists and is not a zombie (state Z) or dead (X, x): a zombie
runs no code and holds no socket, and one may never be reaped when PID 1 does not reap (in a
container), so waiting for it to disappear could wait forever.
"""

from __future__ import annotations

import os
from collections.abc import Callable

PROC = "/proc"
NOT_ALIVE_STATES = frozenset("ZXx")


def stat_state(stat: bytes) -> str | None:
    """The state letter of a /proc/PID/stat line, or None if it cannot be parsed.

    The command name (field 2, in parentheses) may itself hold ") ", so the state is found
    after the LAST ")"."""
    end = stat.rfind(b")")
    if end < 0 or len(stat) < end + 3:
        return None
    return stat[end + 2:end + 3].decode("ascii", "replace")


def alive(pid: int) -> bool:
    """True when process `pid` exists and is neither a zombie nor dead (see the module doc)."""
    try:
        with open(f"{PROC}/{pid}/stat", "rb") as f:
            state = stat_state(f.read())
    except OSError:
        return False
    return state is not None and state not in NOT_ALIVE_STATES


def split_cmdline(raw: bytes) -> list[str]:
    """The arguments of a /proc/PID/cmdline (NUL-separated; empty ones dropped)."""
    return [a.decode("utf-8", "replace") for a in raw.split(b"\0") if a]


def cmdline(pid: int) -> list[str]:
    """The argv of process `pid`; [] when it is gone, a kernel thread or unreadable."""
    try:
        with open(f"{PROC}/{pid}/cmdline", "rb") as f:
            return split_cmdline(f.read())
    except OSError:
        return []


def command_line(pid: int, limit: int = 200) -> str:
    """The command line of `pid` as one string (for a listing), or "?"."""
    return " ".join(cmdline(pid))[:limit] or "?"


def pids() -> list[int]:
    """Every pid in /proc, sorted."""
    return sorted(int(e) for e in os.listdir(PROC) if e.isdigit())


def find_pids(match: Callable[[list[str]], bool]) -> list[int]:
    """Live processes whose argv `match` accepts, sorted."""
    return [pid for pid in pids() if match(cmdline(pid)) and alive(pid)]


def netns_id(pid: int | str) -> tuple[int, int] | None:
    """(device, inode) of the network namespace of process `pid` ("self" for this one)."""
    try:
        st = os.stat(f"{PROC}/{pid}/ns/net")
    except OSError:
        return None
    return st.st_dev, st.st_ino


def netns_inode(pid: int | str) -> int | None:
    found = netns_id(pid)
    return found[1] if found else None


def pids_in_netns(ns_id: tuple[int, int] | int, exclude_self: bool = True) -> list[int]:
    """Every process in the network namespace `ns_id` ((device, inode), or an inode), sorted."""
    me = os.getpid()
    found = []
    for pid in pids():
        if exclude_self and pid == me:
            continue
        got = netns_id(pid)
        if got is None:
            continue
        if got == ns_id or (isinstance(ns_id, int) and got[1] == ns_id):
            found.append(pid)
    return found


def netns_map() -> dict[tuple[int, int], list[int]]:
    """(device, inode) of each network namespace -> the processes in it (but this one): one scan
    of /proc for many namespaces (`vault ls` with many vaults up)."""
    me = os.getpid()
    out: dict[tuple[int, int], list[int]] = {}
    for pid in pids():
        if pid == me:
            continue
        got = netns_id(pid)
        if got is not None:
            out.setdefault(got, []).append(pid)
    return out


def wait_exit(pid: int, timeout: float) -> bool:
    """Wait until process `pid` is no longer alive (gone or a zombie), at most `timeout` seconds:
    through a pidfd (woken the moment it exits), else by polling. True when it has exited."""
    import select
    import time

    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return True
    except (OSError, AttributeError):
        deadline = time.monotonic() + timeout
        while alive(pid):
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.005)
        return True
    try:
        poller = select.poll()
        poller.register(fd, select.POLLIN)
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if poller.poll(max(0, int(left * 1000))) or not alive(pid):
                return True
            if left <= 0:
                return False
    finally:
        os.close(fd)
