"""The CLI boundary: exit codes and one-line errors, with the real entry point (no mocks)."""

import pytest

from netns_vault import launcher, paths
from netns_vault.cli.entry import main, parse_run_args
from netns_vault.errors import NotFoundError, UsageError


def test_parse_run_args():
    base = {"dbus_own": [], "hide": []}
    assert parse_run_args(["-n", "home", "--", "curl", "-v"]) == ({**base, "name": "home"},
                                                                 ["curl", "-v"])
    assert parse_run_args(["--user", "bob", "firefox", "--new"]) == ({**base, "user": "bob"},
                                                                    ["firefox", "--new"])
    assert parse_run_args(["--name=x", "--", "--weird"]) == ({**base, "name": "x"}, ["--weird"])
    assert parse_run_args(["--dbus", "none", "--hide", "/a", "--hide=/b", "--privileged",
                           "--system-bus", "--dbus-own", "org.x", "--", "ls"]) == (
        {"dbus": "none", "hide": ["/a", "/b"], "privileged": True, "system_bus": True,
         "dbus_own": ["org.x"]}, ["ls"])
    with pytest.raises(UsageError):
        parse_run_args(["-n"])
    with pytest.raises(UsageError):
        parse_run_args(["--bogus", "ls"])


@pytest.mark.parametrize("argv,code,text", [
    (["up", "BAD", "--config", "/nonexistent.conf"], 2, "not allowed"),
    (["up", "ok", "--config", "/nonexistent/x.conf"], 2, "/nonexistent/x.conf"),
    (["up", "ok", "--config", "x", "--driver", "magic"], 2, "unknown driver"),
    (["run", "-n", "BAD", "--", "true"], 2, "not allowed"),
    (["frobnicate"], 2, "No such command"),
])
def test_errors_are_one_line_with_the_right_exit_code(capsys, argv, code, text):
    assert main(argv) == code
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1, err
    assert err.startswith("vault: ") and text in err


def test_config_error_has_file_and_line(capsys, tmp_path):
    conf = tmp_path / "wg0.conf"
    conf.write_text("[Interface]\nPrivateKey = nope\n")
    assert main(["up", "ok", "--config", str(conf)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"vault: {conf}:2: "), err


def test_pick_vault(tmp_path, monkeypatch):
    monkeypatch.setattr(paths, "NETNS_DIR", str(tmp_path))
    with pytest.raises(NotFoundError):
        launcher.pick_vault(None)
    (tmp_path / "vault-a").touch()
    (tmp_path / "other").touch()
    assert launcher.pick_vault(None) == "a"
    (tmp_path / "vault-b").touch()
    with pytest.raises(UsageError, match="choose one"):
        launcher.pick_vault(None)
    assert launcher.pick_vault("b") == "b"
    with pytest.raises(NotFoundError):
        launcher.pick_vault("c")


def test_identity_and_environment_of_the_program():
    who = launcher.target_identity(None, {"SUDO_UID": "65534", "SUDO_GID": "65534"})
    assert (who.uid, who.gid, who.name) == (65534, 65534, "nobody")
    env = launcher.program_env({"SUDO_UID": "65534", "DISPLAY": ":0", "HOME": "/root"}, who)
    assert env["DISPLAY"] == ":0" and env["HOME"] == who.home and env["USER"] == "nobody"
    assert not any(k.startswith("SUDO_") for k in env)
    assert launcher.target_identity("0", {}).uid == 0
    with pytest.raises(UsageError):
        launcher.target_identity("no-such-user-xyz", {})


# --- Ctrl-C is one line at every moment (issue 10 point 5) -----------------------------------

_CONSOLE = """
import builtins, os, signal, sys
sys.argv = ["vault", "status", "nosuchvault"]
when = {when!r}
if when == "starting":
    from netns_vault.cli import entry  # installs the handler, as the console script does
    os.kill(os.getpid(), signal.SIGINT)
    import time; time.sleep(1)
    print("not reached", file=sys.stderr)
else:
    real_import = builtins.__import__
    def importing(name, *args, **kwargs):
        if name == "typer":  # the heavy imports, inside main
            os.kill(os.getpid(), signal.SIGINT)
        return real_import(name, *args, **kwargs)
    builtins.__import__ = importing
    from netns_vault.cli import entry
    entry.console()
"""


@pytest.mark.parametrize("when", ["starting", "importing"])
def test_ctrl_c_during_startup_and_imports_is_one_line_exit_130(when):
    import subprocess
    import sys

    res = subprocess.run([sys.executable, "-c", _CONSOLE.format(when=when)],
                         capture_output=True, text=True, timeout=60)
    assert res.returncode == 130, res.stderr
    lines = res.stderr.splitlines()
    assert len(lines) == 1 and "Traceback" not in res.stderr, res.stderr
    assert lines[0].startswith("vault: interrupted; rolled back"), res.stderr
