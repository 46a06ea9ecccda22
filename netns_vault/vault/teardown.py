"""Taking a vault down (`down`): idempotent, from its state or from none."""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import time
from dataclasses import dataclass, field

from .. import dns, namespace, procfs, state
from ..errors import ConflictError, InterruptedAfterChange, SystemFailure
from ..names import VaultNames
from ..nsexec import run_in_netns
from ..rollback import held_interrupts
from ..tunnel import get_driver
from . import inside
from .install import StepHook, run_steps, sweep_tunnel, tunnel_handle
from .provider import provider_for

log = logging.getLogger(__name__)

DOWN_STEPS = ("processes", "tunnel", "namespace", "files")


@dataclass
class DownResult:
    name: str
    existed: bool
    processes: list[tuple[int, str]]  # still inside (now without network), or killed
    killed: bool
    problems: list[str] = field(default_factory=list)


def terminate(pids: list[int], grace: float = 3.0) -> None:
    """SIGTERM each, then SIGKILL whatever is still alive after `grace` seconds."""
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    alive = list(pids)
    while alive and time.monotonic() < deadline:
        alive = [p for p in alive if procfs.alive(p)]
        if alive:
            time.sleep(0.05)
    for pid in alive:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


class _DownRun:
    """The steps of one `down` (see DOWN_STEPS). Every step is safe to run again: a `down`
    killed half way is finished by the next one."""

    def __init__(self, names: VaultNames, kill: bool, force: bool):
        self.names, self.kill, self.force = names, kill, force
        self.record = state.read_state(names.name)
        self.exists = namespace.netns_exists(names.netns) or os.path.lexists(names.netns_path)
        self.provider = provider_for((self.record or {}).get("provider", "netns"))
        self.problems: list[str] = []
        self.inside: list[tuple[int, str]] = []

    def anything_left(self) -> bool:
        names = self.names
        return (self.record is not None or self.exists or os.path.exists(names.etc_dir)
                or bool(state.stale_temp_files(names.name)) or sweep_tunnel(names))

    def step_processes(self) -> None:
        if not self.exists:
            return
        own = set(self.provider.own_pids(self.names))
        if not self.force:  # e.g. containers still attached: ConflictError, nothing changed yet
            self.provider.check_detachable(self.names)
        pids = [p for p in namespace.pids_in_netns(self.names.netns) if p not in own]
        self.inside = [(p, namespace.process_name(p)) for p in pids]
        if self.kill and pids:
            terminate(pids)

    def step_tunnel(self) -> None:
        names = self.names
        handle = tunnel_handle(names, self.record)
        try:
            get_driver(handle.driver).destroy(handle, names.netns if self.exists else None)
        except Exception as exc:
            self.problems.append(f"stopping tunnel: {exc}")
        try:
            sweep_tunnel(names)
        except Exception as exc:
            self.problems.append(f"stopping leftover tunnels: {exc}")
        if self.exists:
            try:
                run_in_netns(names.netns, inside.delete_links)
            except Exception as exc:
                self.problems.append(f"clearing interfaces: {exc}")

    def step_namespace(self) -> None:
        if self.exists or self.provider.outlives_netns_path():  # a holder outlives /run/netns
            try:
                self.provider.destroy(self.names, self.force)
            except ConflictError:
                raise
            except Exception as exc:
                self.problems.append(f"removing namespace: {exc}")

    def step_files(self) -> None:
        dns.remove_dns_files(self.names.etc_dir)
        state.remove_state(self.names.name)
        state.remove_log(self.names.name)


def down(name: str, kill: bool = False, force: bool = False,
         on_step: StepHook | None = None) -> DownResult:
    """Take vault NAME down. Idempotent; works from another process's state or from none, and
    finds what a killed `up` or `reload` left (a wireguard-go serving vw-NAME, its socket, a
    temp state file).

    The tunnel goes first, so a process still inside is left with only `lo`: it loses its network,
    it never gets another one. Ctrl-C does not stop a `down` half way: it finishes, then raises
    InterruptedAfterChange. `on_step(name)` runs after each step of DOWN_STEPS.
    """
    names = VaultNames.of(name)
    with held_interrupts() as interrupts:
        try:
            result = _down_locked(names, kill, force, on_step)
        finally:
            state.cleanup_dir()
    if interrupts:
        raise InterruptedAfterChange(f"interrupted after vault {names.name} was down; it is down")
    return result


def _down_locked(names: VaultNames, kill: bool, force: bool,
                 on_step: StepHook | None) -> DownResult:
    with state.vault_lock(names.name, remove_after=True):
        state.remove_stale_supervisor_files(names.name)  # of a supervisor killed outright
        run = _DownRun(names, kill, force)
        if not run.anything_left():
            state.remove_log(names.name)
            return DownResult(names.name, False, [], False)
        run_steps(run, DOWN_STEPS, on_step, f"down {names.name}")
        inside_now = run.inside
        if not kill:  # only what still runs: `--force` stopped the attached containers
            inside_now = [(pid, cmd) for pid, cmd in inside_now if procfs.alive(pid)]
    if run.problems:
        raise SystemFailure(f"vault {names.name} is down, with problems: "
                            + "; ".join(run.problems))
    return DownResult(names.name, True, inside_now, kill)
