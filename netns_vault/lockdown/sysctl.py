"""The ARP switches under /proc/sys/net/ipv4/conf/*/arp_{ignore,announce}, of the calling
namespace (IPv6 is switched off by netns_vault.ipv6, the one home for it).

ARP (CVE-2019-14899): iptables never sees ARP, and with arp_ignore=0 the host answers a who-has
for the tunnel address on the physical link ("10.66.0.2 is-at <eth0 MAC>"). For the lockdown's
lifetime arp_ignore=1 (answer only for addresses of the interface asked on) and arp_announce=2
(never announce another interface's address) on `all` and each physical interface; the kernel
uses the larger of `all` and the interface's value, so `all` covers every interface.

/proc/sys/net shows the namespace of the process that opens it, so these run in the child that
entered the target namespace.
"""

from __future__ import annotations

import os

from .. import procsys
from ..logs import get_logger

log = get_logger(__name__)

ARP_CONF_DIR = "/proc/sys/net/ipv4/conf"
ARP_WANT = {"arp_ignore": "1", "arp_announce": "2"}
ARP_IGNORE_OK = ("1", "2", "8")  # 2 and 8 are stricter than 1: left as they are


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
    procsys.write(_arp_path(key), value)


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
