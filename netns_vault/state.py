"""Per-vault state and locks under /run/netns-vault/ (paths.STATE_DIR).

State records what `up` created, so `down` from another process undoes exactly that. It never
holds a key. Files are written atomically (temp file + rename) and readable by root only.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
from collections.abc import Iterator

from . import paths
from .errors import ConflictError, SystemFailure


def _path(name: str, suffix: str) -> str:
    return os.path.join(paths.STATE_DIR, f"{name}.{suffix}")


def supervisor_paths(name: str) -> tuple[str, str]:
    """(lock, view) of vault NAME's supervisor: NAME.supervise.lock, NAME.supervise.json."""
    return _path(name, "supervise.lock"), _path(name, "supervise.json")


def remove_stale_supervisor_files(name: str) -> bool:
    """A supervisor killed outright (SIGKILL) leaves its lock and view behind: remove them,
    unless a supervisor still holds the lock. True if anything was removed."""
    lock, view = supervisor_paths(name)
    try:
        fd = os.open(lock, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        fd = None
    removed = False
    try:
        if fd is not None:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                return False  # a supervisor runs: its files are its own
        for path in (view, lock):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)
                removed = True
    finally:
        if fd is not None:
            os.close(fd)
    return removed


def ensure_dir() -> None:
    os.makedirs(paths.STATE_DIR, mode=0o700, exist_ok=True)


class LockHandle:
    """Set `remove_lock` while holding it to unlink the lock file on release."""

    def __init__(self, remove_lock: bool):
        self.remove_lock = remove_lock


@contextlib.contextmanager
def vault_lock(name: str, remove_after: bool = False) -> Iterator[LockHandle]:
    """Hold the vault's lock, or raise ConflictError at once if another process holds it.

    With remove_after, the lock file is unlinked before release (when the vault is gone), so a
    failed or undone `up` leaves no file behind. Whoever locks re-checks that the path still names
    the inode it locked, so an unlinked lock can never be "won" twice.
    """
    path = _path(name, "lock")
    for _ in range(5):
        ensure_dir()
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        except FileNotFoundError:
            continue  # cleanup_dir() of another process raced us
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(fd)
            if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
                raise ConflictError(
                    f"vault {name} is busy: another vault command is working on it"
                ) from None
            raise SystemFailure(f"locking {path}: {exc}") from exc
        try:
            same = os.fstat(fd).st_ino == os.stat(path).st_ino
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)  # the holder unlinked it between our open and flock; try the new file
    else:
        raise ConflictError(f"vault {name} is busy: its lock keeps changing")
    handle = LockHandle(remove_after)
    try:
        yield handle
    finally:
        if handle.remove_lock:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)
        os.close(fd)


def write_json_atomic(path: str, data: dict, durable: bool = True) -> None:
    """Temp file, fsync, rename: a reader sees the old file or the new one, never half of it.
    `durable=False` skips the fsync (see write_runtime_json)."""
    write_text_atomic(path, json.dumps(data, indent=2, sort_keys=True), 0o600,
                      tmp=f"{path}.tmp{os.getpid()}", durable=durable)


def write_runtime_json(path: str, data: dict) -> None:
    """write_json_atomic for a file under /run that describes something living in the kernel
    (a namespace, a process): renamed into place, not fsynced. The rename alone is atomic against
    any process dying; fsync would only help against power loss, after which the namespaces and
    processes the file describes are gone too. On a /run that is not tmpfs an fsync cost up to
    160 ms of a 170 ms `vault up` (issue 13)."""
    write_json_atomic(path, data, durable=False)


def write_text_atomic(path: str, text: str, mode: int, *, tmp: str,
                      exclusive: bool = False, durable: bool = True) -> None:
    """Write `text` to `tmp` (mode `mode`; `exclusive`: a fresh file, never through a symlink),
    fsync it (unless not `durable`), then rename it over `path`. The temp file is gone whatever
    happens."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC
    flags |= (os.O_EXCL | os.O_NOFOLLOW) if exclusive else os.O_TRUNC
    fd = os.open(tmp, flags, mode)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            if durable:
                os.fsync(f.fileno())
        os.rename(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def write_state(name: str, data: dict) -> None:
    ensure_dir()
    write_runtime_json(_path(name, "json"), data)


def read_state(name: str) -> dict | None:
    try:
        with open(_path(name, "json")) as f:
            return json.load(f)
    except FileNotFoundError:
        return None
    except (OSError, ValueError):
        return None  # a torn or foreign file: treat as absent, `down` falls back to names


def remove_state(name: str) -> None:
    """The state file and any temp file a killed writer left (`NAME.json.tmpPID`)."""
    with contextlib.suppress(FileNotFoundError):
        os.unlink(_path(name, "json"))
    for path in stale_temp_files(name):
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)


def stale_temp_files(name: str) -> list[str]:
    """Temp files of write_json_atomic for NAME's state; call with the vault's lock held (no
    writer is running then, so any such file is left over from one that was killed)."""
    prefix = f"{name}.json.tmp"
    try:
        entries = os.listdir(paths.STATE_DIR)
    except FileNotFoundError:
        return []
    return [os.path.join(paths.STATE_DIR, e) for e in sorted(entries)
            if e.startswith(prefix) and e[len(prefix):].isdigit()]


def state_names() -> list[str]:
    try:
        entries = os.listdir(paths.STATE_DIR)
    except FileNotFoundError:
        return []
    from .names import is_valid_name

    return sorted(e[:-5] for e in entries if e.endswith(".json") and is_valid_name(e[:-5]))


def log_path(name: str) -> str:
    ensure_dir()
    return _path(name, "wg.log")


def remove_log(name: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(_path(name, "wg.log"))


def cleanup_dir() -> None:
    """Remove the state directory when nothing is left in it."""
    with contextlib.suppress(OSError):
        os.rmdir(paths.STATE_DIR)
