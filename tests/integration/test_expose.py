"""`vault docker expose` with a plain vault: a port inside the vault, published on the host.

The forwarder runs in the world's host namespace (as the user's machine would run it); the
service runs in the vault with `vault run`. No Docker needed.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time

import pytest

from netns_vault import namespace
from netns_vault.names import VaultNames

pytestmark = pytest.mark.integration

PAGE = "hello from inside the vault"
TARGET = 8080
BIG = 3 * 1024 * 1024 + 7


def _httpd(vault_cli, name: str, www: str) -> subprocess.Popen:
    proc = vault_cli.popen(
        "run",
        "-n",
        name,
        "--",
        "busybox",
        "httpd",
        "-f",
        "-p",
        f"127.0.0.1:{TARGET}",
        "-h",
        www,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    netns = VaultNames.of(name).netns_path
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:  # listening inside the vault?
        for pid in namespace.pids_in_netns(netns):
            try:
                with open(f"/proc/{pid}/net/tcp") as f:
                    if any(f":{TARGET:04X} " in ln and ln.split()[3] == "0A" for ln in f):
                        return proc
            except OSError:
                continue
        time.sleep(0.05)
    proc.kill()
    raise AssertionError("httpd did not start in the vault")


def _stop(proc: subprocess.Popen) -> int:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    try:
        return proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        return proc.wait()


def _get(world, port: int) -> subprocess.CompletedProcess:
    return world.host_run(["curl", "-sS", "--max-time", "5", f"http://127.0.0.1:{port}/"])


def test_expose_forwards_into_the_vault_and_follows_it(world, vault_cli, tmp_path):
    www = tmp_path / "www"
    www.mkdir()
    (www / "index.html").write_text(PAGE + "\n")
    (www / "big.bin").write_bytes(os.urandom(BIG))
    name = vault_cli.new_name()
    vault_cli.up(name)
    netns = VaultNames.of(name).netns_path
    httpd = _httpd(vault_cli, name, str(www))
    fwd, port, line = vault_cli.expose(name, TARGET)
    try:
        assert f"vault {name} 127.0.0.1:{TARGET}" in line

        for _ in range(3):
            res = _get(world, port)
            assert res.stdout.strip() == PAGE, res.stderr
        big = world.host_run(
            [
                "curl",
                "-sS",
                "--max-time",
                "10",
                "-o",
                "/dev/null",
                "-w",
                "%{size_download}",
                f"http://127.0.0.1:{port}/big.bin",
            ]
        )
        assert big.stdout == str(BIG), big.stderr  # many reads and writes through the copy loop
        # Nothing of the forwarder lives in the vault, and the host cannot reach the vault's
        # port any other way.
        assert fwd.pid not in namespace.pids_in_netns(netns)
        direct = world.host_run(["curl", "-sS", "--max-time", "2", f"http://127.0.0.1:{TARGET}/"])
        assert direct.returncode != 0

        # The vault goes: connections are closed at once, the forwarder stays.
        _stop(httpd)
        assert vault_cli("down", name, "--kill").returncode == 0
        res = _get(world, port)
        assert res.returncode != 0 and res.stdout == ""
        assert fwd.poll() is None

        # The vault comes back under the same name: served again, without a restart.
        vault_cli.up(name)
        httpd = _httpd(vault_cli, name, str(www))
        res = _get(world, port)
        assert res.stdout.strip() == PAGE, res.stderr
    finally:
        _stop(httpd)
        assert _stop(fwd) == 0, fwd.stderr.read()


def test_expose_refuses_a_missing_vault_and_bad_addresses(world, vault_cli):
    res = vault_cli("docker", "expose", "nosuchvault", "127.0.0.1:0", "80")
    assert res.returncode == 2 and "no vault named" in res.stderr, res.stderr
    for listen, target in (
        ("localhost:80", "80"),
        ("127.0.0.1:99999", "80"),
        ("127.0.0.1:0", "0"),
        ("127.0.0.1", "80"),
    ):
        res = vault_cli("docker", "expose", "nosuchvault", listen, target)
        assert res.returncode == 2, (listen, target, res.stderr)
    assert not os.path.exists("/run/netns/vault-nosuchvault")
