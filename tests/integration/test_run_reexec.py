"""`vault run` from a non-root user re-executes itself through sudo, keeping the desktop env."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile

import pytest

from tests.conftest import VAULT

pytestmark = pytest.mark.integration


@pytest.fixture
def bindir():
    path = tempfile.mkdtemp(prefix="netns-vault-sudo-")  # readable by nobody, unlike tmp_path
    os.chmod(path, 0o755)
    try:
        yield path
    finally:
        shutil.rmtree(path)


def test_non_root_run_goes_through_sudo_with_the_desktop_environment(bindir):
    # A stand-in `sudo` that only reports how it was called: what is under test is vault's exec.
    fake = os.path.join(bindir, "sudo")
    with open(fake, "w") as f:
        f.write('#!/bin/sh\nprintf "%s\\n" "$@"\n')
    os.chmod(fake, 0o755)
    env = {"PATH": f"{bindir}:/usr/bin:/bin", "DISPLAY": ":3", "HOME": "/nonexistent"}
    res = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
                          VAULT, "run", "-n", "home", "--", "firefox", "--new-window"],
                         capture_output=True, text=True, env=env, timeout=30)
    assert res.returncode == 0, res.stderr
    args = res.stdout.splitlines()
    preserve = next(a for a in args if a.startswith("--preserve-env="))
    for var in ("DISPLAY", "WAYLAND_DISPLAY", "XDG_RUNTIME_DIR", "DBUS_SESSION_BUS_ADDRESS",
                "PULSE_SERVER", "HOME", "LANG", "TERM"):
        assert var in preserve.split("=", 1)[1].split(",")
    assert args[args.index("--") + 1:] == [os.path.realpath(VAULT), "run", "-n", "home", "--",
                                           "firefox", "--new-window"]
