"""Run a Python function inside another network namespace, in a forked child.

`setns` only moves the calling thread, and pyroute2's and python-iptables' view of "the current
namespace" is process-wide, so the CLI process never switches namespace itself: a child does the
work and sends back either its result (JSON) or the error it raised.
"""

from __future__ import annotations

import ctypes
import os
import sys

from . import paths
from .errors import SystemFailure, VaultError

TYPE_CHECKING = False  # as typing.TYPE_CHECKING, without importing typing (mypy knows the name)
if TYPE_CHECKING:  # typing, json and traceback stay off `vault run`'s import path
    from collections.abc import Callable
    from typing import Any, TypeVar

    T = TypeVar("T")

CLONE_NEWNS = 0x00020000
CLONE_NEWNET = 0x40000000

_libc: ctypes.CDLL | None = None


def libc() -> ctypes.CDLL:
    global _libc
    if _libc is None:
        _libc = ctypes.CDLL(None, use_errno=True)
    return _libc


def setns_path(path: str, nstype: int = CLONE_NEWNET) -> None:
    """Move the calling thread into the namespace bound at `path` (e.g. /run/netns/NAME)."""
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        if libc().setns(fd, nstype) != 0:
            err = ctypes.get_errno()
            raise OSError(err, f"setns({path}): {os.strerror(err)}")
    finally:
        os.close(fd)


def unshare(flags: int) -> None:
    if libc().unshare(flags) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"unshare: {os.strerror(err)}")


def netns_path(netns: str) -> str:
    return paths.netns_path(netns)


def run_in_netns(netns: str, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Fork, enter `netns` (a name under /run/netns or a path), run fn(*args, **kwargs).

    Returns fn's JSON-serialisable result. A VaultError raised in the child is raised again in
    the parent with the same type and message; any other exception becomes a SystemFailure.
    """
    path = netns_path(netns)
    if not os.path.exists(path):
        raise SystemFailure(f"network namespace {path} does not exist")
    return run_in_child(lambda: setns_path(path), f"helper in {netns}", fn, *args, **kwargs)


def in_target(netns: str | None, fn: Callable[..., T], *args: Any) -> T:
    """fn(*args) in `netns` (a forked child), or right here for the current namespace (None).

    In the child, fn's result travels back as JSON: return lists and dicts, not tuples."""
    if netns is None:
        return fn(*args)
    return run_in_netns(netns, fn, *args)


def run_in_child(prepare: Callable[[], object], what: str, fn: Callable[..., T], *args: Any,
                 **kwargs: Any) -> T:
    """Fork, run prepare() (enter a namespace, drop to a user...) then fn(*args, **kwargs).

    The result and errors come back as run_in_netns describes; `what` names the child in errors.
    """
    return start_in_child(prepare, what, fn, *args, **kwargs).result()


def start_in_netns(netns: str, fn: Callable[..., T], *args: Any, **kwargs: Any) -> Pending:
    """As run_in_netns, but returns at once: the caller works on (the machine has more than one
    core) and collects the answer with `.result()`."""
    path = netns_path(netns)
    if not os.path.exists(path):
        raise SystemFailure(f"network namespace {path} does not exist")
    return start_in_child(lambda: setns_path(path), f"helper in {netns}", fn, *args, **kwargs)


class Pending:
    """A forked helper whose answer has not been read yet. `result()` waits for it (once)."""

    def __init__(self, pid: int, fd: int, what: str):
        self.pid, self.fd, self.what = pid, fd, what
        self._done = False
        self._payload: dict | None = None

    def result(self) -> Any:
        import json

        if not self._done:
            try:
                with os.fdopen(self.fd, "rb") as inp:
                    data = inp.read()
            finally:
                self._done = True
                os.waitpid(self.pid, 0)
            try:
                self._payload = json.loads(data or b"{}")
            except ValueError:
                raise SystemFailure(f"{self.what} sent garbage") from None
        payload = self._payload or {}
        if "ok" in payload:
            return payload["ok"]
        if "error" not in payload:
            raise SystemFailure(f"{self.what} died without a word")
        raise _rebuild_error(payload)


def start_in_child(prepare: Callable[[], object], what: str, fn: Callable[..., Any],
                   *args: Any, **kwargs: Any) -> Pending:
    """Fork a helper as run_in_child does; its answer is read by `.result()` of what returns."""

    r, w = os.pipe()
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:  # child: whatever happens, it ends here and never unwinds into the parent's code
        code = 1
        try:
            os.close(r)
            code, data = _child_answer(prepare, fn, args, kwargs)
            try:
                with os.fdopen(w, "wb") as out:
                    out.write(data)
            except OSError:
                pass  # the parent stopped listening (interrupted): nobody to tell
        finally:
            os._exit(code)
    os.close(w)
    return Pending(pid, r, what)


def _child_answer(prepare: Callable[[], object], fn: Callable[..., Any], args: tuple,
                  kwargs: dict) -> tuple[int, bytes]:
    """In the forked helper: run prepare() and fn, and encode the answer (exit code, JSON)."""
    import json

    code = 0
    payload: dict[str, Any]
    try:
        prepare()
        payload = {"ok": fn(*args, **kwargs)}
    except VaultError as exc:
        payload = {"error": type(exc).__name__, "module": type(exc).__module__,
                   "message": str(exc)}
        code = 1
    except BaseException as exc:  # report everything, never unwind into the parent's code
        import traceback

        payload = {"error": "SystemFailure", "module": "netns_vault.errors",
                   "message": f"{exc.__class__.__name__}: {exc}",
                   "trace": traceback.format_exc()}
        code = 1
    try:
        return code, json.dumps(payload).encode()
    except (TypeError, ValueError) as exc:
        return 1, json.dumps({"error": "SystemFailure", "module": "netns_vault.errors",
                              "message": f"result not serialisable: {exc}"}).encode()


def _rebuild_error(payload: dict) -> VaultError:
    from . import errors

    cls = getattr(errors, payload.get("error", ""), None)
    message = payload.get("message", "unknown error")
    if isinstance(cls, type) and issubclass(cls, VaultError) and cls is not errors.ConfigError:
        return cls(message)
    return SystemFailure(message)


def run_as_user(name: str, uid: int, gid: int, fn: Callable[..., T], *args: Any) -> T:
    """fn(*args) in a child that became the user (groups, gid, uid), as run_in_child returns."""

    def become() -> None:
        os.initgroups(name, gid)
        os.setgid(gid)
        os.setuid(uid)

    return run_in_child(become, f"helper as {name}", fn, *args)
