"""Text from outside the tool, rendered by it: process names, config paths (issue 10, 6 and 8)."""

from __future__ import annotations

import json
import os
import subprocess
import time

import pytest

pytestmark = pytest.mark.integration


def test_a_process_named_like_markup_inside_the_vault(world, vault_cli):
    name = vault_cli.new_name()
    vault_cli.up(name)
    sleeper = vault_cli.popen("run", "-n", name, "--user", "nobody", "--", "bash", "-c",
                              'exec -a "[/x]" sleep 60', stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 10
        while True:
            procs = json.loads(vault_cli("status", name, "--json").stdout)["processes"]
            if any(p["command"].startswith("[/x]") for p in procs):
                break
            assert time.monotonic() < deadline, procs
            time.sleep(0.1)
        status = vault_cli("status", name)
        assert status.returncode == 0 and status.stderr == "", status.stderr
        assert "[/x]" in status.stdout, status.stdout
        down = vault_cli("down", name)
        assert down.returncode == 0 and down.stderr == "", down.stderr
        assert "is down" in down.stdout and "[/x]" in down.stdout, down.stdout
    finally:
        sleeper.kill()
        sleeper.wait()


@pytest.mark.parametrize("part", ["[/b]", "[bold]"])
def test_a_config_path_with_markup_is_shown_as_it_is(world, vault_cli, tmp_path, part):
    name = vault_cli.new_name()
    folder = tmp_path / f"a{part}b"
    folder.mkdir(parents=True)  # "[/b]" holds a slash: a[ / b]b
    path = folder / "wg.conf"
    with open(vault_cli.config()) as f:
        path.write_text(f.read())
    os.chmod(path, 0o644)  # world readable: `up` names the path in a notice
    res = vault_cli("up", name, "--config", str(path))
    assert res.returncode == 0, res.stderr
    assert str(path) in res.stderr, res.stderr
    assert "is up" in res.stdout
    assert vault_cli("down", name).returncode == 0


@pytest.mark.parametrize("part", ["new\nline", "esc\x1b[2Jape"])
def test_a_config_path_with_control_characters_is_one_safe_line(world, vault_cli, tmp_path,
                                                                  part):
    name = vault_cli.new_name()
    folder = tmp_path / f"a{part}b"
    folder.mkdir()
    path = folder / "wg.conf"
    path.write_text("[Interface]\nBogus = 1\n")
    res = vault_cli("up", name, "--config", str(path))
    assert res.returncode == 2, res.stderr
    assert len(res.stderr.splitlines()) == 1 and "\x1b" not in res.stderr, repr(res.stderr)
    assert "\\n" in res.stderr or "\\e" in res.stderr, res.stderr


def test_output_to_a_pipe_never_wraps(world, vault_cli):
    name = vault_cli.new_name()
    res = vault_cli.up(name)
    lines = res.stdout.splitlines()
    assert len(lines) == 1 and lines[0].startswith("✔ vault ") and lines[0].endswith(")"), lines
    ns = f"vault-{name}"
    world.ns_run(ns, ["iptables-legacy", "-P", "OUTPUT", "ACCEPT"])
    world.ns_run(ns, ["sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=0"])
    bad = vault_cli("check", name, env={"COLUMNS": "40"})
    assert bad.returncode == 1
    (line,) = bad.stderr.splitlines()
    assert line.startswith("vault: check failed: ") and sorted(line[21:].split(", ")) == \
        ["iptables", "ipv6-addresses", "ipv6-sysctl"], bad.stderr
    assert all(line[:1] in "✔✘" for line in bad.stdout.splitlines()), bad.stdout
