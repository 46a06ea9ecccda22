"""Passwordless launches into named vaults: `vault allow`, `vault deny` and `vault-launch`.

The mechanism is a sudoers drop-in (docs/launch.md says why not polkit or a root daemon). It
lets the allowed users run exactly one command as root without a password: the `vault-launch`
console script, by its absolute path, with sudo's env_reset and a short env_keep list. sudo
never looks at the arguments (a `*` in a sudoers rule matches spaces, so argument matching
is no wall); the policy is enforced here, by the root side of `vault-launch`:

- the invoking user is sudo's SUDO_UID, never an argument: the program runs as that user;
- the vault must be listed for that user in the root-owned allow-list;
- `vault-launch` takes no options at all: no --user, no --privileged, no --dbus;
- the program's environment is rebuilt from DESKTOP_VARS only (no LD_*, PYTHON*, GCONV_PATH...).

Two files, both under `root` (a parameter, "/" unless a test redirects it):
  etc/netns-vault/allow.json     {"users": {USER: [VAULT...]}, "launcher": PATH, "created": [...]}
  etc/sudoers.d/netns-vault      generated from it, checked with `visudo -c -f` before install

Both are written atomically under one Rollback; denying the last vault removes both and the
directories `allow` created, so /etc is byte-identical to before.

This module is on the `vault-launch` hot path: the launch side imports only the standard library.
"""

from __future__ import annotations

import contextlib
import json
import os
import pwd
import re
import stat
import sys

from .errors import NotAllowed, SystemFailure, UsageError

ALLOW_FILE = "etc/netns-vault/allow.json"
CONFIG_DIR = "etc/netns-vault"
SUDOERS_DIR = "etc/sudoers.d"
DROPIN = "etc/sudoers.d/netns-vault"  # no '.' in the name: sudo skips such files in sudoers.d
LAUNCH_SCRIPT = "vault-launch"
VISUDO = "visudo"

# What a desktop program needs from the session, and nothing that changes how programs load.
DESKTOP_VARS = (
    "DISPLAY", "WAYLAND_DISPLAY", "XAUTHORITY", "XDG_RUNTIME_DIR", "DBUS_SESSION_BUS_ADDRESS",
    "XDG_SESSION_TYPE", "XDG_CURRENT_DESKTOP", "XDG_SESSION_DESKTOP", "DESKTOP_SESSION",
    "PULSE_SERVER", "TERM", "COLORTERM", "LANG", "LANGUAGE", "LC_ALL", "LC_CTYPE", "LC_NUMERIC",
    "LC_TIME", "LC_COLLATE", "LC_MONETARY", "LC_MESSAGES", "LC_PAPER", "LC_NAME", "LC_ADDRESS",
    "LC_TELEPHONE", "LC_MEASUREMENT", "LC_IDENTIFICATION",
)
SAFE_PATH = "/usr/local/bin:/usr/bin:/bin"

USER_RE = re.compile(r"[a-z_][a-z0-9_-]{0,31}\Z")  # Debian's NAME_REGEX, no trailing '$'
LAUNCHER_RE = re.compile(r"/[A-Za-z0-9._/+-]+\Z")  # nothing sudoers would need escaped
USAGE = "usage: vault-launch NAME [--] CMD [ARGS...]"


def _at(root: str, rel: str) -> str:
    return os.path.join(root, rel)


# -- the allow-list -------------------------------------------------------------------------------

def read_allow_list(root: str = "/") -> dict:
    """The allow-list, or an empty one when there is none."""
    try:
        with open(_at(root, ALLOW_FILE), encoding="utf-8") as f:
            data = json.load(f)
    except FileNotFoundError:
        return {"users": {}, "launcher": None, "created": []}
    except (OSError, ValueError) as exc:
        raise SystemFailure(f"reading {_at(root, ALLOW_FILE)}: {exc}") from exc
    if not isinstance(data, dict) or not isinstance(data.get("users"), dict):
        raise SystemFailure(f"{_at(root, ALLOW_FILE)} is not a netns-vault allow-list")
    return data


def allowed_vaults(user: str, root: str = "/") -> list[str]:
    return list(read_allow_list(root)["users"].get(user, []))


# -- the launch side (vault-launch) --------------------------------------------------------------

def parse_launch_args(args: list[str]) -> tuple[str, list[str]]:
    """NAME [--] CMD [ARGS...] -> (NAME, argv). There are no options to smuggle anything in."""
    from .names import validate_name

    if not args:
        raise UsageError(USAGE)
    name, rest = args[0], args[1:]
    if name.startswith("-"):
        raise NotAllowed(f"vault-launch takes no options ({name}); {USAGE}")
    validate_name(name)
    if rest and rest[0] == "--":
        rest = rest[1:]
    elif rest and rest[0].startswith("-"):
        raise NotAllowed(f"vault-launch takes no options ({rest[0]}); {USAGE}")
    if not rest:
        raise UsageError(f"nothing to run; {USAGE}")
    return name, rest


def launch_env(environ: dict[str, str]) -> dict[str, str]:
    """The program's environment: the desktop variables and a fixed PATH, nothing else."""
    env = {k: environ[k] for k in DESKTOP_VARS if k in environ}
    env["PATH"] = SAFE_PATH
    return env


def _refuse(user: str, name: str, root: str) -> NotAllowed:
    return NotAllowed(f"user {user} is not allowed to launch into vault {name} "
                      f"(an administrator can run: sudo vault allow {user} --vault {name})")


def precheck(name: str, uid: int, root: str = "/") -> str:
    """The unprivileged side: a clear refusal before sudo. Returns the launcher to sudo to.

    Only a courtesy: the root side (launch) decides, whatever happens here.
    """
    user = _user_name(uid)
    data = read_allow_list(root)
    if name not in data["users"].get(user, []):
        raise _refuse(user, name, root)
    launcher = data.get("launcher")
    if not isinstance(launcher, str) or not launcher.startswith("/"):
        raise SystemFailure(f"{_at(root, ALLOW_FILE)} names no launcher; run vault allow again")
    return launcher


def launch(name: str, argv: list[str], environ: dict[str, str], root: str = "/") -> None:
    """The root side of vault-launch: run argv in vault `name` as the sudo caller, or refuse.

    Returns only by raising (on success the process becomes the program).
    """
    from . import launcher

    if os.getuid() != 0 or os.geteuid() != 0:
        raise SystemFailure("the root side of vault-launch runs only through sudo")
    sudo_uid = environ.get("SUDO_UID", "")
    if not sudo_uid.isdigit() or int(sudo_uid) == 0:
        raise NotAllowed("vault-launch is for users allowed with `vault allow`, through sudo; "
                         "root uses `vault run`")
    uid = int(sudo_uid)
    user = _user_name(uid)
    reason = untrusted_reason(_at(root, ALLOW_FILE))
    if reason:
        raise SystemFailure(f"refusing to trust the allow-list: {reason}")
    if name not in read_allow_list(root)["users"].get(user, []):
        raise _refuse(user, name, root)
    env = launch_env(environ)
    env["SUDO_UID"] = str(uid)  # for the launcher's restricted policy; never reaches the program
    # restricted: the launcher's own second wall (no --privileged, no other user, no host bus).
    launcher.run(launcher.RunRequest(argv=argv, name=name, user=str(uid), env=env,
                                     restricted=True))


def _user_name(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        raise NotAllowed(f"uid {uid} has no user name") from None


# -- trust: what sudo runs as root must be unchangeable by anyone but root -----------------------

def untrusted_reason(path: str) -> str | None:
    """Why a user other than root could change what `path` is, or None.

    Every directory from / down to the path (as written and as resolved) and the file itself
    must be owned by root and writable by no one else (group root may write).
    """
    for candidate in dict.fromkeys((os.path.abspath(path), os.path.realpath(path))):
        parts = candidate.strip("/").split("/") if candidate != "/" else []
        current = "/"
        for i in range(len(parts) + 1):
            if i:
                current = os.path.join(current, parts[i - 1])
            try:
                st = os.lstat(current)
            except FileNotFoundError:
                break  # its parent was checked: nobody else can create it
            if stat.S_ISLNK(st.st_mode):
                continue  # the resolved path is walked too
            if i < len(parts) and stat.S_ISDIR(st.st_mode) and st.st_mode & stat.S_ISVTX \
                    and st.st_uid == 0:
                # A sticky ancestor such as /tmp: others may add entries to it, but cannot
                # rename or remove root's, and the next component is checked in its own right.
                continue
            problem = _mode_problem(current, st)
            if problem:
                return problem
    return None


def _mode_problem(path: str, st: os.stat_result) -> str | None:
    if st.st_uid != 0:
        return f"{path} is owned by uid {st.st_uid}, not root"
    if st.st_mode & stat.S_IWOTH:
        return f"{path} is writable by everyone"
    if st.st_mode & stat.S_IWGRP and st.st_gid != 0:
        return f"{path} is writable by group {st.st_gid}"
    return None


def untrusted_tree(top: str) -> str | None:
    """untrusted_reason for `top`, then every file and directory under it."""
    reason = untrusted_reason(top)
    if reason or not os.path.isdir(top):
        return reason
    for dirpath, dirnames, filenames in os.walk(top):
        for entry in (*dirnames, *filenames):
            path = os.path.join(dirpath, entry)
            try:
                st = os.lstat(path)
            except FileNotFoundError:
                continue
            if stat.S_ISLNK(st.st_mode):
                target = os.path.realpath(path)
                reason = None if target.startswith(top + "/") else untrusted_reason(target)
            else:
                reason = _mode_problem(path, st)
            if reason:
                return reason
    return None


def launcher_trust_problem(launcher: str) -> str | None:
    """Everything root runs for `launcher`: the script, its interpreter, the code it imports."""
    if not LAUNCHER_RE.match(launcher):
        return f"{launcher} is not a plain absolute path"
    if not os.path.isfile(launcher) or not os.access(launcher, os.X_OK):
        return f"{launcher} is not an executable file (reinstall netns-vault)"
    reason = untrusted_reason(launcher)
    if reason:
        return reason
    with open(launcher, "rb") as f:
        first = f.readline(4096)
    if not first.startswith(b"#!"):
        return f"{launcher} is not a script with an interpreter line"
    interpreter = first[2:].split()[0].decode()
    reason = untrusted_reason(interpreter)
    if reason:
        return reason
    import subprocess

    # The import path root will use: sudo's env_reset clears PYTHON*, so ask the same interpreter
    # with -I (no environment, no user site), plus the script's own directory.
    res = subprocess.run(
        [interpreter, "-I", "-c", "import json, sys, netns_vault; "
         "print(json.dumps(sys.path + list(netns_vault.__path__)))"],
        capture_output=True, text=True, env={"PATH": SAFE_PATH}, cwd="/", timeout=60)
    if res.returncode != 0:
        return f"{interpreter} cannot import netns_vault: {res.stderr.strip()[-200:]}"
    paths = [p for p in json.loads(res.stdout) if p]
    for path in dict.fromkeys([os.path.dirname(launcher), *paths]):
        reason = untrusted_tree(path) if os.path.exists(path) else untrusted_reason(path)
        if reason:
            return reason
    return None


def default_launcher() -> str:
    """`vault-launch` next to this interpreter (the venv's bin), unresolved like sudo sees it."""
    return os.path.join(os.path.dirname(os.path.abspath(sys.executable)), LAUNCH_SCRIPT)


# -- the drop-in -----------------------------------------------------------------------------------

def render_dropin(users: list[str], launcher: str) -> str:
    """The sudoers drop-in for these users (pure). Arguments are not matched: see the module doc."""
    keep = " ".join(DESKTOP_VARS)
    return (
        "# netns-vault: the users below may run vault-launch as root without a password.\n"
        "# vault-launch runs a program as the calling user, only in the vaults listed for that\n"
        f"# user in /{ALLOW_FILE}. Managed by `vault allow` / `vault deny`: do not edit.\n"
        f"User_Alias NETNS_VAULT_USERS = {', '.join(sorted(users))}\n"
        f"Cmnd_Alias NETNS_VAULT_LAUNCH = {launcher}\n"
        "Defaults!NETNS_VAULT_LAUNCH env_reset, !setenv, !requiretty\n"
        f'Defaults!NETNS_VAULT_LAUNCH env_keep = "{keep}"\n'
        "NETNS_VAULT_USERS ALL = (root) NOPASSWD: NETNS_VAULT_LAUNCH\n"
    )


class AllowResult:
    __slots__ = ("user", "vaults", "changed", "dropin", "launcher")

    def __init__(self, user: str, vaults: list[str], changed: bool, dropin: str | None,
                 launcher: str | None):
        self.user, self.vaults, self.changed = user, vaults, changed
        self.dropin, self.launcher = dropin, launcher


def _validate_user(user: str) -> pwd.struct_passwd:
    if not USER_RE.match(user):
        raise UsageError(f"not a user name netns-vault accepts: {user!r}")
    try:
        entry = pwd.getpwnam(user)
    except KeyError:
        raise UsageError(f"no such user: {user}") from None
    if entry.pw_uid == 0:
        raise UsageError(f"{user} is root: root needs no permission (use vault run)")
    return entry


def _runnable(launcher: str) -> str | None:
    """As the user: can it start the launcher (script and interpreter reachable)?"""
    with open(launcher, "rb") as f:
        interpreter = f.readline(4096)[2:].split()[0].decode()
    for path in (launcher, os.path.realpath(interpreter)):
        if not os.access(path, os.X_OK):
            return f"{path} is not executable by this user"
    return None


@contextlib.contextmanager
def _locked(root: str):
    """One allow/deny at a time: flock on the sudoers.d directory itself (creates no file)."""
    import fcntl

    sudoers_dir = _at(root, SUDOERS_DIR)
    try:
        fd = os.open(sudoers_dir, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except FileNotFoundError:
        raise SystemFailure(f"{sudoers_dir} does not exist: is sudo installed?") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _write_atomic(path: str, data: bytes, mode: int, check=None) -> None:
    """Temp file (a dotted name: sudo ignores it), fsync, optional check, rename."""
    tmp = os.path.join(os.path.dirname(path), f".{os.path.basename(path)}.tmp{os.getpid()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, mode)
    try:
        with os.fdopen(fd, "wb") as f:
            os.fchmod(f.fileno(), mode)
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        if check is not None:
            check(tmp)
        os.rename(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def _visudo_check(path: str) -> None:
    import subprocess

    try:
        res = subprocess.run([VISUDO, "-c", "-q", "-f", path], capture_output=True, text=True,
                             timeout=60)
    except FileNotFoundError:
        raise SystemFailure("visudo not found: install sudo") from None
    if res.returncode != 0:
        detail = (res.stderr or res.stdout).strip().splitlines()
        raise SystemFailure("visudo rejected the generated sudoers drop-in "
                            f"({detail[0] if detail else 'no detail'}); nothing was changed")


def _snapshot(path: str) -> bytes | None:
    try:
        with open(path, "rb") as f:
            return f.read()
    except FileNotFoundError:
        return None


def _restore(path: str, old: bytes | None, mode: int) -> None:
    if old is None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
    else:
        _write_atomic(path, old, mode)


def _apply(data: dict, root: str) -> str | None:
    """Make allow.json and the drop-in say `data` (both gone when no user is left), or nothing."""
    from .rollback import Rollback

    allow_file, dropin = _at(root, ALLOW_FILE), _at(root, DROPIN)
    users = sorted(u for u, v in data["users"].items() if v)
    old_allow, old_dropin = _snapshot(allow_file), _snapshot(dropin)
    with Rollback() as rb:
        if users:
            created = list(data.get("created", []))
            config_dir = _at(root, CONFIG_DIR)
            if not os.path.isdir(config_dir):
                rb.step(f"mkdir {config_dir}", lambda: os.mkdir(config_dir, 0o755),
                        lambda: os.rmdir(config_dir))
                os.chmod(config_dir, 0o755)
                created.append(CONFIG_DIR)
            data = {"version": 1, "users": {u: sorted(data["users"][u]) for u in users},
                    "launcher": data["launcher"], "created": created}
            text = json.dumps(data, indent=2, sort_keys=True) + "\n"
            rb.step(f"write {allow_file}",
                    lambda: _write_atomic(allow_file, text.encode(), 0o644),
                    lambda: _restore(allow_file, old_allow, 0o644))
            body = render_dropin(users, data["launcher"]).encode()
            rb.step(f"install {dropin}", lambda: _write_atomic(dropin, body, 0o440, _visudo_check),
                    lambda: _restore(dropin, old_dropin, 0o440))
            if root == "/":
                _sudo_reads_dropin(users[0], data["launcher"])
        else:
            rb.step(f"remove {allow_file}", lambda: _restore(allow_file, None, 0o644),
                    lambda: _restore(allow_file, old_allow, 0o644))
            rb.step(f"remove {dropin}", lambda: _restore(dropin, None, 0o440),
                    lambda: _restore(dropin, old_dropin, 0o440))
            for rel in reversed(data.get("created", [])):
                with contextlib.suppress(FileNotFoundError, OSError):
                    os.rmdir(_at(root, rel))  # only when empty: someone else's files stay
        rb.commit()
    return dropin if users else None


def _sudo_reads_dropin(user: str, launcher: str) -> None:
    """After install on the real /etc: does sudo now grant it? (A sudoers without @includedir.)"""
    import subprocess

    res = subprocess.run(["sudo", "-n", "-l", "-U", user, launcher], capture_output=True,
                         text=True, timeout=60)
    if res.returncode != 0:
        raise SystemFailure("sudo does not grant the new rule (does /etc/sudoers have "
                            "`@includedir /etc/sudoers.d`?); nothing was changed")


def _require_root(root: str) -> None:
    if os.geteuid() != 0:
        raise SystemFailure("changing who may launch into vaults needs root (sudo vault ...)")


def allow(user: str, vaults: list[str], root: str = "/",
          launcher: str | None = None) -> AllowResult:
    """Let `user` launch into `vaults` without a password. Idempotent."""
    from .names import validate_name

    _require_root(root)
    entry = _validate_user(user)
    if not vaults:
        raise UsageError("name at least one vault: --vault NAME")
    for name in vaults:
        validate_name(name)
    launcher = launcher or default_launcher()
    problem = launcher_trust_problem(launcher)
    if problem:
        raise SystemFailure(f"refusing to let sudo run {launcher} as root: {problem} "
                            "(install netns-vault where only root can write, e.g. "
                            "sudo scripts/setup.sh in a root-owned /opt/netns-vault)")
    from .nsexec import run_as_user

    problem = run_as_user(entry.pw_name, entry.pw_uid, entry.pw_gid, _runnable, launcher)
    if problem:
        raise SystemFailure(f"{user} cannot start {launcher}: {problem} (make the venv with "
                            "/usr/bin/python3 in a directory every user can enter)")
    with _locked(root):
        data = read_allow_list(root)
        current = data["users"].get(user, [])
        wanted = sorted(set(current) | set(vaults))
        if wanted == sorted(current) and data.get("launcher") == launcher:
            return AllowResult(user, wanted, False, _at(root, DROPIN), launcher)
        data["users"] = {**data["users"], user: wanted}
        data["launcher"] = launcher
        dropin = _apply(data, root)
    return AllowResult(user, wanted, True, dropin, launcher)


def deny(user: str, vaults: list[str] | None = None, root: str = "/") -> AllowResult:
    """Take vaults (all when None) from `user`; the last one gone removes every file."""
    from .names import validate_name

    _require_root(root)
    if not USER_RE.match(user):
        raise UsageError(f"not a user name netns-vault accepts: {user!r}")
    for name in vaults or []:
        validate_name(name)
    with _locked(root):
        data = read_allow_list(root)
        current = data["users"].get(user, [])
        left = [v for v in current if vaults is not None and v not in vaults]
        if left == current:
            return AllowResult(user, current, False, None, data.get("launcher"))
        users = dict(data["users"])
        if left:
            users[user] = left
        else:
            users.pop(user, None)
        data["users"] = users
        dropin = _apply(data, root)
    return AllowResult(user, left, True, dropin, data.get("launcher"))
