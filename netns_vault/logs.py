"""Loggers that cost nothing until something listens.

`import logging` costs 5-10 ms (it brings traceback, string, threading and weakref), a tenth of a
`vault down`. Each module says `log = get_logger(__name__)` and calls it as a logging.Logger.
Debug and info records reach `logging` only once something has imported it: whoever could listen
(`vault -v`, an application that configured handlers) has imported it to do so, and without a
handler those records would be dropped at the default WARNING level anyway. Warnings and errors
always reach `logging`, with the CLI's format when `configure` was called, else through logging's
own last-resort handler, exactly as before.
"""

from __future__ import annotations

import sys

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing costs 3 ms at run time
    from typing import Any

DEBUG, INFO, WARNING = 10, 20, 30
FORMAT = "%(levelname)s %(name)s: %(message)s"

_pending: int | None = None  # a level `configure` asked for, applied when logging is imported


def configure(verbose: bool) -> None:
    """The CLI's logging: DEBUG records on stderr with -v (now), else WARNING (when the first
    warning is logged)."""
    global _pending
    _pending = DEBUG if verbose else WARNING
    if verbose:
        _logging()


def _logging() -> Any:
    global _pending
    import logging

    if _pending is not None:
        level, _pending = _pending, None
        logging.basicConfig(level=level, format=FORMAT, stream=sys.stderr)
    return logging


class Logger:
    """The part of logging.Logger this package uses, forwarding as the module docstring says."""

    __slots__ = ("name", "_real")

    def __init__(self, name: str):
        self.name = name
        self._real = None

    def _logger(self) -> Any:
        logging = _logging()
        if self._real is None:
            self._real = logging.getLogger(self.name)
        return self._real

    def isEnabledFor(self, level: int) -> bool:  # noqa: N802 (logging's name)
        if level < WARNING and "logging" not in sys.modules:
            return False
        return bool(self._logger().isEnabledFor(level))

    def debug(self, msg: object, *args: object, **kwargs: object) -> None:
        if "logging" in sys.modules:
            kwargs.setdefault("stacklevel", 2)
            self._logger().debug(msg, *args, **kwargs)

    def info(self, msg: object, *args: object, **kwargs: object) -> None:
        if "logging" in sys.modules:
            kwargs.setdefault("stacklevel", 2)
            self._logger().info(msg, *args, **kwargs)

    def warning(self, msg: object, *args: object, **kwargs: object) -> None:
        kwargs.setdefault("stacklevel", 2)
        self._logger().warning(msg, *args, **kwargs)

    def error(self, msg: object, *args: object, **kwargs: object) -> None:
        kwargs.setdefault("stacklevel", 2)
        self._logger().error(msg, *args, **kwargs)


def get_logger(name: str) -> Logger:
    return Logger(name)
