"""Launching into a vault without a terminal: `vault allow`, `vault-launch`, `vault desktop`.

Real sudo, real users (made here with useradd, removed with their homes), real visudo, GLib's
own desktop-entry launcher (`gio launch`, what GNOME and friends use), desktop-file-validate.

How the closed world maps to a desktop: on a real machine `vault up` runs in the host's network
namespace, and a menu entry is started by the desktop in that same namespace. Here the world's
"host" is a namespace of its own (the tunnel's UDP socket lives there), while the entry is
started from this machine's root namespace, like a desktop would. That is fine and on purpose:
vault-launch enters the vault through /run/netns/vault-NAME, whatever namespace it starts in,
and nothing is linked to the root namespace. The program's proof of where it runs is the echo
web server, which is reachable only through the tunnel and answers with the address it sees.
"""

from __future__ import annotations

import contextlib
import grp
import os
import pwd
import shutil
import stat
import subprocess
import tempfile

import pytest

from netns_vault import allow, desktop
from netns_vault.errors import SystemFailure
from tests.conftest import VAULT, VENV_BIN

pytestmark = pytest.mark.integration

LAUNCHER = os.path.join(VENV_BIN, "vault-launch")
WATCHED = ("/etc/sudoers.d", "/etc/netns-vault")


def snapshot(*tops: str) -> dict[str, tuple]:
    """Every path under tops: type, mode, owner and bytes."""
    seen: dict[str, tuple] = {}
    for top in tops:
        if not os.path.lexists(top):
            seen[top] = ("absent",)
            continue
        for dirpath, dirnames, filenames in os.walk(top):
            for p in [dirpath, *(os.path.join(dirpath, n) for n in filenames)]:
                st = os.lstat(p)
                data = None
                if stat.S_ISREG(st.st_mode):
                    with open(p, "rb") as f:
                        data = f.read()
                seen[p] = (stat.S_IFMT(st.st_mode), stat.S_IMODE(st.st_mode), st.st_uid,
                           st.st_gid, data)
            dirnames.sort()
    return seen


class Users:
    """Test users: made with useradd -m, removed with userdel -r (and denied) at the end."""

    def __init__(self):
        self.names: list[str] = []

    def add(self, tag: str) -> pwd.struct_passwd:
        name = f"nvl{os.getpid() % 10000}{tag}"
        subprocess.run(["useradd", "-m", "-s", "/bin/sh", name], check=True)
        self.names.append(name)
        return pwd.getpwnam(name)

    def cleanup(self) -> None:
        for name in self.names:
            subprocess.run([VAULT, "deny", name], capture_output=True)
            subprocess.run(["userdel", "-r", name], capture_output=True)


@pytest.fixture
def users():
    before = snapshot(*WATCHED)
    u = Users()
    try:
        yield u
    finally:
        u.cleanup()
        assert snapshot(*WATCHED) == before, "the test left /etc changed"


@pytest.fixture
def scratch():
    """A directory every test user can read (tmp_path is not)."""
    path = tempfile.mkdtemp(prefix="netns-vault-launch-")
    os.chmod(path, 0o755)
    try:
        yield path
    finally:
        shutil.rmtree(path)


def as_user(user: str, argv: list[str], env: dict | None = None,
            timeout: float = 60) -> subprocess.CompletedProcess:
    """Run argv as `user` the way a desktop starts things: new session, no tty, stdin /dev/null."""
    base = {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": pwd.getpwnam(user).pw_dir}
    base.update(env or {})
    return subprocess.run(["runuser", "-u", user, "--", "env", "-i",
                           *(f"{k}={v}" for k, v in base.items()), "setsid", "-w", *argv],
                          stdin=subprocess.DEVNULL, capture_output=True, text=True,
                          timeout=timeout)


def one_line(res: subprocess.CompletedProcess) -> str:
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1, res.stderr
    return lines[0]


def test_a_desktop_entry_started_without_a_terminal_runs_the_program_in_the_vault(
        world, vault_cli, users, scratch, tool):
    gio, validate = tool("gio"), tool("desktop-file-validate")
    name = vault_cli.new_name()
    vault_cli.up(name)
    alice = users.add("a")
    res = vault_cli("allow", alice.pw_name, "--vault", name)
    assert res.returncode == 0, res.stderr
    # A program whose path needs the Exec quoting rules: space, quote, dollar, percent.
    appdir = os.path.join(scratch, "my apps $HOME 100%")
    os.mkdir(appdir, 0o755)
    probe = os.path.join(appdir, 'probe "it\'s"')
    with open(probe, "w") as f:
        f.write(f'#!/bin/sh\necho "uid=$(id -u)"\ncurl -sS --max-time 10 {world.WEB_URL}\n'
                'echo\necho "display=$DISPLAY"\ntty || true\ngrep NoNewPrivs /proc/self/status\n')
    os.chmod(probe, 0o755)

    res = vault_cli("desktop", "add", name, probe, "--user", alice.pw_name)
    assert res.returncode == 0, res.stderr
    path = os.path.join(alice.pw_dir, ".local/share/applications",
                        desktop.entry_filename(name, probe))
    st = os.stat(path)
    assert (st.st_uid, st.st_gid) == (alice.pw_uid, alice.pw_gid)
    assert os.stat(os.path.dirname(path)).st_uid == alice.pw_uid
    check = subprocess.run([validate, path], capture_output=True, text=True)
    assert check.returncode == 0 and not check.stdout.strip(), check.stdout + check.stderr
    keys = desktop.read_entry(path)
    assert keys["Name"] == f'probe "it\'s" (vault {name})'
    assert keys["Terminal"] == "false"
    assert desktop.parse_exec(keys["Exec"]) == [LAUNCHER, name, "--", probe]

    # Started by GLib's launcher, as the user, with no terminal: the program is in the vault.
    res = as_user(alice.pw_name, [gio, "launch", path], env={"DISPLAY": ":42"})
    assert res.returncode == 0, res.stderr
    out = res.stdout.splitlines()
    assert f"uid={alice.pw_uid}" in out, res.stdout + res.stderr
    assert f"client={world.client_address(0)}" in out, res.stdout + res.stderr
    assert "display=:42" in out
    assert "not a tty" in out
    assert "NoNewPrivs:\t1" in out  # confined like any vault run (no way out by privilege)

    res = vault_cli("desktop", "remove", name, probe, "--user", alice.pw_name)
    assert res.returncode == 0, res.stderr
    assert not os.path.exists(path)
    res = vault_cli("desktop", "remove", name, probe, "--user", alice.pw_name)
    assert res.returncode == 2 and "no menu entry" in one_line(res)


def test_a_user_not_allowed_gets_one_line_and_no_password_prompt(world, vault_cli, users):
    name = vault_cli.new_name()
    vault_cli.up(name)
    alice, bob = users.add("a"), users.add("b")
    assert vault_cli("allow", alice.pw_name, "--vault", name).returncode == 0
    res = vault_cli("desktop", "add", name, "id", "--user", bob.pw_name)
    assert res.returncode == 0 and "not allowed" in res.stderr, res.stderr
    entry = os.path.join(bob.pw_dir, ".local/share/applications",
                         desktop.entry_filename(name, "id"))
    argv = desktop.parse_exec(desktop.read_entry(entry)["Exec"])
    res = as_user(bob.pw_name, argv)
    assert res.returncode == 5 and res.stdout == ""
    assert f"user {bob.pw_name} is not allowed to launch into vault {name}" in one_line(res)
    # Past the courtesy check, straight to sudo: refused by sudo, at once, without a prompt.
    res = as_user(bob.pw_name, ["sudo", "-n", LAUNCHER, name, "--", "id"])
    assert res.returncode == 1 and "password is required" in res.stderr, res.stderr


def test_the_permission_gives_nothing_but_a_launch(world, vault_cli, users, scratch, tool):
    gcc = tool("gcc")
    name, other = vault_cli.new_name(), vault_cli.new_name()
    vault_cli.up(name)
    vault_cli.up(other, index=1)
    alice, bob = users.add("a"), users.add("b")
    assert vault_cli("allow", alice.pw_name, "--vault", name).returncode == 0
    sudo = ["sudo", "-n", LAUNCHER]

    res = as_user(alice.pw_name, [LAUNCHER, name, "--", "id", "-u"])
    assert res.returncode == 0 and res.stdout.strip() == str(alice.pw_uid), res.stderr
    # Another vault: refused by the courtesy check and, past it, by the root side.
    for argv in ([LAUNCHER, other, "--", "id"], [*sudo, other, "--", "id"]):
        res = as_user(alice.pw_name, argv)
        assert res.returncode == 5 and "not allowed" in one_line(res)
    # Another user, --privileged, --dbus host: no options exist to ask for them.
    for opt in (["--user", "root"], ["--user", bob.pw_name], ["--privileged"],
                ["--dbus", "host"], ["--system-bus"]):
        res = as_user(alice.pw_name, [*sudo, name, *opt, "--", "id", "-u"])
        assert res.returncode == 5 and "takes no options" in one_line(res), opt
    # Past vault-launch: sudo itself grants nothing else.
    for argv in (["sudo", "-n", "-u", bob.pw_name, LAUNCHER, name, "--", "id"],
                 ["sudo", "-n", VAULT, "run", "-n", name, "--user", "root", "--", "id"],
                 ["sudo", "-n", "id"]):
        res = as_user(alice.pw_name, argv)
        assert res.returncode == 1 and "password is required" in res.stderr, argv

    # LD_PRELOAD and kin: a library that records every process that loads it.
    marks = os.path.join(scratch, "marks")
    os.mkdir(marks)
    os.chmod(marks, 0o1777)
    src, lib = os.path.join(scratch, "mark.c"), os.path.join(scratch, "libmark.so")
    with open(src, "w") as f:
        f.write('#include <stdio.h>\n#include <unistd.h>\n'
                '__attribute__((constructor)) static void mark(void) {\n'
                '  char exe[256] = {0}, path[512];\n'
                '  readlink("/proc/self/exe", exe, sizeof exe - 1);\n'
                f'  snprintf(path, sizeof path, "{marks}/%d", (int)getpid());\n'
                '  FILE *f = fopen(path, "w");\n'
                '  if (f) { fprintf(f, "%d %s\\n", (int)geteuid(), exe); fclose(f); }\n}\n')
    subprocess.run([gcc, "-shared", "-fPIC", "-o", lib, src], check=True)
    os.chmod(lib, 0o755)

    def loaded_by() -> set[str]:
        found = set()
        for entry in os.listdir(marks):
            with open(os.path.join(marks, entry)) as f:
                found.add(f.read().strip())
            os.unlink(os.path.join(marks, entry))
        return found

    printenv = shutil.which("printenv")
    # Positive control: the library does mark a program that loads it.
    res = as_user(alice.pw_name, [printenv, "LD_PRELOAD"], env={"LD_PRELOAD": lib})
    assert f"{alice.pw_uid} {os.path.realpath(printenv)}" in loaded_by(), res.stderr
    bad = {"LD_PRELOAD": lib, "LD_LIBRARY_PATH": scratch, "LD_AUDIT": lib,
           "PYTHONPATH": scratch, "PYTHONINSPECT": "1", "GCONV_PATH": scratch,
           "DISPLAY": ":7"}
    for argv in ([LAUNCHER, name, "--", printenv],
                 ["sudo", "-n", "--preserve-env=LD_PRELOAD", LAUNCHER, name, "--", printenv]):
        res = as_user(alice.pw_name, argv, env=bad)
        assert res.returncode == 0, res.stderr
        seen = dict(line.split("=", 1) for line in res.stdout.splitlines() if "=" in line)
        assert seen.get("DISPLAY") == ":7"
        assert not set(seen) & {"LD_PRELOAD", "LD_LIBRARY_PATH", "LD_AUDIT", "PYTHONPATH",
                                "PYTHONINSPECT", "GCONV_PATH"}, seen
        marked = loaded_by()
        assert not [m for m in marked if m.startswith("0 ")], marked  # nothing as root
        assert not [m for m in marked if m.endswith(os.path.realpath(printenv))], marked
    for argv in (["sudo", "-n", f"LD_PRELOAD={lib}", LAUNCHER, name, "--", "id"],
                 ["sudo", "-n", "--preserve-env=PYTHONPATH", LAUNCHER, name, "--", "id"],
                 ["sudo", "-n", "-E", LAUNCHER, name, "--", "id"]):
        res = as_user(alice.pw_name, argv, env=bad)
        assert res.returncode == 1 and "not allowed to" in res.stderr, (argv, res.stderr)
    assert not [m for m in loaded_by() if m.startswith("0 ")]


def test_allow_then_deny_leaves_etc_byte_identical(users, scratch):
    alice, bob = users.add("a"), users.add("b")
    root = os.path.join(scratch, "root")
    os.makedirs(os.path.join(root, "etc/sudoers.d"))
    shutil.copy2("/etc/sudoers.d/README", os.path.join(root, "etc/sudoers.d/README"))
    before = snapshot(root)

    def vault(*args: str) -> subprocess.CompletedProcess:
        res = subprocess.run([VAULT, *args, "--root", root], capture_output=True, text=True)
        assert res.returncode == 0, res.stderr
        return res

    vault("allow", alice.pw_name, "--vault", "home", "--vault", "work")
    vault("allow", bob.pw_name, "--vault", "home")
    dropin = os.path.join(root, allow.DROPIN)
    st = os.stat(dropin)
    assert (stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid) == (0o440, 0, 0)
    assert subprocess.run(["visudo", "-c", "-q", "-f", dropin]).returncode == 0
    with open(dropin) as f:
        text = f.read()
    assert f"NETNS_VAULT_USERS = {', '.join(sorted([alice.pw_name, bob.pw_name]))}\n" in text
    assert "NOPASSWD: NETNS_VAULT_LAUNCH\n" in text and f"= {LAUNCHER}\n" in text
    assert allow.allowed_vaults(alice.pw_name, root) == ["home", "work"]
    vault("deny", alice.pw_name, "--vault", "work")
    assert allow.allowed_vaults(alice.pw_name, root) == ["home"]
    vault("deny", alice.pw_name)
    assert os.path.exists(dropin)
    assert "nothing to do" in vault("deny", alice.pw_name).stdout
    vault("deny", bob.pw_name, "--vault", "home")
    assert snapshot(root) == before


def test_a_broken_drop_in_is_never_installed(users, scratch, monkeypatch):
    alice = users.add("a")
    root = os.path.join(scratch, "root")
    os.makedirs(os.path.join(root, "etc/sudoers.d"))
    empty = snapshot(root)
    # The real visudo judges; only the text is made broken.
    monkeypatch.setattr(allow, "render_dropin", lambda users, launcher: "ALL ALL = = (\n")
    with pytest.raises(SystemFailure, match="visudo rejected"):
        allow.allow(alice.pw_name, ["home"], root=root, launcher=LAUNCHER)
    assert snapshot(root) == empty
    # With a good drop-in in place, a broken change leaves it (and the allow-list) as they were.
    monkeypatch.undo()
    allow.allow(alice.pw_name, ["home"], root=root, launcher=LAUNCHER)
    good = snapshot(root)
    monkeypatch.setattr(allow, "render_dropin", lambda users, launcher: "ALL ALL = = (\n")
    with pytest.raises(SystemFailure, match="visudo rejected"):
        allow.allow(alice.pw_name, ["work"], root=root, launcher=LAUNCHER)
    assert snapshot(root) == good
    monkeypatch.undo()
    allow.deny(alice.pw_name, root=root)
    assert snapshot(root) == empty


@pytest.fixture
def safe_dir():
    """A directory only root can change, all the way up (/tmp is writable by everyone)."""
    path = tempfile.mkdtemp(prefix="netns-vault-launch-", dir="/run")
    os.chmod(path, 0o755)
    try:
        yield path
    finally:
        shutil.rmtree(path)


def test_a_launcher_others_can_change_is_refused(users, safe_dir):
    alice = users.add("a")
    root = os.path.join(safe_dir, "root")
    os.makedirs(os.path.join(root, "etc/sudoers.d"))
    before = snapshot(root)
    bindir = os.path.join(safe_dir, "bin")
    os.mkdir(bindir, 0o755)
    copy = os.path.join(bindir, "vault-launch")
    shutil.copy2(LAUNCHER, copy)
    os.chown(copy, alice.pw_uid, grp.getgrnam("root").gr_gid)  # the user could rewrite it
    res = subprocess.run([VAULT, "allow", alice.pw_name, "--vault", "home", "--root", root,
                          "--launcher", copy], capture_output=True, text=True)
    assert res.returncode == 3
    assert f"{copy} is owned by uid {alice.pw_uid}, not root" in one_line(res)
    os.chown(copy, 0, 0)
    res = subprocess.run([VAULT, "allow", alice.pw_name, "--vault", "home", "--root", root,
                          "--launcher", copy], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr  # the positive control: a root-owned copy is fine
    subprocess.run([VAULT, "deny", alice.pw_name, "--root", root], check=True)
    os.chmod(bindir, 0o777)  # but not in a directory others can write
    res = subprocess.run([VAULT, "allow", alice.pw_name, "--vault", "home", "--root", root,
                          "--launcher", copy], capture_output=True, text=True)
    assert res.returncode == 3 and f"{bindir} is writable by everyone" in one_line(res)
    with contextlib.suppress(FileNotFoundError):
        os.chmod(bindir, 0o755)
    assert snapshot(root) == before
