"""Named network namespaces under /run/netns, through pyroute2 (no `ip` subprocesses; binding
another process's namespace and the last-resort cleanup still run `mount`/`umount`)."""

from __future__ import annotations

import contextlib
import logging
import os
import subprocess

from .errors import SystemFailure

log = logging.getLogger(__name__)

NETNS_DIR = "/run/netns"


def netns_path(name: str) -> str:
    return os.path.join(NETNS_DIR, name)


def netns_exists(name: str) -> bool:
    """True when /run/netns/NAME is a bound namespace (not just a leftover empty file)."""
    try:
        return os.path.ismount(netns_path(name))
    except OSError:
        return False


def create_netns(name: str) -> None:
    """Create a new, empty network namespace bound at /run/netns/NAME. Fails if it exists."""
    from pyroute2 import netns as pr_netns

    if os.path.exists(netns_path(name)):
        raise SystemFailure(f"network namespace {name} already exists")
    log.debug("ip netns add %s", name)
    try:
        pr_netns.create(name)
    except Exception as exc:
        _remove_leftover(name)
        raise SystemFailure(f"creating network namespace {name}: {exc}") from exc


def remove_netns(name: str) -> None:
    """Unbind /run/netns/NAME. Idempotent. Processes still inside keep the namespace alive."""
    path = netns_path(name)
    if not os.path.lexists(path):
        return
    log.debug("ip netns del %s", name)
    from pyroute2 import netns as pr_netns

    try:
        pr_netns.remove(name)
    except Exception:
        # pyroute2 gives up on a half-made entry; umount/unlink by hand.
        _remove_leftover(name)
    _remove_leftover(name)


def _remove_leftover(name: str) -> None:
    path = netns_path(name)
    if os.path.ismount(path):
        subprocess.run(["umount", "-l", path], check=False, capture_output=True)
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)


def bind_netns_of_pid(pid: int, name: str) -> None:
    """Bind the network namespace of process PID at /run/netns/NAME (what `ip netns attach` does)."""
    path = netns_path(name)
    if os.path.exists(path):
        raise SystemFailure(f"network namespace {name} already exists")
    os.makedirs(NETNS_DIR, exist_ok=True)
    _ensure_netns_dir_shared()
    fd = os.open(path, os.O_RDONLY | os.O_CREAT | os.O_EXCL, 0)
    os.close(fd)
    res = subprocess.run(["mount", "--bind", f"/proc/{pid}/ns/net", path],
                         capture_output=True, text=True)
    if res.returncode != 0:
        _remove_leftover(name)
        raise SystemFailure(f"binding netns of pid {pid} at {path}: {res.stderr.strip()}")


def _is_mount_point(path: str) -> bool:
    """From mountinfo: os.path.ismount misses a bind mount of a directory onto itself."""
    with open("/proc/self/mountinfo") as f:
        return any(line.split()[4] == path for line in f)


def _ensure_netns_dir_shared() -> None:
    # What iproute2 does: /run/netns must be a shared mount point so binds under it propagate
    # to every mount namespace. Bind it onto itself only once, when it is not a mount point yet.
    if not _is_mount_point(NETNS_DIR):
        subprocess.run(["mount", "--bind", NETNS_DIR, NETNS_DIR], check=False, capture_output=True)
    subprocess.run(["mount", "--make-shared", NETNS_DIR], check=False, capture_output=True)


def netns_inode(name_or_path: str) -> int | None:
    path = name_or_path if name_or_path.startswith("/") else netns_path(name_or_path)
    try:
        return os.stat(path).st_ino
    except OSError:
        return None


def pids_in_netns(name_or_path: str) -> list[int]:
    """Every process whose network namespace is this one."""
    inode = netns_inode(name_or_path)
    return [] if inode is None else pids_in_netns_inode(inode)


def pids_in_netns_inode(inode: int) -> list[int]:
    """Every process (but this one) whose network namespace has this inode: works even after the
    namespace's path was unbound or mounted over."""
    me = os.getpid()
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        pid = int(entry)
        if pid == me:
            continue
        try:
            if os.stat(f"/proc/{pid}/ns/net").st_ino == inode:
                found.append(pid)
        except OSError:
            continue
    return sorted(found)


def process_name(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            parts = f.read().split(b"\0")
        return " ".join(p.decode(errors="replace") for p in parts if p)[:200] or "?"
    except OSError:
        return "?"
