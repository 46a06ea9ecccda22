"""The `--confirm-within` watcher: a detached process that puts the earlier rules back unless
`vault lockdown confirm` comes first ("commit confirmed").

It must outlive the shell that ran `apply`, even a SIGKILLed one, so it is not a thread or a
child of that process: `spawn` double-forks, the middle process calls setsid() and exits, and
the grandchild execs `python -m netns_vault.lockdown.watch` in a session of its own (reparented
to init; no SIGHUP from the SSH session that dies). It holds an fd of the target namespace, so it
acts in the namespace the lockdown was applied in even if that namespace's name goes away.

This module starts and stops the watcher; watch.py is the watcher itself (it calls back into
core.py, which imports this module: two modules, so no import cycle).
It acts only if the state still carries its token; `confirm` and `revert` clear the token and
SIGTERM it (after checking /proc/PID/cmdline, since pids are reused).
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import time

from ..errors import SystemFailure
from ..logs import get_logger
from ..nsexec import netns_path
from ..procfs import alive as _alive
from ..procfs import cmdline as _cmdline

log = get_logger(__name__)

MODULE = "netns_vault.lockdown.watch"
STOP_TIMEOUT = 3.0


def _package_root() -> str:
    """The directory holding the netns_vault package (lockdown/timer.py -> three levels up)."""
    return os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def spawn(state_dir: str, netns: str | None, token: str, deadline: float, log_path: str) -> int:
    """Start the detached watcher; returns its pid."""
    ns_fd = os.open(netns_path(netns), os.O_RDONLY) if netns is not None else None
    argv = [sys.executable, "-m", MODULE, "--state-dir", state_dir, "--token", token,
            "--deadline", repr(deadline)]
    if ns_fd is not None:
        argv += ["--netns-fd", str(ns_fd)]
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [_package_root(),
                                                      env.get("PYTHONPATH")]))
    r, w = os.pipe()
    sys.stdout.flush()
    sys.stderr.flush()
    try:
        pid = os.fork()
        if pid == 0:  # the middle process: new session, fork again, leave
            try:
                os.close(r)
                os.setsid()
                if os.fork():
                    os._exit(0)
                os.write(w, str(os.getpid()).encode())
                os.close(w)
                null = os.open(os.devnull, os.O_RDONLY)
                out = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
                os.dup2(null, 0)
                os.dup2(out, 1)
                os.dup2(out, 2)
                if ns_fd is not None:
                    os.set_inheritable(ns_fd, True)
                os.chdir("/")
                os.execve(sys.executable, argv, env)
            finally:
                os._exit(127)
        os.close(w)
        w = -1
        with os.fdopen(r, "rb") as inp:
            r = -1
            data = inp.read()
        os.waitpid(pid, 0)
    finally:
        for fd in (r, w, ns_fd):
            if fd is not None and fd >= 0:
                with contextlib.suppress(OSError):
                    os.close(fd)
    if not data:
        raise SystemFailure("could not start the confirm timer")
    timer_pid = int(data)
    log.debug("confirm timer started: pid %d, reverts at %s unless confirmed", timer_pid,
              time.strftime("%H:%M:%S", time.localtime(deadline)))
    return timer_pid


def is_timer(pid: int, token: str) -> bool:
    """True if pid is a live watcher carrying `token`."""
    argv = _cmdline(pid)
    return MODULE in argv and token in argv and _alive(pid)


def find(token: str) -> list[int]:
    """Pids of live watchers carrying `token` (for a watcher whose pid was never recorded)."""
    return [int(p) for p in os.listdir("/proc") if p.isdigit() and is_timer(int(p), token)]


def stop(pid: int | None, token: str) -> None:
    """SIGTERM the watcher of `token` and wait until it is gone. Idempotent."""
    pids = [pid] if pid is not None and is_timer(pid, token) else find(token)
    for p in pids:
        log.debug("kill -TERM %d  # the confirm timer", p)
        with contextlib.suppress(ProcessLookupError):
            os.kill(p, signal.SIGTERM)
        deadline = time.monotonic() + STOP_TIMEOUT
        while _alive(p) and time.monotonic() < deadline:
            time.sleep(0.02)
        if _alive(p):
            with contextlib.suppress(ProcessLookupError):
                os.kill(p, signal.SIGKILL)
