"""Interrupts leave nothing behind: SIGINT and SIGKILL at each step of `up`, `down` and `reload`,
in the middle of the actions that used to leak, and 20 vaults up and down at once.

Faults are aimed with the core API's step hook (`on_step`), from a Python process run like
`vault` itself (tests/integration/stepper.py, under `nsenter --net=` into the world's host).
After a SIGINT the host must be exactly as before with nothing else run; after a SIGKILL, one
`vault down` must make it so. Then the same name must come up again.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from netns_vault.names import VaultNames
from netns_vault.vault import DOWN_STEPS, RELOAD_STEPS, UP_STEPS

from ..conftest import NSENTER
from .snapshot import host_snapshot

pytestmark = pytest.mark.integration

STEPPER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "stepper.py")


def stepper(world, *args: str, timeout: float = 90) -> subprocess.CompletedProcess:
    return subprocess.run(
        [NSENTER, f"--net=/run/netns/{world.host_ns}", sys.executable, STEPPER, *args],
        capture_output=True, text=True, timeout=timeout)


def one_line(res: subprocess.CompletedProcess) -> str:
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in res.stderr, res.stdout + res.stderr
    return lines[0]


def assert_comes_up_again(vault_cli, world, name: str, before: dict) -> None:
    """The same name comes up again and goes down leaving nothing."""
    vault_cli.up(name)
    res = vault_cli("down", name)
    assert res.returncode == 0, res.stderr
    assert host_snapshot(world, name) == before


def down_leaves(vault_cli, world, name: str, before: dict) -> None:
    res = vault_cli("down", name)
    assert res.returncode == 0, res.stdout + res.stderr
    assert host_snapshot(world, name) == before


# --- point 1: SIGINT while wireguard-go starts; `down` finds wireguard-go without state ---------


def test_sigint_while_wireguard_go_starts_leaves_nothing(world, vault_cli):
    name = vault_cli.new_name()
    before = host_snapshot(world, name)
    res = stepper(world, "mid", "wireguard-go", "--", "up", name, "--config", vault_cli.config(),
                  "--driver", "userspace")
    assert res.returncode == 130, res.stderr
    assert one_line(res) == "vault: interrupted; rolled back"
    assert host_snapshot(world, name) == before
    assert_comes_up_again(vault_cli, world, name, before)


def test_down_stops_a_wireguard_go_serving_the_vault_name_without_any_state(world, vault_cli):
    name = vault_cli.new_name()
    iface = VaultNames.of(name).iface
    before = host_snapshot(world, name)
    orphan = world.host_popen(["wireguard-go", iface], env=dict(os.environ,
                                                                 WG_PROCESS_FOREGROUND="1"),
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 10
        while not os.path.exists(f"/var/run/wireguard/{iface}.sock"):
            assert time.monotonic() < deadline, "wireguard-go did not start"
            time.sleep(0.05)
        assert host_snapshot(world, name)["wireguard_go"] == [orphan.pid]
        res = vault_cli("down", name)
        assert res.returncode == 0, res.stderr
        assert "is down" in res.stdout, res.stdout
        orphan.wait(timeout=10)
        assert host_snapshot(world, name) == before
    finally:
        if orphan.poll() is None:
            orphan.kill()
            orphan.wait()


# --- point 2: an interrupt in the middle of a step's action ----------------------------------


@pytest.mark.parametrize("where", ["namespace", "wg-log", "dns"])
def test_sigint_in_the_middle_of_an_action_leaves_nothing(world, vault_cli, where):
    name = vault_cli.new_name()
    before = host_snapshot(world, name)
    res = stepper(world, "mid", where, "--", "up", name, "--config", vault_cli.config(),
                  "--driver", "userspace")
    assert res.returncode == 130, res.stderr
    assert one_line(res) == "vault: interrupted; rolled back"
    assert host_snapshot(world, name) == before


# --- point 3: SIGKILL of reload while the new wireguard-go starts ---------------------------


def test_reload_and_down_after_reload_was_killed_as_its_wireguard_go_started(world, vault_cli):
    name = vault_cli.new_name()
    before = host_snapshot(world, name)
    vault_cli.up(name)
    res = stepper(world, "at", "sigkill", "tunnel", "--", "reload", name)
    assert res.returncode == -signal.SIGKILL, res.stderr
    again = vault_cli("reload", name)
    assert again.returncode == 0, again.stderr
    assert vault_cli("check", name).returncode == 0
    assert len(host_snapshot(world, name)["wireguard_go"]) == 1
    res = stepper(world, "at", "sigkill", "tunnel", "--", "reload", name)
    assert res.returncode == -signal.SIGKILL, res.stderr
    down_leaves(vault_cli, world, name, before)


# --- point 4: reload of a vault that is not up; SIGKILL during the state write ---------------


def test_reload_of_a_vault_that_is_not_up_leaves_no_lock_file(world, vault_cli):
    name = vault_cli.new_name()
    dir_existed = os.path.exists("/run/netns-vault")
    before = host_snapshot(world, name)
    res = vault_cli("reload", name)
    assert res.returncode == 2, res.stderr
    assert one_line(res) == f"vault: no vault named '{name}' is up"
    assert host_snapshot(world, name) == before
    if not dir_existed:  # (other vaults, of other test runs, may keep it)
        assert not os.path.exists("/run/netns-vault")


def test_down_removes_the_temp_state_file_of_a_killed_up(world, vault_cli):
    name = vault_cli.new_name()
    before = host_snapshot(world, name)
    res = stepper(world, "mid", "state-write", "--", "up", name, "--config", vault_cli.config())
    assert res.returncode == -signal.SIGKILL, res.stderr
    assert any(".json.tmp" in e for e in host_snapshot(world, name)["state"])
    down_leaves(vault_cli, world, name, before)


# --- point 5: one line and an exit code that says which ---------------------------------------


def test_ctrl_c_after_the_vault_is_up_says_it_is_up(world, vault_cli):
    name = vault_cli.new_name()
    before = host_snapshot(world, name)
    world.server_down()  # so --wait waits
    try:
        proc = vault_cli.popen("up", name, "--config", vault_cli.config(), "--wait",
                               "--timeout", "60", stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
        first = proc.stdout.readline()  # the "is up" line: the vault is complete now
        assert "is up" in first, first + proc.stderr.read()
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
    finally:
        world.server_up()
    assert proc.returncode == 6, err
    assert err.strip() == f"vault: interrupted after vault {name} was up; it is up", err
    assert vault_cli("check", name).returncode == 0
    down_leaves(vault_cli, world, name, before)


# --- the attack suite: SIGINT and SIGKILL at each step of up, down and reload -----------------


@pytest.mark.parametrize("step", UP_STEPS)
@pytest.mark.parametrize("sig", ["sigint", "sigkill"])
def test_signal_at_each_step_of_up(world, vault_cli, sig, step):
    name = vault_cli.new_name()
    before = host_snapshot(world, name)
    res = stepper(world, "at", sig, step, "--", "up", name, "--config", vault_cli.config())
    if sig == "sigint":
        assert res.returncode == 130, res.stderr
        assert one_line(res) == "vault: interrupted; rolled back"
        assert host_snapshot(world, name) == before
    else:
        assert res.returncode == -signal.SIGKILL, res.stderr
        down_leaves(vault_cli, world, name, before)
    assert_comes_up_again(vault_cli, world, name, before)


@pytest.mark.parametrize("step", DOWN_STEPS)
@pytest.mark.parametrize("sig", ["sigint", "sigkill"])
def test_signal_at_each_step_of_down(world, vault_cli, sig, step):
    name = vault_cli.new_name()
    before = host_snapshot(world, name)
    vault_cli.up(name)
    res = stepper(world, "at", sig, step, "--", "down", name)
    if sig == "sigint":  # a down is never left half done: it finishes, then says so
        assert res.returncode == 6, res.stderr
        assert one_line(res) == f"vault: interrupted after vault {name} was down; it is down"
        assert host_snapshot(world, name) == before
    else:
        assert res.returncode == -signal.SIGKILL, res.stderr
        down_leaves(vault_cli, world, name, before)
    assert_comes_up_again(vault_cli, world, name, before)


@pytest.mark.parametrize("step", RELOAD_STEPS)
@pytest.mark.parametrize("sig", ["sigint", "sigkill"])
def test_signal_at_each_step_of_reload(world, vault_cli, sig, step):
    name = vault_cli.new_name()
    before = host_snapshot(world, name)
    vault_cli.up(name)
    res = stepper(world, "at", sig, step, "--", "reload", name)
    if sig == "sigint":
        assert res.returncode == 6, res.stderr
        # The hook runs before the commit, so the half-made tunnel is undone: fails closed.
        assert "is up without a tunnel" in one_line(res), res.stderr
        again = vault_cli("reload", name)
        assert again.returncode == 0, again.stderr
        assert vault_cli("check", name).returncode == 0
    else:
        assert res.returncode == -signal.SIGKILL, res.stderr
    down_leaves(vault_cli, world, name, before)
    assert_comes_up_again(vault_cli, world, name, before)


def test_twenty_vaults_up_and_down_in_parallel_leave_nothing(world, vault_cli):
    names = [vault_cli.new_name() for _ in range(20)]
    before = {n: host_snapshot(world, n) for n in names}

    configs = {n: vault_cli.config() for n in names}
    procs = {n: vault_cli.popen("up", n, "--config", configs[n], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True) for n in names}
    for n, p in procs.items():
        out, err = p.communicate(timeout=300)
        assert p.returncode == 0, (n, out, err)
    procs = {n: vault_cli.popen("down", n, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True) for n in names}
    for n, p in procs.items():
        out, err = p.communicate(timeout=300)
        assert p.returncode == 0, (n, out, err)
    for n in names:
        assert host_snapshot(world, n) == before[n], n
