"""Docker: the supervisor's side of a holder container.

- `HolderWatcher` follows the holder's events (start, die, restart) through the SDK in a thread
  and wakes the supervisor's loop through a pipe; it reconnects (with backoff) when dockerd
  restarts.
- `AdoptHolder` is the namespace provider for `vault supervise --docker` at boot: the holder
  container survived (Docker restarts it, restart policy unless-stopped) but /run/netns and the
  vault's state did not; the vault is built again in the holder's namespace.
- `heal` rebuilds the vault in the holder's NEW namespace after Docker restarted it.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Callable
from functools import partial
from typing import Any

from .. import namespace, procfs, state
from ..docker.holder import DockerHolderProvider
from ..errors import ConflictError, SystemFailure
from ..logs import get_logger
from ..names import VaultNames
from ..nsexec import run_in_netns
from ..rollback import Rollback
from .health import Backoff

log = get_logger(__name__)

EVENTS = ("start", "restart", "die", "stop", "kill", "destroy")


class HolderWatcher(threading.Thread):
    """Writes one byte to `wake_fd` on each holder event, and once each time the connection to
    dockerd is made again (events may have been missed while it was away)."""

    def __init__(self, container: str, wake_fd: int):
        super().__init__(name=f"docker-events-{container}", daemon=True)
        self.container = container
        self.wake_fd = wake_fd
        self.stopping = threading.Event()
        self._stream: Any = None
        self.connected = False

    def _wake(self) -> None:
        with contextlib.suppress(OSError):
            os.write(self.wake_fd, b"d")

    def run(self) -> None:
        import docker

        backoff = Backoff(0.25, 5.0)
        while not self.stopping.is_set():
            client = None
            try:
                client = docker.from_env(timeout=10)
                client.ping()
                self._stream = client.events(
                    decode=True, filters={"container": self.container, "type": "container"})
                self.connected = True
                backoff.reset()
                self._wake()
                for event in self._stream:
                    if self.stopping.is_set():
                        break
                    if event.get("status") in EVENTS or event.get("Action") in EVENTS:
                        self._wake()
            except Exception as exc:  # dockerd went away (restart), or is not up yet
                log.debug("docker events: %s", exc)
            finally:
                self.connected = False
                if client is not None:
                    with contextlib.suppress(Exception):
                        client.close()
            if not self.stopping.is_set():
                self._wake()
                self.stopping.wait(backoff.next())

    def stop(self) -> None:
        self.stopping.set()
        if self._stream is not None:
            with contextlib.suppress(Exception):
                self._stream.close()


class AdoptHolder(DockerHolderProvider):
    """Provider for `up` that takes over an existing holder container `vault-NAME` (made by an
    earlier `vault up --docker`; ours by its labels) instead of creating one."""

    def create(self, names: VaultNames, rb: Rollback, dns_servers: list[str],
               dns_search: list[str]) -> None:
        holder = self.holder(names)  # ConflictError when vault-NAME is not our holder
        if holder is None:
            return super().create(names, rb, dns_servers, dns_search)
        if os.path.lexists(names.netns_path):
            raise ConflictError(f"network namespace {names.netns} already exists")
        container = self._api("looking up the holder",
                              lambda: self.client.containers.get(holder.id))
        if holder.pid is None:
            self._api(f"starting holder container {names.container}", container.start)
        pid = self._wait_running(container, names)
        rb.step(f"ip netns attach {names.netns} {pid}",
                lambda: namespace.bind_netns_of_pid(pid, names.netns),
                lambda: namespace.remove_netns(names.netns))
        links = run_in_netns(names.netns, _link_names)
        if links != ["lo"]:
            raise SystemFailure(f"holder {names.container}'s namespace holds "
                                f"{', '.join(links)}: expected only lo; not adopting it")


def _link_names() -> list[str]:
    from pyroute2 import IPRoute

    with IPRoute() as ipr:
        return sorted(str(link.get_attr("IFLA_IFNAME")) for link in ipr.get_links())


def holder_needs_healing(provider: DockerHolderProvider, names: VaultNames) -> str | None:
    """"running" when the holder runs in a namespace the vault is not bound to; "down" when it
    is not running; None when all is well."""
    holder = provider.holder(names)
    if holder is None or holder.pid is None:
        return "down"
    inode = namespace.netns_inode(names.netns)
    with contextlib.suppress(OSError):
        if inode is not None and inode == procfs.netns_inode(holder.pid):
            return None
    return "running"


def rebuild_walls(provider: DockerHolderProvider, names: VaultNames) -> int | None:
    """Point /run/netns/vault-NAME at the holder's new namespace and put the vault's walls
    (IPv6 off, lo up, firewall) in it, before any tunnel. Returns the old namespace's inode."""
    from ..firewall.backend import DEFAULT
    from ..vault.inside import prepare as _prepare_inside

    old = namespace.netns_inode(names.netns)
    with state.vault_lock(names.name):
        provider.rebind(names, force=True)  # the old namespace lives on while used
        firewall = (state.read_state(names.name) or {}).get("firewall") or DEFAULT
        run_in_netns(names.netns, _prepare_inside, names.iface, firewall)  # the recorded backend
    return old


def restart_stranded(provider: DockerHolderProvider, names: VaultNames, old_inode: int | None,
                     emit: Callable[[str], None]) -> None:
    """Containers still in the holder's OLD namespace (they kept running while only the holder
    restarted) have only lo there now: restart them so they join the new one."""
    if old_inode is None:
        return
    for c in provider.attached(names):
        api = provider.client.api
        info = provider._api("inspecting a container", partial(api.inspect_container, c.id))
        pid = int((info.get("State") or {}).get("Pid") or 0)
        try:
            inode = procfs.netns_inode(pid) if pid else None
        except OSError:
            inode = None
        if inode == old_inode:
            t0 = time.monotonic()
            provider._api(f"restarting {c.name}", partial(api.restart, c.id, timeout=5))
            emit(f"container {c.name} restarted into the holder's new namespace "
                 f"({(time.monotonic() - t0) * 1000:.0f} ms)")
