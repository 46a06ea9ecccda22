"""`vault up NAME... ` and `vault down NAME...` (issue 13): several vaults in one process, all
or nothing, against the closed world."""

from __future__ import annotations

import json
import os
import re
import shutil

import pytest

from .snapshot import host_snapshot

pytestmark = pytest.mark.integration

# The plain path (cli/fast.py, output to a pipe) and the typer app (FORCE_COLOR sends it there).
PATHS = {"plain": None, "typer": {"FORCE_COLOR": "1"}}


def plain(text: str) -> str:
    return re.sub(r"\x1b\[[0-9;]*m", "", text)


def config_dir(vault_cli, tmp_path, names: list[str]) -> str:
    d = tmp_path / "configs"
    d.mkdir(exist_ok=True)
    for i, name in enumerate(names):
        shutil.copy(vault_cli.config(i % 2), d / f"{name}.conf")
    return str(d)


@pytest.mark.parametrize("path", PATHS)
def test_several_up_and_down_in_one_call(world, vault_cli, tmp_path, path):
    names = [vault_cli.new_name() for _ in range(3)]
    before = {n: host_snapshot(world, n) for n in names}
    res = vault_cli("up", *names, "--config-dir", config_dir(vault_cli, tmp_path, names),
                    env=PATHS[path])
    assert res.returncode == 0, res.stderr
    for n in names:
        assert f"vault {n} is up" in plain(res.stdout)
        assert host_snapshot(world, n)["wireguard_go"]
    rows = {r["name"]: r for r in json.loads(vault_cli("ls", "--json").stdout)}
    for n in names:  # their wireguard-go asked all at once (tunnel/uapi.py get_many)
        assert "tunnel_error" not in rows[n] and rows[n]["listen_port"], rows[n]
        assert [p["public_key"] for p in rows[n]["peers"]] == [world.server_public_key]
    res = vault_cli("down", *names, env=PATHS[path])
    assert res.returncode == 0, res.stderr
    for n in names:
        assert f"vault {n} is down" in plain(res.stdout)
        assert host_snapshot(world, n) == before[n]


@pytest.mark.parametrize("path", PATHS)
def test_a_failure_in_the_middle_takes_the_others_down_again(world, vault_cli, tmp_path, path):
    first, taken, last = (vault_cli.new_name() for _ in range(3))
    before = {n: host_snapshot(world, n) for n in (first, last)}
    vault_cli.up(taken)  # already up: the second `up` of the three fails on it
    held = host_snapshot(world, taken)
    configs = [vault_cli.config(0), vault_cli.config(1), vault_cli.config(0)]
    res = vault_cli("up", first, taken, last, *(a for c in configs for a in ("--config", c)),
                    env=PATHS[path])
    assert res.returncode != 0, res.stdout
    assert taken in plain(res.stderr), res.stderr
    assert len(res.stderr.strip().splitlines()) == 1, res.stderr
    assert "is up" not in res.stdout
    assert host_snapshot(world, first) == before[first]  # brought up, then taken down again
    assert host_snapshot(world, last) == before[last]  # never started
    assert host_snapshot(world, taken) == held  # the vault it did not make is left alone


def test_a_missing_config_in_the_dir_changes_nothing(world, vault_cli, tmp_path):
    names = [vault_cli.new_name() for _ in range(3)]
    before = {n: host_snapshot(world, n) for n in names}
    d = config_dir(vault_cli, tmp_path, names)
    os.unlink(os.path.join(d, f"{names[2]}.conf"))
    res = vault_cli("up", *names, "--config-dir", d)
    assert res.returncode == 2, res.stdout + res.stderr
    assert f"{names[2]}.conf" in res.stderr
    for n in names:
        assert host_snapshot(world, n) == before[n]


@pytest.mark.parametrize("args", [["--config", "X"], ["--config", "X", "--config-dir", "D"], []])
def test_configs_not_matching_the_names_are_a_usage_error(world, vault_cli, args):
    a, b = vault_cli.new_name(), vault_cli.new_name()
    before = host_snapshot(world, a)
    res = vault_cli("up", a, b, *args)
    assert res.returncode == 2, res.stdout + res.stderr
    assert len(res.stderr.strip().splitlines()) == 1, res.stderr
    assert host_snapshot(world, a) == before
