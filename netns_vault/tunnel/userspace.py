"""The userspace driver: one `wireguard-go IFNAME` process per vault, configured over its UAPI socket.

wireguard-go is started in the caller's (host-side) netns, so its UDP socket lives there; the TUN
link it creates is then moved into the vault netns by the caller. The process runs in its own
session and outlives the CLI; the pid in the handle is checked against /proc/PID/cmdline before
it is ever signalled, because pids are reused.
"""

from __future__ import annotations

import contextlib
import os
import signal
from typing import TYPE_CHECKING, Any

from .. import paths, procfs
from ..errors import ConflictError, SystemFailure, UsageError
from ..logs import get_logger
from ..wgproc import BINARY, find_servers, is_wireguard_go  # re-exported
from .base import TunnelHandle, TunnelStats
from .links import delete_link
from .uapi import UapiClient, UapiPeer, build_set_request, format_endpoint, socket_path_for

if TYPE_CHECKING:
    import subprocess

    from ..config import WgConfig

log = get_logger(__name__)

__all__ = ["BINARY", "UserspaceDriver", "find_servers", "is_wireguard_go", "uapi_peers"]

READY_TIMEOUT = 5.0
TERM_TIMEOUT = 2.0
LOG_TAIL_BYTES = 2000
IFNAMSIZ = 16


def uapi_peers(cfg: WgConfig, endpoints: list[tuple[str, int] | None]) -> list[UapiPeer]:
    """cfg.peers with their resolved endpoints as UapiPeer records."""
    peers = list(cfg.peers)
    if len(endpoints) != len(peers):
        raise ValueError(f"{len(peers)} peers but {len(endpoints)} resolved endpoints")
    out = []
    for peer, ep in zip(peers, endpoints, strict=True):
        out.append(
            UapiPeer(
                public_key=peer.public_key,
                preshared_key=peer.preshared_key,
                endpoint=format_endpoint(ep[0], ep[1]) if ep is not None else None,
                allowed_ips=[str(net) for net in peer.allowed_ips],
                persistent_keepalive=peer.persistent_keepalive,
            )
        )
    return out


def _check_ifname(ifname: str) -> None:
    if (
        not isinstance(ifname, str)
        or not ifname
        or len(ifname.encode()) >= IFNAMSIZ
        or "/" in ifname
        or any(c.isspace() or c == "\0" for c in ifname)
        or ifname in (".", "..")
    ):
        raise UsageError(f"invalid interface name {ifname!r}")


def _start(argv: list[str], env: dict[str, str], out: Any) -> subprocess.Popen:
    """wireguard-go in its own session (it outlives the CLI), output to `out`."""
    import subprocess

    return subprocess.Popen(argv, env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=out,
                            close_fds=True, start_new_session=True)


def _reap(pid: int) -> None:
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, os.WNOHANG)


def _log_tail(path: str | None) -> str:
    if not path:
        return "(no log file)"
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(max(0, size - LOG_TAIL_BYTES))
            text = f.read().decode("utf-8", "replace").strip()
    except OSError as exc:
        return f"(cannot read {path}: {exc.strerror})"
    return text or "(log is empty)"


class UserspaceDriver:
    name = "userspace"

    def __init__(self) -> None:
        self._children: dict[int, subprocess.Popen] = {}

    # -- availability -------------------------------------------------------------------------

    def unavailable_reason(self) -> str | None:
        import shutil  # here, not at the top: `vault down` never needs it

        if shutil.which(BINARY) is None:
            return f"{BINARY} not found on PATH (apt-get install wireguard-go)"
        if not os.path.exists(paths.TUN_DEVICE):
            return (f"{paths.TUN_DEVICE} does not exist (modprobe tun, or give the container "
                    "the device)")
        return None

    # -- lifecycle -----------------------------------------------------------------------------

    def create(self, ifname: str, log_path: str | None = None) -> TunnelHandle:
        _check_ifname(ifname)
        import shutil
        import subprocess

        binary = shutil.which(BINARY)
        if binary is None:
            raise SystemFailure(f"{BINARY} not found on PATH (apt-get install wireguard-go)")
        sock = socket_path_for(ifname)
        client = UapiClient(sock)
        if os.path.exists(sock):
            if client.accepts():
                raise ConflictError(f"a running {BINARY} already serves {ifname} ({sock})")
            log.debug("removing stale UAPI socket %s", sock)
            with contextlib.suppress(FileNotFoundError):
                os.unlink(sock)

        env = dict(os.environ)
        # Any other value (or none) makes wireguard-go daemonise by re-executing itself.
        env["WG_PROCESS_FOREGROUND"] = "1"
        out: Any = subprocess.DEVNULL
        if log_path:
            try:
                fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o600)
            except OSError as exc:
                raise SystemFailure(f"cannot open {log_path}: {exc.strerror}") from None
            out = os.fdopen(fd, "ab", buffering=0)
        try:
            proc = _start([binary, ifname], env, out)
        except OSError as exc:
            raise SystemFailure(f"cannot start {binary}: {exc.strerror or exc}") from None
        finally:
            if out is not subprocess.DEVNULL:
                out.close()
        self._children[proc.pid] = proc
        try:
            client.wait_ready(READY_TIMEOUT, alive=lambda: proc.poll() is None)
        except SystemFailure as exc:
            self._abandon(proc, sock)
            status = f"exit status {proc.returncode}" if proc.returncode is not None else "killed"
            raise SystemFailure(
                f"{BINARY} {ifname} did not start ({exc}; {status}); log: {_log_tail(log_path)}"
            ) from None
        except BaseException:  # Ctrl-C while it starts: it must not outlive us
            self._abandon(proc, sock)
            raise
        log.debug("started %s %s as pid %d", binary, ifname, proc.pid)
        return TunnelHandle(driver=self.name, ifname=ifname, pid=proc.pid, uapi_socket=sock)

    def configure(
        self,
        handle: TunnelHandle,
        cfg: WgConfig,
        endpoints: list[tuple[str, int] | None],
        netns: str,
    ) -> None:
        # The UAPI socket is a filesystem socket: reachable from any netns. `netns` is unused.
        try:
            request = build_set_request(
                cfg.private_key, cfg.listen_port, cfg.fwmark, uapi_peers(cfg, endpoints)
            )
        except ValueError as exc:  # messages never include a secret
            raise UsageError(f"cannot configure {handle.ifname}: {exc}") from None
        self._client(handle).set(request)

    def stats(self, handle: TunnelHandle, netns: str | None = None) -> TunnelStats:
        return self._client(handle).get()

    def destroy(self, handle: TunnelHandle, netns: str | None) -> None:
        ifname = handle.ifname
        sock = handle.uapi_socket or socket_path_for(ifname)
        if handle.pid is not None:
            self.stop(handle.pid, ifname)
        for pid in find_servers(ifname):  # one started by a `vault` that was killed, too
            self.stop(pid, ifname)
        if os.path.exists(sock):
            if UapiClient(sock).accepts():
                log.warning("%s is still served by another process; left in place", sock)
            else:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(sock)
        if netns is not None:
            from ..nsexec import netns_path, run_in_netns

            if os.path.exists(netns_path(netns)):
                run_in_netns(netns, delete_link, ifname)
        # netns None: the link was never moved; a TUN dies with the wireguard-go that holds it.

    # -- helpers -------------------------------------------------------------------------------

    def _client(self, handle: TunnelHandle) -> UapiClient:
        return UapiClient(handle.uapi_socket or socket_path_for(handle.ifname))

    def _abandon(self, proc: subprocess.Popen, sock: str) -> None:
        """A wireguard-go that did not become ready: kill it, remove its socket."""
        self._kill_child(proc)
        if os.path.exists(sock) and not UapiClient(sock).accepts():
            with contextlib.suppress(OSError):
                os.unlink(sock)

    def _kill_child(self, proc: subprocess.Popen) -> None:
        import subprocess

        with contextlib.suppress(OSError):
            proc.kill()
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=TERM_TIMEOUT)
        self._children.pop(proc.pid, None)

    def stop(self, pid: int, ifname: str) -> None:
        """SIGTERM, wait up to TERM_TIMEOUT, SIGKILL; only if pid really is our wireguard-go."""
        proc = self._children.pop(pid, None)
        if not is_wireguard_go(pid, ifname):
            if proc is not None:
                proc.poll()
            _reap(pid)
            return
        for sig, wait in ((signal.SIGTERM, TERM_TIMEOUT), (signal.SIGKILL, TERM_TIMEOUT)):
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                break
            if procfs.wait_exit(pid, wait):
                break
        else:
            raise SystemFailure(f"{BINARY} {ifname} (pid {pid}) survived SIGKILL")
        if proc is not None:
            proc.poll()
        _reap(pid)
