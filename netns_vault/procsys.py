"""Writing one /proc/sys value of the calling namespace, as `sysctl -w` would (logged so)."""

from __future__ import annotations

from .errors import SystemFailure
from .logs import get_logger

log = get_logger(__name__)

PROC_SYS = "/proc/sys/"


def write(path: str, value: str) -> None:
    """Write `value` to the sysctl file at `path` (/proc/sys/net/..., or a test's stand-in)."""
    key = path[len(PROC_SYS):].replace("/", ".") if path.startswith(PROC_SYS) else path
    log.debug("sysctl -w %s=%s", key, value)
    try:
        with open(path, "w") as fh:
            fh.write(value)
    except OSError as exc:
        raise SystemFailure(f"sysctl {key}={value}: {exc.strerror or exc}") from exc
