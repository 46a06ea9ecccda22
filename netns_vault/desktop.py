"""`vault desktop add|remove NAME APP`: menu entries that start APP in a vault, no terminal.

The entry's Exec is `vault-launch NAME -- APP [%u]`, which `vault allow` lets the user run
through `sudo -n` (allow.py). Name and Icon come from APP's own entry in the system's
applications directories when there is one ("Firefox ESR" becomes "Firefox ESR (vault home)").

The file goes to ~/.local/share/applications of the user and is written by a child process
that has become that user, so a symlink planted in the user's home cannot make root write
anywhere else. Exec arguments are quoted as the Desktop Entry Specification says (quote_exec);
parse_exec is its inverse, used by the tests and handy for debugging an entry.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import re
import shutil
from dataclasses import dataclass, field

from . import allow
from .errors import NotFoundError, UsageError
from .state import write_text_atomic

APP_DIRS = ("/usr/local/share/applications", "/usr/share/applications")
ENTRY_DIR = ".local/share/applications"
MARKER = "X-NetnsVault-Vault"
FIELD_CODES = ("%u", "%U", "%f", "%F")

_RESERVED = set(" \t\n\"'\\><~|&;$*?#()`")


# -- the Desktop Entry Specification's quoting -----------------------------------------------------

def _escape_string(value: str) -> str:
    """A `string`/`localestring` value: backslash escapes; control characters refused."""
    if any(ord(c) < 32 for c in value):
        raise UsageError(f"control characters are not allowed in a desktop entry: {value!r}")
    return value.replace("\\", "\\\\")


def quote_exec_arg(arg: str) -> str:
    """One Exec argument: double-quoted when it holds a reserved character, % doubled."""
    if arg == "":
        quoted = '""'
    elif any(c in _RESERVED for c in arg):
        inner = "".join("\\" + c if c in '"`$\\' else c for c in arg)
        quoted = f'"{inner}"'
    else:
        quoted = arg
    return quoted.replace("%", "%%")


def quote_exec(argv: list[str], field_code: str | None = None) -> str:
    """The Exec value (already escaped as a string value) for argv, plus a field code."""
    line = " ".join(quote_exec_arg(a) for a in argv)
    if field_code:
        line += " " + field_code
    return _escape_string(line)


def parse_exec(value: str) -> list[str]:
    """The inverse of quote_exec: the raw Exec value -> argv, field codes dropped."""
    unescaped = []
    i = 0
    while i < len(value):  # string-level escapes first
        c = value[i]
        if c == "\\" and i + 1 < len(value):
            nxt = value[i + 1]
            unescaped.append({"s": " ", "n": "\n", "t": "\t", "r": "\r", "\\": "\\"}.get(
                nxt, "\\" + nxt))
            i += 2
            continue
        unescaped.append(c)
        i += 1
    text = "".join(unescaped)
    args: list[str] = []
    cur: list[str] = []
    in_arg = in_quotes = False
    i = 0
    while i < len(text):
        c = text[i]
        if in_quotes:
            if c == "\\" and i + 1 < len(text) and text[i + 1] in '"`$\\':
                cur.append(text[i + 1])
                i += 2
                continue
            if c == '"':
                in_quotes = False
            else:
                cur.append(c)
        elif c == '"':
            in_quotes = in_arg = True
        elif c == " ":
            if in_arg:
                args.append("".join(cur))
                cur, in_arg = [], False
        else:
            cur.append(c)
            in_arg = True
        i += 1
    if in_quotes:
        raise UsageError(f"unterminated quote in Exec: {value!r}")
    if in_arg:
        args.append("".join(cur))
    out = []
    for arg in args:
        if arg in FIELD_CODES:
            continue
        out.append(arg.replace("%%", "%"))
    return out


# -- the application's own entry -------------------------------------------------------------------

def read_entry(path: str) -> dict[str, str]:
    """The unlocalized keys of the [Desktop Entry] group (values unescaped, except Exec)."""
    keys: dict[str, str] = {}
    group = None
    with open(path, encoding="utf-8", errors="replace") as f:
        for raw in f:
            line = raw.strip()
            if not line or line.startswith("#"):
                continue
            if line.startswith("["):
                group = line
                continue
            if group != "[Desktop Entry]" or "=" not in line:
                continue
            key, value = (p.strip() for p in line.split("=", 1))
            if key not in keys:
                keys[key] = value if key == "Exec" else _unescape_value(value)
    return keys


def _unescape_value(value: str) -> str:
    return re.sub(r"\\(.)", lambda m: {"s": " ", "n": "\n", "t": "\t", "r": "\r"}.get(
        m.group(1), m.group(1)), value)


def find_app_entry(app: str, app_dirs: tuple[str, ...] = APP_DIRS) -> dict[str, str] | None:
    """APP's own desktop entry: APP.desktop, else one whose TryExec or Exec runs APP."""
    base = os.path.basename(app)
    for d in app_dirs:
        path = os.path.join(d, f"{base}.desktop")
        if os.path.isfile(path):
            return read_entry(path)
    for d in app_dirs:
        try:
            names = sorted(n for n in os.listdir(d) if n.endswith(".desktop"))
        except OSError:
            continue
        for n in names:
            keys = read_entry(os.path.join(d, n))
            if keys.get("Hidden") == "true" or keys.get("Type", "Application") != "Application":
                continue
            runs = [keys.get("TryExec", "")]
            with contextlib.suppress(UsageError):
                runs += parse_exec(keys.get("Exec", ""))[:1]
            if any(r and os.path.basename(r) == base for r in runs):
                return keys
    return None


# -- the entry --------------------------------------------------------------------------------------

@dataclass
class DesktopEntry:
    path: str
    name: str
    exec_line: str
    user: str
    notices: list[str] = field(default_factory=list)


def entry_filename(vault: str, app: str) -> str:
    slug = re.sub(r"[^A-Za-z0-9_-]", "_", os.path.basename(app)) or "app"
    return f"netns-vault-{vault}-{slug}.desktop"


def render_entry(vault: str, app: str, launcher: str, own: dict[str, str] | None) -> tuple[str, str]:
    """(file text, Name) of the entry (pure)."""
    own = own or {}
    base = os.path.basename(app)
    title = f"{own.get('Name') or base} (vault {vault})"
    codes = [c for c in FIELD_CODES if c in own.get("Exec", "").split()]
    exec_line = quote_exec([launcher, vault, "--", app], codes[0] if codes else None)
    lines = [
        "[Desktop Entry]",
        "Type=Application",
        "Version=1.4",
        f"Name={_escape_string(title)}",
        f"Comment={_escape_string(f'{base} in vault {vault}: its only network is the tunnel')}",
        f"Exec={exec_line}",
        f"TryExec={_escape_string(launcher)}",
        "Terminal=false",
    ]
    if own.get("Icon"):
        lines.append(f"Icon={_escape_string(own['Icon'])}")
    if own.get("Categories") and re.fullmatch(r"[A-Za-z0-9;-]+", own["Categories"]):
        lines.append(f"Categories={own['Categories']}")
    lines += [f"{MARKER}={vault}", f"X-NetnsVault-App={_escape_string(app)}"]
    return "\n".join(lines) + "\n", title


def _target_user(user: str | None, environ: dict[str, str]) -> pwd.struct_passwd:
    euid = os.geteuid()
    try:
        if user is not None:
            entry = pwd.getpwuid(int(user)) if user.isdigit() else pwd.getpwnam(user)
            if euid != 0 and entry.pw_uid != euid:
                raise UsageError("only root can change another user's menu")
        elif euid == 0 and environ.get("SUDO_UID", "").isdigit() and environ["SUDO_UID"] != "0":
            entry = pwd.getpwuid(int(environ["SUDO_UID"]))
        elif euid == 0:
            raise UsageError("as root, say whose menu: --user USER")
        else:
            entry = pwd.getpwuid(euid)
    except KeyError:
        raise UsageError(f"no such user: {user}") from None
    if entry.pw_uid == 0:
        raise UsageError("vault-launch runs programs as a desktop user, never root: --user USER")
    return entry


def _as_user(who: pwd.struct_passwd, fn, *args):
    """fn(*args) with the user's own rights: in a child that became the user, when we are root."""
    if os.geteuid() != 0:
        return fn(*args)
    from .nsexec import run_as_user

    return run_as_user(who.pw_name, who.pw_uid, who.pw_gid, fn, *args)


def _write_entry(home: str, filename: str, text: str) -> str:
    directory = os.path.join(home, ENTRY_DIR)
    os.makedirs(directory, mode=0o700, exist_ok=True)
    path = os.path.join(directory, filename)
    # A fresh temp file, never through a symlink: the directory is the user's.
    tmp = os.path.join(directory, f".{filename}.tmp{os.getpid()}")
    write_text_atomic(path, text, 0o644, tmp=tmp, exclusive=True)
    return path


def _remove_entry(home: str, filename: str) -> str | None:
    path = os.path.join(home, ENTRY_DIR, filename)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    with os.fdopen(fd, encoding="utf-8", errors="replace") as f:
        ours = any(line.startswith(f"{MARKER}=") for line in f)
    if not ours:
        raise UsageError(f"{path} was not made by vault desktop add; left alone")
    os.unlink(path)
    return path


def _check_app(app: str) -> None:
    if "/" in app:
        if not os.path.isabs(app):
            raise UsageError(f"give APP as a command name or an absolute path, not {app!r}")
        if not (os.path.isfile(app) and os.access(app, os.X_OK)):
            raise UsageError(f"{app}: not an executable file")
    elif shutil.which(app, path=allow.SAFE_PATH) is None:
        raise UsageError(f"{app}: command not found in {allow.SAFE_PATH}")


def add(vault: str, app: str, user: str | None = None, *, environ: dict[str, str] | None = None,
        app_dirs: tuple[str, ...] = APP_DIRS, root: str = "/") -> DesktopEntry:
    """Write the user's menu entry that starts APP in vault VAULT through vault-launch."""
    from .names import validate_name

    validate_name(vault)
    _check_app(app)
    who = _target_user(user, dict(os.environ) if environ is None else environ)
    data = allow.read_allow_list(root)
    launcher = data.get("launcher") or allow.default_launcher()
    text, title = render_entry(vault, app, launcher, find_app_entry(app, app_dirs))
    notices = []
    if vault not in data["users"].get(who.pw_name, []):
        notices.append(f"{who.pw_name} is not allowed into vault {vault} yet: the entry fails "
                       f"until `sudo vault allow {who.pw_name} --vault {vault}`")
    path = _as_user(who, _write_entry, who.pw_dir, entry_filename(vault, app), text)
    exec_line = next(line for line in text.splitlines() if line.startswith("Exec="))[5:]
    return DesktopEntry(path, title, exec_line, who.pw_name, notices)


def remove(vault: str, app: str, user: str | None = None, *,
           environ: dict[str, str] | None = None) -> str:
    """Remove the entry `add` wrote; returns its path."""
    from .names import validate_name

    validate_name(vault)
    who = _target_user(user, dict(os.environ) if environ is None else environ)
    path = _as_user(who, _remove_entry, who.pw_dir, entry_filename(vault, app))
    if path is None:
        raise NotFoundError(f"{who.pw_name} has no menu entry for {app} in vault {vault}")
    return path
