"""The IPv6 switches under /proc/sys/net/ipv6/conf/*/disable_ipv6, of the calling namespace.

/proc/sys/net shows the namespace of the process that opens it, so these run in the child that
entered the target namespace. Note the kernel's rule: writing `all` also writes `default` and
every interface, so a restore writes `all` first, then `default`, then each interface.
"""

from __future__ import annotations

import logging
import os

from ..errors import SystemFailure

log = logging.getLogger(__name__)

CONF_DIR = "/proc/sys/net/ipv6/conf"
LOCKDOWN_KEYS = ("all", "default", "lo")


def _path(name: str) -> str:
    return os.path.join(CONF_DIR, name, "disable_ipv6")


def ipv6_present() -> bool:
    """False when the kernel has no IPv6 at all (ipv6.disable=1): nothing to switch off."""
    return os.path.isdir(CONF_DIR)


def read_all() -> dict[str, str]:
    """{conf name: value} for `all`, `default` and every interface."""
    if not ipv6_present():
        return {}
    out = {}
    for name in sorted(os.listdir(CONF_DIR)):
        try:
            with open(_path(name)) as fh:
                out[name] = fh.read().strip()
        except FileNotFoundError:
            continue  # the interface went away meanwhile
    return out


def write(name: str, value: str) -> None:
    log.debug("sysctl -w net.ipv6.conf.%s.disable_ipv6=%s", name, value)
    try:
        with open(_path(name), "w") as fh:
            fh.write(value)
    except OSError as exc:
        raise SystemFailure(
            f"sysctl net.ipv6.conf.{name}.disable_ipv6={value}: {exc.strerror or exc}") from exc


def disable_ipv6() -> dict[str, str]:
    """Switch IPv6 off for all, default and lo, and verify it; returns what is read back."""
    if not ipv6_present():
        return {}
    for name in LOCKDOWN_KEYS:
        write(name, "1")
    got = {name: read_all().get(name, "?") for name in LOCKDOWN_KEYS}
    bad = [f"{name}={value}" for name, value in got.items() if value != "1"]
    if bad:
        raise SystemFailure(f"IPv6 did not switch off: disable_ipv6 {', '.join(bad)}")
    return got


def restore(values: dict[str, str]) -> None:
    """Write back what read_all() returned: `all`, then `default`, then each interface still here."""
    if not values or not ipv6_present():
        return
    present = set(os.listdir(CONF_DIR))
    order: list[str] = [n for n in ("all", "default") if n in values]
    order += sorted(n for n in values if n not in ("all", "default"))
    for name in order:
        if name in present:
            write(name, values[name])
