"""WireGuard tunnel drivers: kernel (pyroute2 netlink) and userspace (wireguard-go).

Imports stay light: pyroute2 is only imported inside driver methods, so `vault run` never pays
for it.
"""

from __future__ import annotations

from ..errors import SystemFailure, UsageError
from .base import PeerStats, TunnelDriver, TunnelHandle, TunnelStats
from .kernel import KernelDriver
from .userspace import UserspaceDriver

__all__ = [
    "DRIVERS",
    "DRIVER_CHOICES",
    "KernelDriver",
    "PeerStats",
    "TunnelDriver",
    "TunnelHandle",
    "TunnelStats",
    "UserspaceDriver",
    "check_driver_choice",
    "get_driver",
    "select_driver",
]

# In "auto" preference order.
DRIVERS: dict[str, type] = {
    "kernel": KernelDriver,
    "userspace": UserspaceDriver,
}
DRIVER_CHOICES = ("auto", *DRIVERS)


def get_driver(name: str) -> TunnelDriver:
    """The driver called `name` (e.g. from a state file), without checking it is usable."""
    try:
        cls = DRIVERS[name]
    except KeyError:
        raise UsageError(
            f"unknown tunnel driver {name!r}; choose one of: {', '.join(DRIVERS)}"
        ) from None
    return cls()


def check_driver_choice(choice: str) -> str:
    """UsageError unless `choice` names a driver or is "auto" (usability is not checked)."""
    if choice not in DRIVER_CHOICES:
        raise UsageError(f"unknown driver {choice!r}: use {', '.join(DRIVER_CHOICES)}")
    return choice


def select_driver(choice: str) -> TunnelDriver:
    """"kernel" / "userspace": that driver if usable; "auto": the first usable one."""
    names = list(DRIVERS) if check_driver_choice(choice) == "auto" else [choice]
    reasons: list[str] = []
    for name in names:
        driver = get_driver(name)
        reason = driver.unavailable_reason()
        if reason is None:
            return driver
        reasons.append(f"{name}: {reason}")
    if choice == "auto":
        raise SystemFailure("no WireGuard driver usable: " + "; ".join(reasons))
    raise SystemFailure(f"WireGuard driver {reasons[0]}")
