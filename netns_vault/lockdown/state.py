"""Lockdown state in one directory (default /run/netns-vault/lockdown/), written atomically.

    state.json       LockdownState: what is in force, the options, the resolved endpoints, timer
    base.json        Snapshot taken by the first `apply`: what `revert` restores
    rollback.json    while a `--confirm-within` is pending: the Snapshot taken by that `apply`
                     and the state record before it (what the timer goes back to)
    lock             flock: apply, confirm, revert, refresh and the timer never overlap
    timer.log        the detached confirm timer's log
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from typing import Any

from ..errors import ConflictError, SystemFailure
from ..firewall.backend import DEFAULT as DEFAULT_BACKEND
from ..state import write_json_atomic
from .rules import LockdownSpec

DEFAULT_STATE_DIR = "/run/netns-vault/lockdown"
STATE_VERSION = 1
LOCK_TIMEOUT = 15.0
STATE, BASE, ROLLBACK, LOCK, TIMER_LOG = (
    "state.json", "base.json", "rollback.json", "lock", "timer.log")


@dataclass
class TimerInfo:
    token: str
    deadline: float  # time.time() at which the earlier rules come back
    pid: int | None = None


@dataclass
class LockdownState:
    netns: str | None  # as given (a name, a path, or None = the namespace of the caller)
    netns_inode: int
    config: str
    endpoint_hosts: list[tuple[str, int]]  # as written in the config, for `refresh`
    phys: str | None  # --phys, or None = from the route to each endpoint
    fwmark: int | None
    spec: LockdownSpec
    applied_at: float = field(default_factory=time.time)
    timer: TimerInfo | None = None
    phase: str = "applying"  # "applying" until every step is done, then "applied"
    marked_tunnel: bool = False  # apply gave the tunnel its fwmark: revert takes it off
    firewall: str = DEFAULT_BACKEND  # the backend it was applied with: all later commands use it
    version: int = STATE_VERSION

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["spec"] = self.spec.to_dict()
        d["endpoint_hosts"] = [list(h) for h in self.endpoint_hosts]
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> LockdownState:
        timer = d.get("timer")
        return cls(
            netns=d.get("netns"),
            netns_inode=int(d["netns_inode"]),
            config=str(d["config"]),
            endpoint_hosts=[(str(h), int(p)) for h, p in d["endpoint_hosts"]],
            phys=d.get("phys"),
            fwmark=d.get("fwmark"),
            spec=LockdownSpec.from_dict(d["spec"]),
            applied_at=float(d["applied_at"]),
            timer=TimerInfo(**timer) if timer else None,
            phase=str(d.get("phase", "applied")),
            marked_tunnel=bool(d.get("marked_tunnel", False)),
            firewall=str(d.get("firewall") or DEFAULT_BACKEND),
            version=int(d.get("version", STATE_VERSION)),
        )


class Store:
    """The files of one state directory."""

    def __init__(self, directory: str = DEFAULT_STATE_DIR):
        self.directory = directory

    def path(self, name: str) -> str:
        return os.path.join(self.directory, name)

    @contextlib.contextmanager
    def locked(self, timeout: float = LOCK_TIMEOUT) -> Iterator[None]:
        os.makedirs(self.directory, mode=0o700, exist_ok=True)
        fd = os.open(self.path(LOCK), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            deadline = time.monotonic() + timeout
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except OSError as exc:
                    if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN):
                        raise SystemFailure(f"locking {self.path(LOCK)}: {exc}") from exc
                    if time.monotonic() >= deadline:
                        raise ConflictError("another `vault lockdown` command is running "
                                            f"(lock {self.path(LOCK)})") from None
                    time.sleep(0.05)
            yield
        finally:
            os.close(fd)

    def read(self, name: str) -> dict[str, Any] | None:
        try:
            with open(self.path(name)) as fh:
                return json.load(fh)
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as exc:
            raise SystemFailure(f"cannot read {self.path(name)}: {exc}") from exc

    def write(self, name: str, data: dict[str, Any]) -> None:
        """Atomically: a temp file, fsync, rename; root-only."""
        os.makedirs(self.directory, mode=0o700, exist_ok=True)
        write_json_atomic(self.path(name), data)

    def remove(self, *names: str) -> None:
        for name in names:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.path(name))

    def load_state(self) -> LockdownState | None:
        data = self.read(STATE)
        return None if data is None else LockdownState.from_dict(data)

    def save_state(self, state: LockdownState) -> None:
        self.write(STATE, state.to_dict())

    def clear(self) -> None:
        """Forget the lockdown: every file but the lock and the timer log."""
        self.remove(STATE, BASE, ROLLBACK)
