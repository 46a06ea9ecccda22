"""Containers in a Docker vault: `vault docker run` and `vault docker ls`.

A container joins a vault with `network_mode: container:vault-NAME` and nothing else: Docker
then gives it the holder's network namespace (only `lo` and the WireGuard interface) and a copy
of the holder's resolv.conf. This module never asks for any other network, never publishes a
port (a vault has no NIC to publish on; see netns_vault.expose) and never pulls an image.

The `docker` SDK is imported only inside functions.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .. import state
from ..errors import ConflictError, NotFoundError, SystemFailure, UsageError
from ..logs import get_logger
from ..names import VaultNames
from .holder import AttachedContainer, DockerHolderProvider, _explain

log = get_logger(__name__)

LABEL_ATTACHED_TO = "netns-vault.attached-to"  # on containers made by `vault docker run`
STOP_TIMEOUT = 10


@dataclass(frozen=True)
class RunRequest:
    """What `vault docker run` was asked for."""

    vault: str
    image: str
    command: tuple[str, ...] = ()
    name: str | None = None
    detach: bool = False
    remove: bool = False
    env: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class RunResult:
    container_id: str
    container_name: str
    exit_code: int | None  # None when detached


def parse_env(items: list[str]) -> dict[str, str]:
    """`-e K=V` values as a dict; UsageError for one without `=` or with an empty key."""
    out: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key or any(c.isspace() for c in key):
            raise UsageError(f"-e {item!r}: use KEY=VALUE")
        out[key] = value
    return out


def network_mode(names: VaultNames) -> str:
    """The only network a container joining vault NAME ever gets."""
    return f"container:{names.container}"


def require_docker_vault(names: VaultNames, provider: DockerHolderProvider) -> None:
    """NotFoundError/UsageError/ConflictError unless vault NAME is a Docker vault ready to join."""
    record = state.read_state(names.name)
    holder = provider.holder(names)
    if record is None and holder is None:
        raise NotFoundError(f"no vault named {names.name!r} is up")
    if record is not None and record.get("provider") != "docker":
        raise UsageError(
            f"vault {names.name} was made without --docker: containers cannot join "
            f"it (use `vault up {names.name} --docker`, or `vault run` for programs)"
        )
    if holder is None:
        raise NotFoundError(f"vault {names.name} has no holder container {names.container}")
    if record is None:
        raise ConflictError(
            f"vault {names.name} has a holder but no state: it was not made by "
            "`vault up --docker` or was half taken down; run `vault down "
            f"{names.name} --force` and up again"
        )
    if not provider.holder_is_bound(names):
        raise ConflictError(
            f"the holder {names.container} was restarted by Docker and now has a new, empty "
            f"namespace (no tunnel): run `vault down {names.name} --force` and `vault up "
            f"{names.name} --docker` again"
        )


def create(client: Any, names: VaultNames, req: RunRequest) -> Any:
    """Create (not start) the container; its only network is the vault's."""
    import docker

    labels = {LABEL_ATTACHED_TO: names.name}
    mode = network_mode(names)
    log.debug(
        "docker create --network %s%s %s %s",
        mode,
        f" --name {req.name}" if req.name else "",
        req.image,
        " ".join(req.command),
    )
    try:
        return client.containers.create(
            req.image,
            list(req.command) or None,
            name=req.name,
            environment=dict(req.env),
            network_mode=mode,
            labels=labels,
            detach=True,
            # Docker's default capability set lacks NET_ADMIN/SYS_ADMIN/...: never add any.
            privileged=False,
            # Docker removes a detached --rm container itself when it exits; a foreground one
            # is removed by us after we read its exit code.
            auto_remove=req.remove and req.detach,
        )
    except docker.errors.ImageNotFound as exc:
        raise NotFoundError(
            f"image {req.image} is not on this machine (vault never pulls): "
            f"docker pull {req.image} first"
        ) from exc
    except docker.errors.APIError as exc:
        if exc.status_code == 409:
            raise ConflictError(f"creating container: {_explain(exc)}") from exc
        raise SystemFailure(f"creating container from {req.image}: {_explain(exc)}") from exc


def run(
    req: RunRequest, client: Any = None, write: Callable[[bytes, bool], None] | None = None
) -> RunResult:
    """`vault docker run`: a container whose only network is vault `req.vault`.

    Detached: returns once it started. Foreground: streams its output (`write(data, is_stderr)`,
    default: this process's stdout/stderr), waits, and returns its exit code; Ctrl-C stops it.
    """
    names = VaultNames.of(req.vault)
    provider = DockerHolderProvider(client)
    require_docker_vault(names, provider)
    client = provider.client
    container = create(client, names, req)
    started = False
    try:
        # Attached before the start, as `docker run` does: a short-lived container's output
        # is all there, and the stream ends when it exits.
        stream = (
            None
            if req.detach
            else _api(
                "attaching to the container",
                lambda: client.api.attach(
                    container.id, stdout=True, stderr=True, stream=True, logs=True, demux=True
                ),
            )
        )
        _api(f"starting container {container.name}", container.start)
        started = True
        if stream is None:
            return RunResult(container.id, container.name, None)
        _copy(stream, write or _write_std)
        code = int(_api("waiting for the container", container.wait).get("StatusCode", 1))
        return RunResult(container.id, container.name, code)
    except BaseException:
        if started and not req.detach:
            with contextlib.suppress(Exception):
                client.api.stop(container.id, timeout=STOP_TIMEOUT)
        if not started or req.remove:
            _remove(client, container.id)
        raise
    finally:
        if started and req.remove and not req.detach:
            _remove(client, container.id)


def _copy(stream: Any, write: Callable[[bytes, bool], None]) -> None:
    for out, err in stream:
        if out:
            write(out, False)
        if err:
            write(err, True)


def _write_std(data: bytes, is_stderr: bool) -> None:
    target = sys.stderr if is_stderr else sys.stdout
    target.buffer.write(data)
    target.flush()


def _remove(client: Any, cid: str) -> None:
    import docker

    with contextlib.suppress(docker.errors.NotFound):
        try:
            client.api.remove_container(cid, force=True)
        except docker.errors.APIError as exc:
            if exc.status_code != 409:  # 409: removal already in progress (auto_remove)
                raise SystemFailure(f"removing container {cid[:12]}: {_explain(exc)}") from exc


def _api(what: str, fn: Callable[[], Any]) -> Any:
    import docker

    try:
        return fn()
    except docker.errors.APIError as exc:
        raise SystemFailure(f"{what}: {_explain(exc)}") from exc


def attached(
    vault: str, include_stopped: bool = True, client: Any = None
) -> list[AttachedContainer]:
    """`vault docker ls NAME`: every container whose network is vault NAME's (sorted by name)."""
    names = VaultNames.of(vault)
    provider = DockerHolderProvider(client)
    if provider.holder(names) is None and state.read_state(names.name) is None:
        raise NotFoundError(f"no vault named {vault!r} is up")
    return provider.attached(names, include_stopped=include_stopped)
