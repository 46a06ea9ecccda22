"""`vault run --ephemeral --config F -- CMD` (issue 13): a throwaway vault for one program,
against the closed world."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time

import pytest

from .snapshot import host_snapshot

pytestmark = pytest.mark.integration


def test_the_program_runs_in_its_own_vault_and_its_exit_code_passes(world, vault_cli):
    name = vault_cli.new_name()
    before = host_snapshot(world, name)
    res = vault_cli("run", "--ephemeral", "-n", name, "--config", vault_cli.config(), "--",
                    "sh", "-c", f"curl -sS --max-time 10 {world.WEB_URL}; exit 7")
    assert res.returncode == 7, res.stderr
    assert res.stdout.strip() == f"client={world.client_address(0)}"
    assert host_snapshot(world, name) == before


def test_a_signal_that_ends_the_program_ends_vault_the_same_way(world, vault_cli):
    name = vault_cli.new_name()
    before = host_snapshot(world, name)
    res = vault_cli("run", "--ephemeral", "-n", name, "--config", vault_cli.config(), "--",
                    "sh", "-c", "kill -TERM $$")
    assert res.returncode == -signal.SIGTERM, (res.returncode, res.stderr)
    assert host_snapshot(world, name) == before


def test_ephemeral_needs_its_config_and_changes_nothing_without(world, vault_cli):
    name = vault_cli.new_name()
    before = host_snapshot(world, name)
    res = vault_cli("run", "--ephemeral", "-n", name, "--", "true")
    assert res.returncode == 2 and len(res.stderr.strip().splitlines()) == 1, res.stderr
    assert host_snapshot(world, name) == before


def _wait(cond, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.1)


def test_sigkill_of_vault_leaves_a_stale_vault_that_down_stale_collects(world, vault_cli):
    name = vault_cli.new_name()
    before = host_snapshot(world, name)
    duration = f"300.{os.getpid()}{len(name)}{name[-2:].strip('x')}"  # a command line to find
    marker = f"sleep {duration}"
    proc = vault_cli.popen("run", "--ephemeral", "-n", name, "--config", vault_cli.config(),
                           "--", "sleep", duration,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    state_path = f"/run/netns-vault/{name}.json"

    def program_pids() -> list[str]:
        return subprocess.run(["pgrep", "-xf", marker], capture_output=True,
                              text=True).stdout.split()

    try:
        _wait(lambda: bool(program_pids()))
        with open(state_path) as f:
            assert json.load(f)["owner"]["pid"] == proc.pid  # nsenter exec'd vault: same pid
        proc.kill()  # SIGKILL: vault cannot take its vault down
        proc.wait(timeout=10)
        left = host_snapshot(world, name)
        assert left["netns"] and left["wireguard_go"] and program_pids()  # stale, not gone
        res = vault_cli("down", "--stale")
        assert res.returncode == 0, res.stderr
        assert f"vault {name} is down" in res.stdout
        assert host_snapshot(world, name) == before
        _wait(lambda: not program_pids(), timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        for pid in program_pids():
            os.kill(int(pid), signal.SIGKILL)


def test_a_program_that_cannot_start_is_one_line_and_leaves_nothing(world, vault_cli):
    name = vault_cli.new_name()
    before = host_snapshot(world, name)
    res = vault_cli("run", "--ephemeral", "-n", name, "--config", vault_cli.config(), "--",
                    "/nonexistent/program")
    assert res.returncode == 2, res.stderr
    assert res.stderr.strip().splitlines() == ["vault: /nonexistent/program: no such file"]
    assert host_snapshot(world, name) == before
