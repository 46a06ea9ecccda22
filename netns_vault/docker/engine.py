"""Connecting to the Docker engine, with an error that says how to fix it."""

from __future__ import annotations

from typing import Any

from ..errors import SystemFailure
from ..logs import get_logger

log = get_logger(__name__)

START_HINT = "start dockerd (for tests and CI: scripts/start-dockerd.sh)"


def connect(timeout: int = 30) -> Any:
    """A `docker.DockerClient` for the engine named by DOCKER_HOST (default: the local socket).

    Raises SystemFailure when the SDK is missing or the engine does not answer.
    """
    try:
        import docker
    except ImportError as exc:
        raise SystemFailure(
            f"the docker Python SDK is not installed ({exc}): pip install 'docker>=7'"
        ) from exc
    try:
        client = docker.from_env(timeout=timeout)
        client.ping()
    except Exception as exc:  # DockerException, or requests' errors when the version is pinned
        raise SystemFailure(
            f"Docker engine not reachable ({_first_line(exc)}); {START_HINT}"
        ) from exc
    return client


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
