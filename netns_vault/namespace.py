"""Named network namespaces under /run/netns (paths.NETNS_DIR), through pyroute2's netns module
and libc: no `ip` or `mount` subprocesses."""

from __future__ import annotations

import contextlib
import os

from . import paths, procfs
from .errors import SystemFailure
from .logs import get_logger

log = get_logger(__name__)

MNT_DETACH = 2


def netns_path(name: str) -> str:
    return paths.netns_path(name)


def netns_exists(name: str) -> bool:
    """True when /run/netns/NAME is a bound namespace (not just a leftover empty file)."""
    try:
        return os.path.ismount(netns_path(name))
    except OSError:
        return False


def create_netns(name: str) -> None:
    """Create a new, empty network namespace bound at /run/netns/NAME. Fails if it exists."""
    from .netlink import create_netns as pr_create

    if os.path.exists(netns_path(name)):
        raise SystemFailure(f"network namespace {name} already exists")
    log.debug("ip netns add %s", name)
    try:
        pr_create(netns_path(name))
    except Exception as exc:
        _remove_leftover(name)
        raise SystemFailure(f"creating network namespace {name}: {exc}") from exc


def bind_netns_of_pid(pid: int, name: str) -> None:
    """Bind the network namespace of process PID at /run/netns/NAME (`ip netns attach`).

    Like `create_netns`, a failure leaves nothing behind; an interrupt in the middle may leave
    the empty mount point, which `remove_netns` (the caller's undo, registered first) removes."""
    from .netlink import attach_netns

    path = netns_path(name)
    if os.path.exists(path):
        raise SystemFailure(f"network namespace {name} already exists")
    log.debug("ip netns attach %s %d", name, pid)
    try:
        # In this process: makes /run/netns a shared mount point as iproute2 does, creates the
        # mount point, binds /proc/PID/ns/net on it.
        attach_netns(path, pid)
    except Exception as exc:
        _remove_leftover(name)
        raise SystemFailure(f"binding netns of pid {pid} at {path}: {exc}") from exc


def remove_netns(name: str) -> None:
    """Unbind /run/netns/NAME. Idempotent. Processes still inside keep the namespace alive."""
    if not os.path.lexists(netns_path(name)):
        return
    log.debug("ip netns del %s", name)
    _remove_leftover(name)


def _remove_leftover(name: str) -> None:
    """Lazily unmount and unlink /run/netns/NAME, whatever state it is in (safe to repeat)."""
    from .nsexec import libc

    path = netns_path(name)
    if os.path.ismount(path):
        libc().umount2(path.encode(), MNT_DETACH)
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)


def netns_inode(name_or_path: str) -> int | None:
    try:
        return os.stat(netns_path(name_or_path)).st_ino
    except OSError:
        return None


def pids_in_netns(name_or_path: str) -> list[int]:
    """Every process (but this one) whose network namespace is this one."""
    try:
        st = os.stat(netns_path(name_or_path))
    except OSError:
        return []
    return procfs.pids_in_netns((st.st_dev, st.st_ino))


def process_name(pid: int) -> str:
    return procfs.command_line(pid)


def pids_in_netns_inode(inode: int) -> list[int]:
    """Every process (but this one) whose network namespace has this inode: works even after the
    namespace's path was unbound or mounted over."""
    return procfs.pids_in_netns(inode)
