"""`vault run`: start a program inside a vault as the invoking user.

This module is the hot path of `vault run`, so it imports only the standard library: no typer,
no pyroute2. The process enters the vault and then becomes the program (exec), so the program's
exit code and signals are its own.

Order matters: a private mount namespace first (our mounts must not reach the host), then the
vault's network namespace, then the DNS files, and the privilege drop last.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import pwd
import sys

from .errors import NotFoundError, SystemFailure, UsageError
from .nsexec import CLONE_NEWNS, libc, setns_path, unshare

MS_BIND = 4096
MS_REC = 16384
MS_PRIVATE = 1 << 18
MS_SLAVE = 1 << 19
MNT_DETACH = 2

NETNS_DIR = "/run/netns"
ETC_NETNS_DIR = "/etc/netns"
VAULT_PREFIX = "vault-"

# Unix sockets through which glibc resolves names via daemons on the host's network.
HIDDEN_RESOLVER_DIRS = ("/run/systemd/resolve", "/run/nscd", "/var/run/nscd", "/var/db/nscd")

DESKTOP_ENV = ("DISPLAY", "WAYLAND_DISPLAY", "XDG_RUNTIME_DIR", "DBUS_SESSION_BUS_ADDRESS",
               "PULSE_SERVER", "HOME", "LANG", "TERM", "XAUTHORITY", "COLORTERM", "LC_ALL")


class RunRequest:
    """What to run where. Plain classes here: dataclasses cost `vault run` milliseconds."""

    __slots__ = ("argv", "name", "user", "env")

    def __init__(self, argv: list[str], name: str | None = None, user: str | None = None,
                 env: dict[str, str] | None = None):
        self.argv = argv
        self.name = name
        self.user = user
        self.env = dict(os.environ) if env is None else env


def up_vault_names() -> list[str]:
    try:
        entries = os.listdir(NETNS_DIR)
    except FileNotFoundError:
        return []
    return sorted(e[len(VAULT_PREFIX):] for e in entries if e.startswith(VAULT_PREFIX))


def pick_vault(name: str | None) -> str:
    if name is not None:
        if not os.path.exists(os.path.join(NETNS_DIR, VAULT_PREFIX + name)):
            raise NotFoundError(f"no vault named {name!r} is up (see `vault ls`)")
        return name
    names = up_vault_names()
    if len(names) == 1:
        return names[0]
    if not names:
        raise NotFoundError("no vault is up; start one with `vault up NAME --config FILE`")
    raise UsageError(f"{len(names)} vaults are up ({', '.join(names)}); choose one with -n NAME")


class Identity:
    __slots__ = ("uid", "gid", "name", "home", "shell")

    def __init__(self, uid: int, gid: int, name: str, home: str, shell: str):
        self.uid, self.gid, self.name, self.home, self.shell = uid, gid, name, home, shell


def target_identity(user: str | None, env: dict[str, str]) -> Identity:
    """--user if given, else the sudo caller (SUDO_UID/SUDO_GID), else the current user."""
    try:
        if user is not None:
            entry = pwd.getpwuid(int(user)) if user.isdigit() else pwd.getpwnam(user)
            return Identity(entry.pw_uid, entry.pw_gid, entry.pw_name, entry.pw_dir, entry.pw_shell)
        if env.get("SUDO_UID", "").isdigit():
            entry = pwd.getpwuid(int(env["SUDO_UID"]))
            gid = int(env["SUDO_GID"]) if env.get("SUDO_GID", "").isdigit() else entry.pw_gid
            return Identity(entry.pw_uid, gid, entry.pw_name, entry.pw_dir, entry.pw_shell)
    except KeyError:
        raise UsageError(f"no such user: {user or env.get('SUDO_UID')}") from None
    entry = pwd.getpwuid(os.getuid())
    return Identity(entry.pw_uid, entry.pw_gid, entry.pw_name, entry.pw_dir, entry.pw_shell)


def program_env(env: dict[str, str], who: Identity) -> dict[str, str]:
    out = {k: v for k, v in env.items() if not k.startswith("SUDO_")}
    out.update(HOME=who.home, USER=who.name, LOGNAME=who.name)
    if who.shell:
        out["SHELL"] = who.shell
    out.setdefault("PATH", "/usr/local/bin:/usr/bin:/bin")
    return out


def _mount(source: str, target: str, fstype: str | None, flags: int, data: str | None = None):
    if libc().mount(source.encode(), target.encode(), fstype.encode() if fstype else None,
                    ctypes.c_ulong(flags), data.encode() if data else None) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"mount {source} on {target}: {os.strerror(err)}")


def _enter_private_mounts() -> None:
    unshare(CLONE_NEWNS)
    # Slave: host mounts still reach us, ours never reach the host.
    _mount("none", "/", None, MS_REC | MS_SLAVE)


def _remount_sys() -> None:
    """/sys must show the vault's interfaces, as `ip netns exec` does. Best effort."""
    if libc().umount2(b"/sys", MNT_DETACH) == 0:
        with contextlib.suppress(OSError):
            _mount("sysfs", "/sys", "sysfs", 0)


def _hide_resolver_sockets() -> list[str]:
    hidden = []
    seen = set()
    for d in HIDDEN_RESOLVER_DIRS:
        real = os.path.realpath(d)
        if real in seen or not os.path.isdir(real):
            continue
        seen.add(real)
        _mount("tmpfs", real, "tmpfs", 0, "mode=0755,size=64k")
        hidden.append(real)
    return hidden


def _bind_etc_files(vault: str, hidden: list[str]) -> None:
    etc_dir = os.path.join(ETC_NETNS_DIR, VAULT_PREFIX + vault)
    try:
        entries = sorted(os.listdir(etc_dir))
    except FileNotFoundError:
        return
    for entry in entries:
        src = os.path.join(etc_dir, entry)
        target = os.path.realpath(os.path.join("/etc", entry))
        if any(target == h or target.startswith(h + "/") for h in hidden):
            # e.g. resolv.conf -> /run/systemd/resolve/stub-resolv.conf: that directory is now
            # our empty tmpfs, so put the vault's copy where the symlink points.
            os.makedirs(os.path.dirname(target), exist_ok=True)
            with open(src, "rb") as s, open(target, "wb") as t:
                t.write(s.read())
            continue
        if not os.path.exists(target):
            continue
        _mount(src, target, None, MS_BIND)


def _drop_to(who: Identity) -> None:
    if who.uid == 0 and os.getuid() == 0:
        return
    os.initgroups(who.name, who.gid)
    os.setgid(who.gid)
    os.setuid(who.uid)


def enter_vault(vault: str) -> list[str]:
    """Make this process's view the vault's: mounts, network, DNS. Returns the hidden dirs."""
    _enter_private_mounts()
    try:
        setns_path(os.path.join(NETNS_DIR, VAULT_PREFIX + vault))
    except OSError as exc:
        raise SystemFailure(f"entering vault {vault}: {exc.strerror or exc}") from exc
    _remount_sys()
    hidden = _hide_resolver_sockets()
    _bind_etc_files(vault, hidden)
    return hidden


def run(req: RunRequest) -> None:
    """Enter the vault and exec the program. Returns only by raising."""
    if not req.argv:
        raise UsageError("nothing to run: give a command after --")
    if os.geteuid() != 0:
        raise SystemFailure("vault run needs root (it re-executes itself through sudo)")
    vault = pick_vault(req.name)
    who = target_identity(req.user, req.env)
    env = program_env(req.env, who)
    try:
        enter_vault(vault)
        _drop_to(who)
    except OSError as exc:
        raise SystemFailure(f"preparing vault {vault} for the program: {exc}") from exc
    try:
        os.execvpe(req.argv[0], req.argv, env)
    except FileNotFoundError:
        raise UsageError(f"{req.argv[0]}: command not found") from None
    except OSError as exc:
        raise SystemFailure(f"{req.argv[0]}: {exc.strerror}") from exc


def sudo_argv(argv: list[str]) -> list[str]:
    """The command line that re-runs this `vault run` through sudo, keeping the desktop env."""
    keep = ",".join(DESKTOP_ENV)
    exe = os.path.realpath(sys.argv[0]) if os.path.exists(sys.argv[0]) else sys.argv[0]
    return ["sudo", f"--preserve-env={keep}", "--", exe, *argv]
