"""Running programs in the world's namespaces, and making and removing those namespaces.

Every helper that runs something in a namespace uses `nsenter --net=/run/netns/NAME` (a process)
or `nsexec.run_in_netns` (a fork), never `ip netns exec`.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
from collections.abc import Sequence
from typing import Any

from ..errors import SystemFailure
from ..logs import get_logger
from ..nsexec import netns_path
from .layout import NSENTER

log = get_logger(__name__)

_PROXY_VARS = ("http_proxy", "https_proxy", "all_proxy", "no_proxy", "ftp_proxy")


def clean_env(**extra: str) -> dict[str, str]:
    """os.environ without proxy settings (a proxy would send test traffic elsewhere) plus extra."""
    env = {k: v for k, v in os.environ.items() if k.lower() not in _PROXY_VARS}
    env.update(extra)
    return env


def nsenter_argv(ns: str, argv: Sequence[str]) -> list[str]:
    """argv prefixed with `nsenter --net=PATH` (ns is a name under /run/netns or a path)."""
    path = netns_path(ns)
    if not os.path.exists(path):
        raise SystemFailure(f"network namespace {path} does not exist")
    return [NSENTER, f"--net={path}", "--", *argv]


def ns_run(ns: str, argv: Sequence[str], **kwargs: Any) -> subprocess.CompletedProcess:
    """subprocess.run(argv) inside namespace `ns` (name or path).

    Defaults: text=True, capture_output=True (unless stdout/stderr is given), timeout=30,
    env without proxy variables. Other keyword arguments go to subprocess.run.
    """
    kwargs.setdefault("text", True)
    if "stdout" not in kwargs and "stderr" not in kwargs:
        kwargs.setdefault("capture_output", True)
    kwargs.setdefault("timeout", 30)
    kwargs.setdefault("env", clean_env())
    kwargs.setdefault("stdin", subprocess.DEVNULL)
    return subprocess.run(nsenter_argv(ns, argv), **kwargs)


def ns_popen(ns: str, argv: Sequence[str], **kwargs: Any) -> subprocess.Popen:
    """subprocess.Popen(argv) inside namespace `ns`; the returned pid is the program's own
    (nsenter execs it). Defaults: stdin=DEVNULL, start_new_session=True, env without proxies."""
    kwargs.setdefault("stdin", subprocess.DEVNULL)
    kwargs.setdefault("start_new_session", True)
    kwargs.setdefault("env", clean_env())
    return subprocess.Popen(nsenter_argv(ns, argv), **kwargs)


def ip(ns: str, *args: str, check: bool = True) -> str:
    """`ip ARGS` in `ns`; its output. With `check`, a failure raises SystemFailure."""
    res = ns_run(ns, ["ip", *args], timeout=10)
    if check and res.returncode != 0:
        raise SystemFailure(f"ip {' '.join(args)} in {ns}: {res.stderr.strip()}")
    return res.stdout


def write_proc_sys(values: dict[str, str]) -> None:
    """Write sysctls ({"net.ipv4.ip_forward": "1"}); for `run_in_netns`: in a forked child
    inside the namespace, /proc/sys/net is that namespace's."""
    for key, value in values.items():
        with open("/proc/sys/" + key.replace(".", "/"), "w") as fh:
            fh.write(value)


class Namespaces:
    """The named namespaces of one world. Each is remembered by inode when made: if /run/netns
    gets over-mounted by someone else, the path no longer leads to it, but the processes still
    inside can be found (and ended) by inode when it is removed."""

    def __init__(self) -> None:
        self._inodes: dict[str, int] = {}

    def create(self, ns: str) -> None:
        from ..namespace import create_netns

        create_netns(ns)
        self._inodes[ns] = os.stat(netns_path(ns)).st_ino

    def remove(self, ns: str) -> None:
        """End every process still inside (started in the world, by us or a test), then unbind.
        Raises if the path is still there afterwards."""
        from ..namespace import pids_in_netns_inode, process_name, remove_netns

        inode = self._inodes.pop(ns, None)
        for pid in pids_in_netns_inode(inode) if inode is not None else []:
            log.warning("process %d (%s) still in %s; killing it", pid, process_name(pid), ns)
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        remove_netns(ns)
        path = netns_path(ns)
        if os.path.lexists(path):
            raise SystemFailure(f"{path} could not be removed (is /run/netns mounted over?)")
