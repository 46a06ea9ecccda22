"""Error types. Each carries the exit code the CLI maps it to; the mapping lives only here.

Exit codes (also in the README):
  0 ok, 1 check failed, 2 usage or config error, 3 system or runtime error, 4 conflict,
  5 not allowed (vault-launch: this user may not launch into that vault, or asked for more).
  6 interrupted after a change that stays (the line says what state it left),
  130 interrupted; everything done so far was rolled back.
"""

from __future__ import annotations

EXIT_OK = 0
EXIT_CHECK_FAILED = 1
EXIT_USAGE = 2
EXIT_SYSTEM = 3
EXIT_CONFLICT = 4
EXIT_NOT_ALLOWED = 5
EXIT_INTERRUPTED_AFTER_CHANGE = 6
EXIT_INTERRUPTED = 130  # 128 + SIGINT, as shells report it


class VaultError(Exception):
    """Base of every error the CLI reports as one line on stderr."""

    exit_code = EXIT_SYSTEM


class UsageError(VaultError):
    """A bad argument: a hostile name, an unknown driver, a missing option."""

    exit_code = EXIT_USAGE


class ConfigError(UsageError):
    """A broken wg-quick config. `str()` gives `file:line: message`."""

    def __init__(self, message: str, path: str = "<config>", line: int | None = None):
        self.message = message
        self.path = path
        self.line = line
        where = f"{path}:{line}" if line is not None else path
        super().__init__(f"{where}: {message}")


class SystemFailure(VaultError):
    """The system cannot do what was asked: missing binary, no CAP_NET_ADMIN, a netlink error."""

    exit_code = EXIT_SYSTEM


class ConflictError(VaultError):
    """The vault already exists, or another `vault` process holds its lock."""

    exit_code = EXIT_CONFLICT


class NotFoundError(VaultError):
    """No such vault."""

    exit_code = EXIT_USAGE


class CheckFailed(VaultError):
    """`vault check` found an invariant that does not hold."""

    exit_code = EXIT_CHECK_FAILED


class NotAllowed(VaultError):
    """vault-launch: the user is not allowed into that vault, or asked for more than a launch."""

    exit_code = EXIT_NOT_ALLOWED


class InterruptedAfterChange(VaultError):
    """Ctrl-C arrived once the change was complete (or past the point of no return): nothing
    was rolled back, and the message says what state the vault is in."""

    exit_code = EXIT_INTERRUPTED_AFTER_CHANGE
