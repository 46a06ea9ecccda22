"""The IPv6 switches under /proc/sys/net/ipv6/conf/*/disable_ipv6, and the ARP switches under
/proc/sys/net/ipv4/conf/*/arp_{ignore,announce}, of the calling namespace.

ARP (CVE-2019-14899): iptables never sees ARP, and with arp_ignore=0 the host answers a who-has
for the tunnel address on the physical link ("10.66.0.2 is-at <eth0 MAC>"). For the lockdown's
lifetime arp_ignore=1 (answer only for addresses of the interface asked on) and arp_announce=2
(never announce another interface's address) on `all` and each physical interface; the kernel
uses the larger of `all` and the interface's value, so `all` covers every interface.

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
ARP_CONF_DIR = "/proc/sys/net/ipv4/conf"
ARP_WANT = {"arp_ignore": "1", "arp_announce": "2"}
ARP_IGNORE_OK = ("1", "2", "8")  # 2 and 8 are stricter than 1: left as they are


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


# --- ARP ------------------------------------------------------------------------------------


def _arp_path(key: str) -> str:
    name, _, setting = key.rpartition(".")
    return os.path.join(ARP_CONF_DIR, name, setting)


def read_arp() -> dict[str, str]:
    """{"IFACE.arp_ignore": value, "IFACE.arp_announce": value} for `all` and every interface."""
    out = {}
    for name in sorted(os.listdir(ARP_CONF_DIR)):
        for setting in ARP_WANT:
            key = f"{name}.{setting}"
            try:
                with open(_arp_path(key)) as fh:
                    out[key] = fh.read().strip()
            except FileNotFoundError:
                continue
    return out


def _write_arp(key: str, value: str) -> None:
    log.debug("sysctl -w net.ipv4.conf.%s=%s", key, value)
    try:
        with open(_arp_path(key), "w") as fh:
            fh.write(value)
    except OSError as exc:
        raise SystemFailure(f"sysctl net.ipv4.conf.{key}={value}: {exc.strerror or exc}") from exc


def arp_ok(setting: str, value: str) -> bool:
    return value in ARP_IGNORE_OK if setting == "arp_ignore" else value == ARP_WANT[setting]


def harden_arp(ifaces: list[str]) -> list[str]:
    """arp_ignore=1, arp_announce=2 on `all` and `ifaces` (present ones); returns the commands."""
    current = read_arp()
    done = []
    for name in ["all", *ifaces]:
        for setting, value in ARP_WANT.items():
            key = f"{name}.{setting}"
            if key in current and not arp_ok(setting, current[key]):
                _write_arp(key, value)
                done.append(f"sysctl -w net.ipv4.conf.{key}={value}")
    return done


def restore_arp(values: dict[str, str]) -> None:
    """Write back what read_arp() returned, for the interfaces still here."""
    current = read_arp()
    for key, value in values.items():
        if key in current and current[key] != value:
            _write_arp(key, value)
