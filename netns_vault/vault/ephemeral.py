"""Ephemeral vaults (issue 13): `vault run --ephemeral --config F -- CMD`.

A throwaway vault for one program: up before it starts, down when it exits. The `vault` process
stays as the program's parent (the program runs confined, exactly as `vault run` runs it, in a
forked child), waits for it, takes the vault down and exits as the program did: its exit code,
or the same signal. The state records the owner (pid and start time of that parent): if the
owner is SIGKILLed, nothing can take the vault down at that moment, so the vault is stale, and
`vault down --stale` (also run at the start of every `vault run --ephemeral`) collects it,
ending whatever still runs inside.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
from collections.abc import Callable

from .. import state
from ..logs import get_logger

log = get_logger(__name__)

# Signals the waiting parent passes on to the program (a terminal's SIGINT/SIGQUIT reach the
# program anyway: it is in the same process group; the parent ignores them).
FORWARD = (signal.SIGTERM, signal.SIGHUP, signal.SIGUSR1, signal.SIGUSR2)


def start_time(pid: int) -> int | None:
    """The process's start time (clock ticks after boot, /proc/PID/stat field 22): a pid reused
    by another process has another."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return int(f.read().rsplit(b")", 1)[1].split()[19])
    except (OSError, ValueError, IndexError):
        return None


def owner_record(pid: int | None = None) -> dict:
    pid = os.getpid() if pid is None else pid
    return {"pid": pid, "start": start_time(pid)}


def owner_alive(owner: dict) -> bool:
    pid = owner.get("pid")
    if not isinstance(pid, int) or pid <= 0:
        return False
    now = start_time(pid)
    return now is not None and now == owner.get("start")


def stale_names() -> list[str]:
    """Vaults whose state names an owner that is gone."""
    out = []
    for name in state.state_names():
        with contextlib.suppress(Exception):
            owner = (state.read_state(name) or {}).get("owner")
            if isinstance(owner, dict) and not owner_alive(owner):
                out.append(name)
    return out


def collect_stale() -> list:
    """Take every stale vault down (ending what runs inside); their DownResults or errors."""
    from .bulk import down_many

    names = stale_names()
    return down_many(names, kill=True, keep_going=True) if names else []


def ephemeral_name() -> str:
    return "e" + secrets.token_hex(5)  # 11 characters: a-z 0-9, within the 12 allowed


def run_ephemeral(config: str, launch: Callable[[str], None], name: str | None = None,
                  driver_choice: str = "auto", firewall: str = "auto") -> int:
    """Bring up a vault, run `launch(name)` in a forked child (it execs the program, or raises:
    the error goes up the child's stack to the CLI's report, never into the parent's teardown),
    wait for it, take the vault down; returns the program's exit status as a shell
    would (128 + signal), after re-raising the program's signal on this process if it died of
    one. The caller exits with the value."""
    from .lifecycle import up

    for problem in (r for r in collect_stale() if isinstance(r, BaseException)):
        log.warning("collecting a stale ephemeral vault: %s", problem)
    name = name or ephemeral_name()
    up(name, config, driver_choice=driver_choice, firewall=firewall, owner=owner_record())
    old = {s: signal.getsignal(s) for s in (*FORWARD, signal.SIGINT, signal.SIGQUIT)}
    status = None
    parent = os.getpid()
    try:
        child = os.fork()
        if child == 0:  # the program's side: `vault run` exactly
            for s, h in old.items():
                signal.signal(s, h)
            launch(name)  # execs the program, or raises: the caller reports it (in this child)
            os._exit(1)  # not reached
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGQUIT, signal.SIG_IGN)
        for s in FORWARD:
            signal.signal(s, lambda sig, _frame: _forward(child, sig))
        while True:
            try:
                _, status = os.waitpid(child, 0)
                break
            except InterruptedError:
                continue
    except BaseException:
        if os.getpid() == parent:  # (the child goes on to report why it could not exec)
            _teardown(name, old)
        raise
    _teardown(name, old)
    if status is not None and os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        signal.signal(sig, signal.SIG_DFL)
        os.kill(os.getpid(), sig)  # die as the program died
        return 128 + sig
    return os.waitstatus_to_exitcode(status) if status is not None else 1


def _teardown(name: str, handlers: dict) -> None:
    from .teardown import down

    try:
        result = down(name, kill=True)
        for pid, cmd in result.processes:
            log.info("ended pid %d left in ephemeral vault %s: %s", pid, name, cmd)
    finally:
        for s, h in handlers.items():
            signal.signal(s, h)


def _forward(child: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(child, sig)
