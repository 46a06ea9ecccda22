"""`vault run`: start a program inside a vault as the invoking user.

This module is the hot path of `vault run`, so it imports only the standard library: no typer,
no pyroute2. The process enters the vault and then becomes the program (exec), so the program's
exit code and signals are its own.

Order matters (the order is the body of `run`): the D-Bus proxy's keeper is forked while still
in the host's namespaces; then a private mount namespace (our mounts must not reach the host),
the vault's network namespace, the DNS files and the hides; then everything the exec needs is
resolved and imported; then the privilege drop (bounding set, no_new_privs, uid, capability
sets), the seccomp filter, and exec. See netns_vault/confine/ and the README's "Confinement".
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import pwd
import shutil
import sys

from . import paths
from .confine import browsers, caps, dbus, seccomp
from .errors import NotFoundError, SystemFailure, UsageError
from .names import VaultNames
from .nsexec import CLONE_NEWNS, libc, setns_path, unshare

MS_BIND = 4096
MS_REC = 16384
MS_SLAVE = 1 << 19
MNT_DETACH = 2

# Unix sockets through which glibc resolves names via daemons on the host's network.
HIDDEN_RESOLVER_DIRS = ("/run/systemd/resolve", "/run/nscd", "/var/run/nscd", "/var/db/nscd")

DESKTOP_ENV = ("DISPLAY", "WAYLAND_DISPLAY", "XDG_RUNTIME_DIR", "DBUS_SESSION_BUS_ADDRESS",
               "PULSE_SERVER", "HOME", "LANG", "TERM", "XAUTHORITY", "COLORTERM", "LC_ALL")


SYSTEM_BUS_DIR = "/run/dbus"
# Environment variables that change how programs load: never passed on a restricted launch.
LOADER_ENV_PREFIXES = ("LD_", "GCONV_", "MALLOC_", "PYTHON", "PERL5", "RUBY", "NODE_OPTIONS",
                       "GIO_EXTRA_MODULES", "GTK_MODULES", "GTK_PATH", "QT_PLUGIN_PATH")


def warn(message: str) -> None:
    print(f"vault: warning: {message}", file=sys.stderr)


class RunRequest:
    """What to run where. Plain classes here: dataclasses cost `vault run` milliseconds.

    `restricted` is the policy hook for launches that a user is merely *allowed* to make (the
    allow-list): it refuses `privileged`, a `user` other than the caller (SUDO_UID), `dbus`
    "host" and `system_bus`, and strips loader variables (LD_PRELOAD and kin) from the env.
    """

    __slots__ = ("argv", "name", "user", "env", "privileged", "dbus", "dbus_own", "system_bus",
                 "hide", "restricted")

    def __init__(self, argv: list[str], name: str | None = None, user: str | None = None,
                 env: dict[str, str] | None = None, *, privileged: bool = False,
                 dbus: str = "filtered", dbus_own: list[str] | None = None,
                 system_bus: bool = False, hide: list[str] | None = None,
                 restricted: bool = False):
        self.argv = argv
        self.name = name
        self.user = user
        self.env = dict(os.environ) if env is None else env
        self.privileged = privileged
        self.dbus = dbus
        self.dbus_own = list(dbus_own or [])
        self.system_bus = system_bus
        self.hide = list(hide or [])
        self.restricted = restricted


def check_request(req: RunRequest) -> None:
    """Refuse what the request may not ask for; the restricted policy lives here."""
    if req.dbus not in dbus.MODES:
        raise UsageError(f"--dbus must be one of {', '.join(dbus.MODES)}, not {req.dbus!r}")
    for path in req.hide:
        if not path.startswith("/") or not os.path.lexists(path):
            raise UsageError(f"--hide needs an existing absolute path, not {path!r}")
    if not req.restricted:
        return
    refused = [what for what, asked in (("--privileged", req.privileged),
                                         ("--dbus host", req.dbus == "host"),
                                         ("--system-bus", req.system_bus),
                                         ("--dbus-own", bool(req.dbus_own))) if asked]
    if refused:
        raise UsageError(f"not allowed for this launch: {', '.join(refused)}")
    caller = req.env.get("SUDO_UID", "")
    if not caller.isdigit():
        raise UsageError("a restricted launch must come through sudo (no SUDO_UID)")
    if req.user is not None:
        try:
            entry = pwd.getpwuid(int(req.user)) if req.user.isdigit() else pwd.getpwnam(req.user)
        except KeyError:
            raise UsageError(f"no such user: {req.user}") from None
        if entry.pw_uid != int(caller):
            raise UsageError("not allowed for this launch: --user other than yourself")
    req.env = {k: v for k, v in req.env.items() if not k.startswith(LOADER_ENV_PREFIXES)}


def up_vault_names() -> list[str]:
    return paths.vault_names_up()


def pick_vault(name: str | None) -> str:
    if name is not None:
        if not os.path.exists(VaultNames(name).netns_path):
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
    etc_dir = VaultNames(vault).etc_dir
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


def _drop_to(who: Identity, privileged: bool) -> None:
    """Bounding set, no_new_privs, uid/gid, then the process's capability sets."""
    if not privileged:
        caps.drop_bounding()
        caps.set_no_new_privs()
    if not (who.uid == 0 and os.getuid() == 0):
        os.initgroups(who.name, who.gid)
        os.setgid(who.gid)
        os.setuid(who.uid)
    if not privileged:
        caps.drop_process_sets()


def hide(path: str) -> str | None:
    """An empty tmpfs over a directory, /dev/null over anything else. None if nothing there."""
    real = os.path.realpath(path)
    if not os.path.lexists(real):
        return None
    if os.path.isdir(real):
        _mount("tmpfs", real, "tmpfs", 0, "mode=0755,size=64k")
    else:
        _mount("/dev/null", real, None, MS_BIND)
    return real


def enter_vault(vault: str) -> list[str]:
    """Make this process's view the vault's: mounts, network, DNS. Returns the hidden dirs."""
    _enter_private_mounts()
    try:
        setns_path(VaultNames(vault).netns_path)
    except OSError as exc:
        raise SystemFailure(f"entering vault {vault}: {exc.strerror or exc}") from exc
    _remount_sys()
    hidden = _hide_resolver_sockets()
    _bind_etc_files(vault, hidden)
    return hidden


def _browser_remote_names(req: RunRequest, who: Identity, env: dict[str, str],
                          vault: str) -> list[str]:
    """The remoting names of the vault's own Firefox profile, when remoting stays on.

    Only with the filtered bus (its proxy lets the program own and call exactly these) and the
    profile `vault run` chose (see confine/browsers.py). Empty: remoting off.
    """
    if req.dbus != "filtered" or not req.argv:
        return []
    found = req.argv[0] if "/" in req.argv[0] else shutil.which(req.argv[0],
                                                                 path=env.get("PATH"))
    browser = browsers.kind(req.argv[0], found)
    if browser is None or browser[0] != "gecko" or browsers.gecko_profile_given(req.argv[1:]):
        return []
    profile = browsers.profile_dir(env, who.home, vault, browser[1])
    return browsers.remote_names(profile, browsers.gecko_app_names(env, found, browser[1]))


def _session_bus(req: RunRequest, who: Identity, env: dict[str, str],
                 own: list[str]) -> None:
    """Point the program at its bus (see confine/dbus.py); runs in the host's namespaces."""
    if req.dbus == "host":
        warn("--dbus host: the program can ask programs outside the vault (a browser, the "
             "desktop portal, systemd) to open URLs on the host's network")
        return
    upstream = dbus.upstream_address(req.env, who.uid) if req.dbus == "filtered" else None
    env["DBUS_SESSION_BUS_ADDRESS"] = dbus.NO_BUS
    if upstream is None:
        return
    proxy = shutil.which(dbus.PROXY)
    if proxy is None:
        raise SystemFailure("xdg-dbus-proxy is not installed (apt-get install xdg-dbus-proxy), "
                            "needed for --dbus filtered; or use --dbus none")
    try:
        env["DBUS_SESSION_BUS_ADDRESS"] = dbus.start_proxy(
            upstream, who.uid, who.gid, who.name, [*req.dbus_own, *own], proxy)
    except dbus.ProxyFailed as exc:
        raise SystemFailure(f"{exc}; use --dbus none to run without a session bus") from None


def _hide_for_program(req: RunRequest, who: Identity, env: dict[str, str]) -> None:
    paths: list[str] = []
    if req.dbus != "host":
        paths += dbus.bus_paths_to_hide(req.env, who.uid)
        paths += dbus.user_manager_dirs(req.env, who.uid)
    if not req.system_bus:
        env.pop("DBUS_SYSTEM_BUS_ADDRESS", None)
        paths.append(SYSTEM_BUS_DIR)
    paths += req.hide
    for path in paths:
        hide(path)


def resolve_program(argv0: str, env: dict[str, str]) -> str:
    """The program's path, found with the target user's PATH before the privilege drop."""
    if "/" in argv0:
        if not os.path.exists(argv0):
            raise UsageError(f"{argv0}: no such file")
        return argv0
    found = shutil.which(argv0, path=env.get("PATH"))
    if found is None:
        raise UsageError(f"{argv0}: command not found")
    return found


def run(req: RunRequest) -> None:
    """Enter the vault and exec the program. Returns only by raising."""
    if not req.argv:
        raise UsageError("nothing to run: give a command after --")
    if os.geteuid() != 0:
        raise SystemFailure("vault run needs root (it re-executes itself through sudo)")
    check_request(req)
    vault = pick_vault(req.name)
    who = target_identity(req.user, req.env)
    env = program_env(req.env, who)
    if req.privileged:
        warn("--privileged: the program keeps its capabilities and may leave the vault")
    program = seccomp.filter_program() if not req.privileged else b""
    remote = _browser_remote_names(req, who, env, vault)
    _session_bus(req, who, env, remote)
    try:
        enter_vault(vault)
        _hide_for_program(req, who, env)
        path = resolve_program(req.argv[0], env)
        argv = list(req.argv)
        browser = browsers.kind(argv[0], path)
        profile = None
        if browser is not None:
            argv, profile = browsers.adapt(
                argv, env, browser[0], browsers.profile_dir(env, who.home, vault, browser[1]),
                remote=bool(remote) and env.get("DBUS_SESSION_BUS_ADDRESS") != dbus.NO_BUS)
        _drop_to(who, req.privileged)
        if profile is not None:
            browsers.make_profile(profile)
        if program:
            seccomp.load(program)
    except OSError as exc:
        raise SystemFailure(f"preparing vault {vault} for the program: {exc}") from exc
    try:
        os.execve(path, argv, env)
    except OSError as exc:
        raise SystemFailure(f"{req.argv[0]}: {exc.strerror}") from exc


def sudo_argv(argv: list[str]) -> list[str]:
    """The command line that re-runs this `vault run` through sudo, keeping the desktop env."""
    keep = ",".join(DESKTOP_ENV)
    exe = os.path.realpath(sys.argv[0]) if os.path.exists(sys.argv[0]) else sys.argv[0]
    return ["sudo", f"--preserve-env={keep}", "--", exe, *argv]
