"""`vault lockdown`: the host-wide kill switch (the blog's script, with its flaws fixed).

The CLI uses only what is exported here. Modules, one concern each:
  rules.py      the ruleset as data (pure)           apply.py     python-iptables commit/inspect
  snapshot.py   iptables-legacy-save/restore + sysctls  sysctl.py  IPv6 and ARP switches
  conntrack.py  drop tracked flows the wall forbids  resolve.py   endpoints and their interfaces
  state.py      the state directory                  timer.py     the detached confirm watcher
  persist.py    systemd unit + sysctl.d drop-in      target.py    which namespace work runs in
  wgmark.py     the tunnel socket's fwmark (read/set over UAPI or netlink)
  core.py       the facade below (what the CLI calls)
"""

from .core import (
    APPLY_STEPS,
    FAIL_AFTER_ENV,
    PAUSE_AFTER_ENV,
    ApplyRequest,
    ApplyResult,
    RefreshResult,
    Report,
    apply,
    boot,
    check,
    confirm,
    disable,
    enable,
    refresh,
    revert,
    status,
)
from .persist import PersistPaths
from .state import DEFAULT_STATE_DIR

__all__ = [
    "APPLY_STEPS",
    "DEFAULT_STATE_DIR",
    "FAIL_AFTER_ENV",
    "PAUSE_AFTER_ENV",
    "ApplyRequest",
    "ApplyResult",
    "PersistPaths",
    "RefreshResult",
    "Report",
    "apply",
    "boot",
    "check",
    "confirm",
    "disable",
    "enable",
    "refresh",
    "revert",
    "status",
]
