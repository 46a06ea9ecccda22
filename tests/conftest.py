"""Shared fixtures: the closed test world is built once per session and torn down at the end.

Integration tests run `vault` the way a user's machine would: inside the world's "host"
namespace, entered with `nsenter --net=` (never `ip netns exec`: its slave mount namespace would
hide the namespaces vault creates).
"""

from __future__ import annotations

import itertools
import os
import shutil
import subprocess
import sys

import pytest

VENV_BIN = os.path.dirname(sys.executable)
VAULT = os.path.join(VENV_BIN, "vault")
NSENTER = shutil.which("nsenter") or "/usr/bin/nsenter"


def _integration_skip_reason() -> str | None:
    if os.geteuid() != 0:
        return "integration tests need root"
    from netns_vault.sandbox import missing_tools

    missing = missing_tools()
    if missing:
        return "missing tools: " + ", ".join(missing)
    return None


def pytest_collection_modifyitems(config, items):
    reason = None
    checked = False
    for item in items:
        if "integration" in item.keywords or "docker" in item.keywords:
            if not checked:
                reason, checked = _integration_skip_reason(), True
            if reason:
                item.add_marker(pytest.mark.skip(reason=reason))


@pytest.fixture(scope="session")
def world():
    from netns_vault.sandbox import World

    w = World("t")
    w.start()
    try:
        yield w
    finally:
        w.stop()


class VaultCli:
    """Runs the real `vault` console script inside the world's host namespace."""

    _counter = itertools.count()

    def __init__(self, world):
        self.world = world
        self.created: list[str] = []

    def __call__(self, *args: str, env: dict | None = None, timeout: float = 60,
                 input: str | None = None) -> subprocess.CompletedProcess:
        full_env = dict(os.environ)
        if env:
            full_env.update(env)
        return subprocess.run(
            [NSENTER, f"--net=/run/netns/{self.world.host_ns}", VAULT, *args],
            capture_output=True, text=True, env=full_env, timeout=timeout, input=input,
        )

    def popen(self, *args: str, env: dict | None = None, **kwargs) -> subprocess.Popen:
        full_env = dict(os.environ)
        if env:
            full_env.update(env)
        return subprocess.Popen(
            [NSENTER, f"--net=/run/netns/{self.world.host_ns}", VAULT, *args],
            env=full_env, **kwargs)

    def expose(self, name: str, target: int) -> tuple[subprocess.Popen, int, str]:
        """Start `vault docker expose NAME 127.0.0.1:0 TARGET`; returns (process, port, line)."""
        proc = self.popen("docker", "expose", name, "127.0.0.1:0", str(target),
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        line = proc.stdout.readline()
        if not line.startswith("forwarding 127.0.0.1:"):
            proc.kill()
            raise AssertionError(line + proc.communicate()[1])
        return proc, int(line.split()[1].rsplit(":", 1)[1]), line

    def new_name(self) -> str:
        name = f"t{os.getpid() % 10000}x{next(self._counter)}"
        self.created.append(name)
        return name

    def config(self, index: int = 0, **kwargs) -> str:
        path = os.path.join(self.world.tmpdir, f"client{index}-{next(self._counter)}.conf")
        return self.world.write_client_config(path, index, **kwargs)

    def up(self, name: str, *extra: str, index: int = 0) -> subprocess.CompletedProcess:
        res = self("up", name, "--config", self.config(index), *extra)
        assert res.returncode == 0, res.stderr
        return res

    def cleanup(self) -> None:
        for name in self.created:
            self("down", name, "--kill")


@pytest.fixture
def vault_cli(world):
    cli = VaultCli(world)
    try:
        yield cli
    finally:
        cli.cleanup()


@pytest.fixture
def tool():
    def find(name: str) -> str:
        path = shutil.which(name)
        if path is None:
            pytest.skip(f"{name} not installed")
        return path

    return find


@pytest.fixture(scope="session")
def client():
    """The Docker SDK client of the tests' engine (skips the Docker tests when there is none)."""
    from netns_vault.docker.engine import connect
    from netns_vault.errors import SystemFailure

    if os.geteuid() != 0:
        pytest.skip("needs root (binds namespaces under /run/netns)")
    try:
        c = connect(timeout=30)
    except SystemFailure as exc:
        pytest.skip(str(exc))
    yield c
    c.close()


@pytest.fixture(scope="session")
def base_image(client):
    """The local busybox image (and the holder image), built offline."""
    from netns_vault.docker import images

    if not os.path.exists(images.BUSYBOX):
        pytest.skip("needs busybox-static")
    images.ensure_holder_image(client)
    return images.ensure_base_image(client)
