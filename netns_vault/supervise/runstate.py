"""The supervisor's lock and state file under /run/netns-vault.

  NAME.supervise.lock   flock'ed for the supervisor's whole life; holds its pid (so a second
                        supervisor can name the first one)
  NAME.supervise.json   its view: connected, stale since T, reconnecting (attempt n, next in s),
                        healing; written atomically, read by `vault status` and `vault ls`

The vault's own lock (NAME.lock) is not used: `vault reload` and the supervisor's own repairs
take that one, briefly, for each change.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import time
from typing import Any

from .. import state
from ..errors import ConflictError, SystemFailure


def lock_path(name: str) -> str:
    return state.supervisor_paths(name)[0]


def state_path(name: str) -> str:
    return state.supervisor_paths(name)[1]


class SupervisorLock:
    """Held for the life of one `vault supervise`; ConflictError (exit 4) naming the holder."""

    def __init__(self, name: str):
        self.name = name
        self.fd: int | None = None

    def acquire(self) -> None:
        state.ensure_dir()
        path = lock_path(self.name)
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            holder = _read_pid(fd)
            os.close(fd)
            if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
                who = f"pid {holder}" if holder else "another process"
                raise ConflictError(
                    f"vault {self.name} is already supervised by {who}") from None
            raise SystemFailure(f"locking {path}: {exc}") from exc
        try:
            same = os.fstat(fd).st_ino == os.stat(path).st_ino
        except FileNotFoundError:
            same = False
        if not same:  # the previous supervisor unlinked it as we opened it: take the new one
            os.close(fd)
            return self.acquire()
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self.fd = fd

    def release(self) -> None:
        if self.fd is None:
            return
        with contextlib.suppress(FileNotFoundError):
            os.unlink(lock_path(self.name))
        with contextlib.suppress(FileNotFoundError):
            os.unlink(state_path(self.name))
        os.close(self.fd)
        self.fd = None
        state.cleanup_dir()


def _read_pid(fd: int) -> int | None:
    try:
        return int(os.pread(fd, 32, 0).decode().strip() or 0) or None
    except (OSError, ValueError):
        return None


def write(name: str, view: dict[str, Any]) -> None:
    state.ensure_dir()
    state.write_runtime_json(state_path(name), {**view, "pid": os.getpid(),
                                            "updated_at": time.time()})


def supervised_by(name: str) -> int | None:
    """The pid of the running supervisor of vault NAME, or None (its lock is not held)."""
    try:
        fd = os.open(lock_path(name), os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except OSError:
            return _read_pid(fd) or -1  # held: a supervisor runs
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)


def read_view(name: str) -> dict[str, Any] | None:
    """The running supervisor's view of vault NAME, or None when none runs."""
    pid = supervised_by(name)
    if pid is None:
        return None
    try:
        with open(state_path(name)) as f:
            view = json.load(f)
    except (OSError, ValueError):
        view = {"state": "starting"}
    view["pid"] = pid
    return view


def describe(view: dict[str, Any] | None, now: float | None = None) -> str:
    """One phrase for status and ls: "connected", "stale since 12:03:04", "reconnecting
    (attempt 3, next in 2 s)", "healing (holder restarted)", or "not supervised"."""
    if view is None:
        return "not supervised"
    now = time.time() if now is None else now
    what = view.get("state", "?")
    if what == "reconnecting":
        nxt = max(0.0, float(view.get("next_at") or now) - now)
        since = time.strftime("%H:%M:%S", time.localtime(view.get("since") or now))
        return f"reconnecting (attempt {view.get('attempt', 0)}, next in {nxt:.0f} s; " \
               f"stale since {since})"
    if what == "stale":
        since = time.strftime("%H:%M:%S", time.localtime(view.get("since") or now))
        return f"stale since {since}"
    if what == "healing":
        return f"healing ({view.get('reason', 'repairing')})"
    return str(what)
