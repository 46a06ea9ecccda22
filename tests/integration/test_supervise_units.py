"""`vault enable`/`disable`/`attach-unit`/`detach-unit` under a redirected root, checked with
`systemd-analyze verify` (systemd is not PID 1 here: nothing is started)."""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest


def read(path: str, mode: str = "r"):
    with open(path, mode) as f:
        return f.read()


pytestmark = pytest.mark.integration


def tree(root: str) -> dict[str, tuple]:
    out = {}
    for d, dirs, files in os.walk(root):
        for n in dirs + files:
            p = os.path.join(d, n)
            st = os.lstat(p)
            body = os.readlink(p) if os.path.islink(p) else (
                read(p, "rb") if os.path.isfile(p) else None)
            out[os.path.relpath(p, root)] = (st.st_mode, st.st_uid, body)
    return out


def verify(root: str, *units: str) -> subprocess.CompletedProcess:
    unit_dir = os.path.join(root, "etc/systemd/system")
    return subprocess.run(["systemd-analyze", "verify", *[os.path.join(unit_dir, u)
                                                          for u in units]],
                          capture_output=True, text=True, cwd=unit_dir,
                          env={**os.environ, "SYSTEMD_UNIT_PATH": unit_dir + ":"})


def test_units_verify_and_undo_byte_for_byte(vault_cli, tmp_path):
    if shutil.which("systemd-analyze") is None:
        pytest.skip("systemd-analyze not installed (apt-get install systemd)")
    root = str(tmp_path / "root")
    unit_dir = os.path.join(root, "etc/systemd/system")
    os.makedirs(unit_dir)
    with open(os.path.join(unit_dir, "demo.service"), "w") as f:
        f.write("[Unit]\nDescription=demo\n[Service]\nExecStart=/bin/sleep 1000\n")
    before = tree(root)
    name = "unitx"
    conf = vault_cli.config(0)
    res = vault_cli("enable", name, "--config", conf, "--docker", "--wait", "--root", root)
    assert res.returncode == 0, res.stderr
    assert "not running systemctl" in res.stdout
    copy = os.path.join(root, "etc/netns-vault", f"{name}.conf")
    assert read(copy, "rb") == read(conf, "rb")
    assert os.stat(copy).st_mode & 0o777 == 0o600
    assert "--docker --wait" in read(os.path.join(root, f"etc/netns-vault/{name}.env"))
    assert os.path.realpath(os.path.join(unit_dir, "multi-user.target.wants",
                                         f"netns-vault@{name}.service")) == \
        os.path.join(unit_dir, "netns-vault@.service")
    assert vault_cli("enable", name, "--config", conf, "--root", root).returncode == 2
    res = vault_cli("attach-unit", name, "demo", "--root", root)
    assert res.returncode == 0, res.stderr
    dropin = read(os.path.join(unit_dir, "demo.service.d", f"netns-vault-{name}.conf"))
    for want in (f"NetworkNamespacePath=/run/netns/vault-{name}",
                 f"Requires=netns-vault@{name}.service", f"After=netns-vault@{name}.service",
                 "NoNewPrivileges=yes", "/run/nscd",
                 f"BindReadOnlyPaths=/etc/netns/vault-{name}/resolv.conf:/etc/resolv.conf"):
        assert want in dropin

    ok = verify(root, f"netns-vault@{name}.service", "demo.service")
    assert ok.returncode == 0 and ok.stderr.strip() == "", ok.stderr
    # Positive control: verify does complain about a broken drop-in.
    bad = os.path.join(unit_dir, "demo.service.d", "zz-broken.conf")
    with open(bad, "w") as f:
        f.write("[Service]\nNetworkNamespacePath=relative\nType=bogus\n")
    broken = verify(root, "demo.service")
    os.unlink(bad)
    assert broken.returncode != 0 or "bogus" in broken.stderr, broken

    assert vault_cli("detach-unit", name, "demo", "--root", root).returncode == 0
    assert vault_cli("detach-unit", name, "demo", "--root", root).returncode == 2
    res = vault_cli("disable", name, "--root", root)
    assert res.returncode == 0, res.stderr
    assert tree(root) == before
    assert vault_cli("disable", name, "--root", root).returncode == 2
