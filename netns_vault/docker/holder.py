"""The Docker namespace provider: a holder container owns the vault's network namespace.

`vault up --docker NAME` asks this provider, instead of `ip netns add`, for the namespace: it runs
the container `vault-NAME` (image netns-vault/holder, network_mode "none", so it starts with only
`lo`) and binds that container's namespace at /run/netns/vault-NAME. From then on the vault is set
up exactly like any other. Other containers join it with `network_mode: container:vault-NAME`
and see only what the vault gives them: `lo` and the WireGuard interface.

The holder's DNS settings (dns, dns_search) are the ones containers joining it get: Docker copies
the holder's resolv.conf into every container that uses its network.

The namespace is the holder *process's*. When Docker restarts the holder (daemon restart, host
reboot, `docker restart`), the new process gets a new, empty namespace: the WireGuard interface,
addresses, routes and firewall of the vault are not in it, so containers in it have no network at
all (fail closed). `vault supervise` (what `vault enable --docker` runs) heals that: `rebind` moves
/run/netns/vault-NAME to the new namespace, then the supervisor rebuilds the walls and the tunnel
there (netns_vault/supervise/holder.py).

The `docker` SDK is imported only inside functions (the `vault run` path must not load it).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from .. import namespace, procfs
from ..errors import ConflictError, NotFoundError, SystemFailure
from ..logs import get_logger
from ..names import VaultNames
from ..rollback import Rollback
from .engine import connect
from .images import ensure_holder_image

log = get_logger(__name__)

LABEL_VAULT = "netns-vault.vault"
LABEL_ROLE = "netns-vault.role"
ROLE_HOLDER = "holder"

# Container states in which a container's processes are (or are about to be) in the namespace.
ACTIVE_STATES = frozenset({"running", "restarting", "paused"})

T = TypeVar("T")


@dataclass(frozen=True)
class HolderInfo:
    id: str
    name: str
    status: str  # docker's State.Status: created, running, exited, ...
    pid: int | None  # host pid of the holder process while it runs


@dataclass(frozen=True)
class AttachedContainer:
    id: str
    name: str
    status: str


class DockerHolderProvider:
    """Creates and removes vault namespaces held by a container. One instance per command."""

    kind = "docker"

    def __init__(self, client: Any = None, stop_timeout: int = 10):
        self._client = client
        self.stop_timeout = stop_timeout  # seconds `destroy(force=True)` gives attached containers

    @property
    def client(self) -> Any:
        if self._client is None:
            self._client = connect()
        return self._client

    # ------------------------------------------------------------------ create

    def create(
        self, names: VaultNames, rb: Rollback, dns_servers: list[str], dns_search: list[str]
    ) -> None:
        """Run the holder `vault-NAME` and bind its namespace at /run/netns/vault-NAME.

        Each change registers its undo on `rb`. ConflictError if the container or the namespace
        already exists; SystemFailure if Docker is unreachable or the holder does not start.
        """

        if os.path.lexists(names.netns_path):
            raise ConflictError(f"network namespace {names.netns} already exists")
        client = self.client
        existing = self._find(names.container)
        if existing is not None:
            raise ConflictError(
                f"a container named {names.container} already exists "
                f"({existing.short_id}, {existing.status}); remove it or choose another vault name"
            )
        image = ensure_holder_image(client)

        container = self._create_container(names, image, dns_servers, dns_search)
        cid = container.id
        rb.push(f"docker rm -f {names.container}", lambda: self._remove_container(cid))

        log.debug("docker start %s", names.container)
        self._api(f"starting holder container {names.container}", container.start)
        pid = self._wait_running(container, names)

        # Undo first: an interrupt may land after the bind but before it returns. (No namespace
        # of that name existed: checked above, and by `up` under the vault's lock.)
        rb.guarded(
            f"ip netns attach {names.netns} {pid}",
            lambda: namespace.bind_netns_of_pid(pid, names.netns),
            lambda: namespace.remove_netns(names.netns),
        )
        # The holder must not have been restarted between reading its pid and binding it.
        if namespace.netns_inode(names.netns) != procfs.netns_inode(pid):
            raise SystemFailure(
                f"holder {names.container} changed while binding its namespace (pid {pid} gone)"
            )

    def _create_container(self, names: VaultNames, image: str, dns_servers: list[str],
                          dns_search: list[str]) -> Any:
        """`docker create` the holder: no network but lo, every capability dropped."""
        import docker

        log.debug("docker create --name %s --network none %s", names.container, image)
        try:
            container = self.client.containers.create(
                image,
                name=names.container,
                detach=True,
                network_mode="none",
                restart_policy={"Name": "unless-stopped"},
                labels={LABEL_VAULT: names.name, LABEL_ROLE: ROLE_HOLDER},
                dns=list(dns_servers),
                dns_search=list(dns_search),
                stop_signal="SIGKILL",
                cap_drop=["ALL"],
                security_opt=["no-new-privileges"],
                read_only=True,
            )
        except docker.errors.APIError as exc:
            if exc.status_code == 409:
                raise ConflictError(
                    f"a container named {names.container} already exists: {_explain(exc)}"
                ) from exc
            raise SystemFailure(
                f"creating holder container {names.container}: {_explain(exc)}"
            ) from exc
        return container

    def _wait_running(self, container: Any, names: VaultNames, timeout: float = 10.0) -> int:
        deadline = time.monotonic() + timeout
        while True:
            self._api(f"inspecting holder {names.container}", container.reload)
            state = container.attrs.get("State", {})
            pid = int(state.get("Pid") or 0)
            if state.get("Running") and pid > 0:
                return pid
            if state.get("Status") in ("exited", "dead") or time.monotonic() > deadline:
                raise SystemFailure(
                    f"holder container {names.container} did not keep running "
                    f"(status {state.get('Status')}, exit code {state.get('ExitCode')}, "
                    f"error {state.get('Error') or 'none'})"
                )
            time.sleep(0.05)

    # ------------------------------------------------------------------ inspect

    def holder(self, names: VaultNames) -> HolderInfo | None:
        """The vault's holder container, or None. ConflictError if `vault-NAME` is not ours."""
        container = self._find(names.container)
        if container is None:
            return None
        labels = container.labels or {}
        if labels.get(LABEL_ROLE) != ROLE_HOLDER or labels.get(LABEL_VAULT) != names.name:
            raise ConflictError(
                f"container {names.container} is not the netns-vault holder of vault {names.name} "
                "(labels differ); not touching it"
            )
        state = container.attrs.get("State", {})
        pid = int(state.get("Pid") or 0)
        return HolderInfo(
            id=container.id,
            name=names.container,
            status=state.get("Status", container.status),
            pid=pid if state.get("Running") and pid > 0 else None,
        )

    def own_pids(self, names: VaultNames) -> list[int]:
        """The holder's pid (the processes in the namespace that are not "inside" the vault).

        Empty when the holder is not running or Docker cannot be asked (status must still work).
        """
        try:
            holder = self.holder(names)
        except (SystemFailure, ConflictError) as exc:
            log.debug("no holder pid for %s: %s", names.name, exc)
            return []
        return [holder.pid] if holder and holder.pid else []

    def outlives_netns_path(self) -> bool:
        return True  # the holder container runs on when /run/netns/vault-NAME is gone

    def check_detachable(self, names: VaultNames) -> None:
        """ConflictError, listing them, while containers use the vault's network."""
        holder = self.holder(names)
        _refuse_if_attached(names, self._attached(names, holder.id if holder else None))

    def attached_containers(self, names: VaultNames, include_stopped: bool = False) -> list[str]:
        """Names of the containers using the vault's network (`network_mode: container:<holder>`).

        Only running (or restarting, paused) ones unless `include_stopped`.
        """
        holder = self.holder(names)
        found = self._attached(names, holder.id if holder else None, include_stopped)
        return [c.name for c in found]

    def attached(self, names: VaultNames, include_stopped: bool = False) -> list[AttachedContainer]:
        """The containers using the vault's network, with their ids and states, sorted by name."""
        holder = self.holder(names)
        return self._attached(names, holder.id if holder else None, include_stopped)

    def holder_is_bound(self, names: VaultNames) -> bool:
        """True when the holder runs and /run/netns/vault-NAME is its namespace.

        False after Docker restarted the holder (a new, empty namespace; see `rebind`): a
        container joining it then would get no network at all.
        """
        holder = self.holder(names)
        if holder is None or holder.pid is None:
            return False
        inode = namespace.netns_inode(names.netns)
        return inode is not None and inode == procfs.netns_inode(holder.pid)

    def _attached(
        self, names: VaultNames, holder_id: str | None, include_stopped: bool = False
    ) -> list[AttachedContainer]:
        rows = self._api("listing containers", lambda: self.client.api.containers(all=True))
        found = []
        for row in rows:
            if holder_id is not None and row.get("Id") == holder_id:
                continue
            mode = (row.get("HostConfig") or {}).get("NetworkMode") or ""
            if not network_mode_refers_to(mode, names.container, holder_id):
                continue
            status = row.get("State") or ""
            if include_stopped or status in ACTIVE_STATES:
                cname = (row.get("Names") or ["/" + row["Id"][:12]])[0].lstrip("/")
                found.append(AttachedContainer(row["Id"], cname, status))
        return sorted(found, key=lambda c: c.name)

    # ------------------------------------------------------------------ destroy

    def destroy(self, names: VaultNames, force: bool = False) -> None:
        """Unbind /run/netns/vault-NAME and remove the holder. Idempotent.

        Refuses (ConflictError, listing them) while containers use the vault's network; with
        `force`, stops them first. They are not removed: their network stays `container:<holder
        id>`, so they cannot start again without this holder, and can never start on another
        network.
        """
        import docker

        holder = self.holder(names)
        attached = self._attached(names, holder.id) if holder else []
        if not force:
            _refuse_if_attached(names, attached)
        for c in attached:
            log.debug("docker stop -t %d %s", self.stop_timeout, c.name)
            try:
                self.client.api.stop(c.id, timeout=self.stop_timeout)
            except docker.errors.NotFound:
                continue
            except docker.errors.APIError as exc:
                raise SystemFailure(f"stopping container {c.name}: {_explain(exc)}") from exc
            log.info("stopped container %s (it used vault %s)", c.name, names.name)
        namespace.remove_netns(names.netns)
        if holder is not None:
            self._remove_container(holder.id)

    def _remove_container(self, cid: str) -> None:
        import docker

        log.debug("docker rm -f %s", cid[:12])
        try:
            self.client.api.remove_container(cid, force=True)
        except docker.errors.NotFound:
            pass
        except docker.errors.APIError as exc:
            if exc.status_code == 409 and "already in progress" in _explain(exc):
                return
            raise SystemFailure(f"removing container {cid[:12]}: {_explain(exc)}") from exc

    # ------------------------------------------------------------------ rebind

    def rebind(self, names: VaultNames, force: bool = False) -> bool:
        """Point /run/netns/vault-NAME at the holder's current namespace. True if it changed.

        For after Docker restarted the holder (daemon restart, host reboot): the holder then runs
        with a new pid in a new, EMPTY namespace, and the vault must be set up in it again (the
        tunnel, addresses, routes and firewall lived in the old one). Starts the holder if it is
        stopped. Refuses (ConflictError) while processes still live in the namespace bound now,
        e.g. attached containers that kept running when only the holder restarted: moving the
        path would lose the handle on their namespace. `force` rebinds anyway.
        """
        holder = self.holder(names)
        if holder is None:
            raise NotFoundError(f"vault {names.name} has no holder container {names.container}")
        if holder.pid is None:
            container = self._api(
                "looking up the holder", lambda: self.client.containers.get(holder.id)
            )
            log.debug("docker start %s", names.container)
            self._api(f"starting holder container {names.container}", container.start)
            pid = self._wait_running(container, names)
        else:
            pid = holder.pid
        current = procfs.netns_inode(pid)
        if namespace.netns_exists(names.netns):
            if namespace.netns_inode(names.netns) == current:
                return False
            users = namespace.pids_in_netns(names.netns)
            if users and not force:
                listing = ", ".join(f"{p} ({namespace.process_name(p)})" for p in users[:10])
                raise ConflictError(
                    f"processes still use the old namespace of vault {names.name}: {listing}; "
                    "stop them (or vault down --force) before rebinding"
                )
        namespace.remove_netns(names.netns)
        namespace.bind_netns_of_pid(pid, names.netns)
        return True

    # ------------------------------------------------------------------ helpers

    def _find(self, name: str) -> Any:
        import docker

        try:
            return self.client.containers.get(name)
        except docker.errors.NotFound:
            return None
        except docker.errors.APIError as exc:
            raise SystemFailure(f"looking up container {name}: {_explain(exc)}") from exc

    def _api(self, what: str, fn: Callable[[], T]) -> T:
        import docker

        try:
            return fn()
        except docker.errors.APIError as exc:
            raise SystemFailure(f"{what}: {_explain(exc)}") from exc


def _refuse_if_attached(names: VaultNames, attached: list[AttachedContainer]) -> None:
    if attached:
        listing = ", ".join(c.name for c in attached)
        raise ConflictError(
            f"vault {names.name} is in use by container(s): {listing}; "
            "stop them first or use --force"
        )


def network_mode_refers_to(mode: str, holder_name: str, holder_id: str | None) -> bool:
    """True when a container's HostConfig.NetworkMode joins the holder's network.

    Docker 20.10 stores `container:<full id>` whatever the user gave; newer engines may keep the
    name (`container:vault-NAME`) or an id prefix.
    """
    if not mode.startswith("container:"):
        return False
    ref = mode.split(":", 1)[1].lstrip("/")
    if ref == holder_name:
        return True
    return bool(holder_id and ref and _is_hex(ref) and holder_id.startswith(ref))


def _is_hex(s: str) -> bool:
    return all(ch in "0123456789abcdef" for ch in s)


def _explain(exc: Exception) -> str:
    explanation = getattr(exc, "explanation", None)
    if isinstance(explanation, bytes):
        explanation = explanation.decode(errors="replace")
    return str(explanation or exc)
