"""IPv6 on or off: the disable_ipv6 switches under /proc/sys/net/ipv6/conf, of the calling
namespace (/proc/sys/net shows the namespace of the process that opens it, so callers run this
in a child that entered the target namespace). The one home for it: the vault, the lockdown and
the Docker gateway all switch IPv6 off here.

The kernel's rule: writing `all` also writes `default` and every interface, so a restore writes
`all` first, then `default`, then each interface.
"""

from __future__ import annotations

import os

from . import procsys
from .errors import SystemFailure
from .logs import get_logger

log = get_logger(__name__)

CONF_DIR = "/proc/sys/net/ipv6/conf"
KEYS = ("all", "default", "lo")  # what is switched off (and checked)


def _path(name: str) -> str:
    return os.path.join(CONF_DIR, name, "disable_ipv6")


def present() -> bool:
    """False when the kernel has no IPv6 at all (ipv6.disable=1): nothing to switch off."""
    return os.path.isdir(CONF_DIR)


def read_all() -> dict[str, str]:
    """{conf name: value} for `all`, `default` and every interface ({} without IPv6)."""
    if not present():
        return {}
    out = {}
    for name in sorted(os.listdir(CONF_DIR)):
        try:
            with open(_path(name)) as fh:
                out[name] = fh.read().strip()
        except FileNotFoundError:
            continue  # the interface went away meanwhile
    return out


def read_keys() -> dict[str, str]:
    """{key: value} for KEYS, "absent" where there is none (a kernel without IPv6)."""
    values = read_all()
    return {k: values.get(k, "absent") for k in KEYS}


def write(name: str, value: str) -> None:
    procsys.write(_path(name), value)


def disable(best_effort: bool = False) -> list[str]:
    """Switch IPv6 off for KEYS and verify it; returns the commands it corresponds to.

    best_effort (a container, whose /proc/sys is read-only): if it cannot be written and is not
    off already, say so and go on (the firewall drops all IPv6 anyway)."""
    if not present():
        return []
    commands = [f"sysctl -w net.ipv6.conf.{n}.disable_ipv6=1" for n in KEYS]
    try:
        for name in KEYS:
            write(name, "1")
    except SystemFailure as exc:
        if not best_effort:
            raise
        if all(v == "1" for v in read_keys().values()):
            return []  # already off (the container's sysctls), just read-only here
        log.warning("IPv6 stays on (%s); the firewall drops all of it anyway. Give the "
                    "container sysctls net.ipv6.conf.{all,default,lo}.disable_ipv6=1", exc)
        return []
    bad = [f"{k}={v}" for k, v in read_keys().items() if v != "1"]
    if bad:
        raise SystemFailure(f"IPv6 did not switch off: disable_ipv6 {', '.join(bad)}")
    return commands


def restore(values: dict[str, str]) -> None:
    """Write back what read_all() returned: `all`, then `default`, then each interface still here."""
    if not values or not present():
        return
    here = set(os.listdir(CONF_DIR))
    order: list[str] = [n for n in ("all", "default") if n in values]
    order += sorted(n for n in values if n not in ("all", "default"))
    for name in order:
        if name in here:
            write(name, values[name])


def check_items() -> list[dict]:
    """One check item per key: is IPv6 off (or absent from the kernel)?"""
    return [{"name": f"sysctl net.ipv6.conf.{k}.disable_ipv6", "ok": v in ("1", "absent"),
             "detail": v if v in ("1", "absent") else f"{v} (expected 1)"}
            for k, v in read_keys().items()]
