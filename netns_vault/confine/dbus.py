"""The program's D-Bus: a filtered `xdg-dbus-proxy` (default), none, or the host's session bus.

Through the session bus a program can ask something outside the vault to act for it on the
host's network: the desktop portal's OpenURI/OpenFile, org.freedesktop.FileManager1, the systemd
user manager (StartTransientUnit), another browser instance's remote service. So by default the
program gets its own bus socket: `xdg-dbus-proxy --filter`, which lets it see and call only the
names below, none of which can fetch anything for it.

The proxy runs as the target user in the host's network namespace (it speaks unix sockets
only), its socket in a root-made 0700 directory owned by the user. A small keeper process (root,
no terminal) starts it, reports readiness, waits for the program to end (pidfd), then stops the
proxy and removes the directory. The host's own bus socket is hidden in the program's mount
namespace by the launcher (`bus_paths_to_hide`). Abstract-socket buses need nothing: abstract
unix sockets belong to a network namespace, so a vault cannot reach the host's.
"""

from __future__ import annotations

import contextlib
import os
import select
import signal

MODES = ("filtered", "none", "host")
PROXY = "xdg-dbus-proxy"
SOCKET_BASE = "/run/netns-vault-bus"
# Set for `--dbus none` (and when there is no bus): a dead address, so that neither libdbus nor
# GDBus falls back to X11 autolaunch, which finds the host's bus through the display.
NO_BUS = "unix:path=/nonexistent/netns-vault/no-session-bus"

# Names a vaulted program may talk to: none can act on the network for it.
TALK = ("org.freedesktop.Notifications", "org.freedesktop.secrets", "org.a11y.Bus")


def upstream_address(env: dict[str, str], uid: int) -> str | None:
    addr = env.get("DBUS_SESSION_BUS_ADDRESS")
    if addr:
        return addr
    default = f"/run/user/{uid}/bus"
    return f"unix:path={default}" if os.path.exists(default) else None


def unix_paths(address: str) -> list[str]:
    """The filesystem socket paths in a D-Bus address (abstract ones need no hiding)."""
    out = []
    for part in address.split(";"):
        transport, _, params = part.partition(":")
        if transport != "unix":
            continue
        for kv in params.split(","):
            key, _, value = kv.partition("=")
            if key == "path" and value:
                out.append(_unescape(value))
    return out


def _unescape(value: str) -> str:
    if "%" not in value:
        return value
    import urllib.parse

    return urllib.parse.unquote(value)


def bus_paths_to_hide(env: dict[str, str], uid: int) -> list[str]:
    """The host session bus sockets and the user manager's private socket directory."""
    paths = set(unix_paths(env.get("DBUS_SESSION_BUS_ADDRESS", "")))
    runtime = f"/run/user/{uid}"
    paths.add(f"{runtime}/bus")
    xdg = env.get("XDG_RUNTIME_DIR")
    if xdg:
        paths.add(os.path.join(xdg, "bus"))
    return sorted(p for p in paths if os.path.lexists(p))


def user_manager_dirs(env: dict[str, str], uid: int) -> list[str]:
    """`systemd --user`'s private socket (systemctl/systemd-run talk to it without the bus)."""
    dirs = {f"/run/user/{uid}/systemd"}
    if env.get("XDG_RUNTIME_DIR"):
        dirs.add(os.path.join(env["XDG_RUNTIME_DIR"], "systemd"))
    return sorted(d for d in dirs if os.path.isdir(d))


def proxy_args(upstream: str, socket_path: str, own: list[str]) -> list[str]:
    args = [upstream, socket_path, "--filter"]
    args += [f"--talk={name}" for name in TALK]
    args += [f"--own={name}" for name in own]
    return args


class ProxyFailed(Exception):
    pass


def start_proxy(upstream: str, uid: int, gid: int, user: str, own: list[str],
                proxy: str) -> str:
    """Start the keeper and its proxy; returns the program's bus address once the proxy is up.

    Called as root, before the launcher leaves the host's mount and network namespaces.
    """
    os.makedirs(SOCKET_BASE, mode=0o755, exist_ok=True)
    sockdir = os.path.join(SOCKET_BASE, str(os.getpid()))
    if os.path.lexists(sockdir):  # a stale one from an earlier process with our pid
        import shutil

        shutil.rmtree(sockdir, ignore_errors=True)
    os.mkdir(sockdir, 0o700)
    os.chown(sockdir, uid, gid)
    socket_path = os.path.join(sockdir, "bus")
    argv = [proxy, *proxy_args(upstream, socket_path, own)]
    status_r, status_w = os.pipe()
    launcher = os.getpid()
    pid = os.fork()
    if pid == 0:  # the keeper
        code = 1
        try:
            os.close(status_r)
            code = _keeper(launcher, argv, sockdir, uid, gid, user, status_w)
        finally:
            os._exit(code)
    os.close(status_w)
    with os.fdopen(status_r, "rb") as f:
        status = f.read(200).decode(errors="replace")
    if status != "ok":
        os.waitpid(pid, 0)
        raise ProxyFailed(status.strip() or "the D-Bus proxy keeper died")
    return f"unix:path={socket_path}"


def _keeper(launcher: int, argv: list[str], sockdir: str, uid: int, gid: int, user: str,
            status_w: int) -> int:
    os.setsid()  # no terminal: Ctrl-C in the program's terminal must not stop the proxy
    for sig in (signal.SIGINT, signal.SIGHUP, signal.SIGQUIT, signal.SIGTSTP):
        signal.signal(sig, signal.SIG_IGN)
    null = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(null, fd)
    proxy_pid = 0
    try:
        watch = os.pidfd_open(launcher)
        sync_r, sync_w = os.pipe()
        proxy_pid = os.fork()
        if proxy_pid == 0:
            try:
                os.close(sync_r)
                os.set_inheritable(sync_w, True)
                os.initgroups(user, gid)
                os.setgid(gid)
                os.setuid(uid)
                os.execve(argv[0], [argv[0], f"--fd={sync_w}", *argv[1:]],
                          {"PATH": "/usr/bin:/bin"})
            finally:
                os._exit(127)
        os.close(sync_w)
        if os.read(sync_r, 1) != b"x":
            raise ProxyFailed(f"{os.path.basename(argv[0])} did not start (a bus at {argv[1]}?)")
        os.write(status_w, b"ok")
        os.close(status_w)
        poller = select.poll()
        poller.register(watch, select.POLLIN)
        while not poller.poll():
            pass
        os.close(sync_r)  # --fd: the proxy stops when this end closes
        return 0
    except (OSError, ProxyFailed) as exc:
        with contextlib.suppress(OSError):
            os.write(status_w, f"D-Bus proxy: {exc}".encode()[:200])
        return 1
    finally:
        if proxy_pid:
            with contextlib.suppress(ProcessLookupError):
                os.kill(proxy_pid, signal.SIGTERM)
            os.waitpid(proxy_pid, 0)
        import shutil

        shutil.rmtree(sockdir, ignore_errors=True)
