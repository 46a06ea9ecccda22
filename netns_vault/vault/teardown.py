"""Taking a vault down (`down`): idempotent, from its state or from none.

`down` signals the vault's wireguard-go as soon as it holds the vault's lock, before it imports
what the other steps need (the tunnel drivers, the netns helpers): wireguard-go takes 15-25 ms to
exit (closing its TUN waits for the kernel), and those imports run meanwhile. This module's own
imports are therefore the standard library's light parts and this package's light modules only.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time

from .. import procfs, state
from ..errors import ConflictError, InterruptedAfterChange, SystemFailure
from ..interrupts import held_interrupts
from ..logs import get_logger
from ..names import VaultNames
from ..value import ValueObject
from ..wgproc import is_wireguard_go

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from .install import StepHook

log = get_logger(__name__)

DOWN_STEPS = ("processes", "tunnel", "namespace", "files")


class DownResult(ValueObject):
    """What `down` did: whether the vault existed, and the processes that were inside."""

    __slots__ = ("name", "existed", "processes", "killed", "problems")

    def __init__(self, name: str, existed: bool, processes: list[tuple[int, str]],
                 killed: bool, problems: list[str] | None = None):
        self.name, self.existed, self.killed = name, existed, killed
        self.processes = processes  # still inside (now without network), or killed
        self.problems = problems if problems is not None else []

    def to_dict(self) -> dict[str, Any]:
        return self.fields()


def signal_tunnel_first(names: VaultNames, record: dict | None) -> int | None:
    """SIGTERM the wireguard-go that `record` names, if it is still one serving the vault's
    interface; returns its pid. The first change `down` makes, and only for a plain namespace:
    a Docker holder's `down` may still refuse (containers attached) before it changes anything.
    The tunnel step then waits for it to exit (and kills it if it will not)."""
    if not record or record.get("provider", "netns") != "netns":
        return None
    tunnel = record.get("tunnel")
    if not isinstance(tunnel, dict) or tunnel.get("driver") != "userspace":
        return None
    pid = tunnel.get("pid")
    if not isinstance(pid, int) or tunnel.get("ifname") != names.iface:
        return None
    if not is_wireguard_go(pid, names.iface):
        return None
    log.debug("kill -TERM %d (wireguard-go %s)", pid, names.iface)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    return pid


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

    def __init__(self, names: VaultNames, kill: bool, force: bool, record: dict | None):
        from .. import namespace
        from .provider import provider_for

        self.names, self.kill, self.force = names, kill, force
        self.record = record
        self.exists = namespace.netns_exists(names.netns) or os.path.lexists(names.netns_path)
        self.provider = provider_for((self.record or {}).get("provider", "netns"))
        self.problems: list[str] = []
        self.inside: list[tuple[int, str]] = []

    def anything_left(self) -> bool:
        from .install import sweep_tunnel

        names = self.names
        return (self.record is not None or self.exists or os.path.exists(names.etc_dir)
                or bool(state.stale_temp_files(names.name)) or sweep_tunnel(names))

    def step_processes(self) -> None:
        from .. import namespace

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
        from ..nsexec import run_in_netns
        from ..tunnel import get_driver
        from . import inside
        from .install import sweep_tunnel, tunnel_handle

        names = self.names
        handle = tunnel_handle(names, self.record)
        try:
            # No netns: the driver stops the tunnel and removes what it left on the host; the
            # links inside go with delete_links below, in one helper child.
            get_driver(handle.driver).destroy(handle, None)
        except Exception as exc:
            self.problems.append(f"stopping tunnel: {exc}")
        try:
            sweep_tunnel(names)
        except Exception as exc:
            self.problems.append(f"stopping leftover tunnels: {exc}")
        if self.exists and self._links_may_outlive(handle.driver):
            try:
                run_in_netns(names.netns, inside.delete_links)
            except Exception as exc:
                self.problems.append(f"clearing interfaces: {exc}")

    def _links_may_outlive(self, driver: str) -> bool:
        """Whether a link inside could outlive this `down`, so the namespace needs clearing (a
        helper child, ~5 ms). Not when wireguard-go has exited (its TUN went with it) and no
        process is inside: the namespace then dies when step_namespace unbinds it, with every
        link in it. A process that entered after step_processes looked finds only `lo`."""
        if driver != "userspace" or self.provider.kind != "netns":
            return True  # a kernel WireGuard link lives on its own; a holder keeps the netns
        return any(procfs.alive(pid) for pid, _cmd in self.inside)

    def step_namespace(self) -> None:
        if self.exists or self.provider.outlives_netns_path():  # a holder outlives /run/netns
            try:
                self.provider.destroy(self.names, self.force)
            except ConflictError:
                raise
            except Exception as exc:
                self.problems.append(f"removing namespace: {exc}")

    def step_files(self) -> None:
        from .. import dns

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
        record = state.read_state(names.name)
        signal_tunnel_first(names, record)
        from .install import run_steps  # and with it what the steps need (see the module doc)

        state.remove_stale_supervisor_files(names.name)  # of a supervisor killed outright
        run = _DownRun(names, kill, force, record)
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
