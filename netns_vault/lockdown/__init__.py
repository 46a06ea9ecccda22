"""`vault lockdown`: the host-wide kill switch (the blog's script, with its flaws fixed).

The CLI uses only what is exported here. Modules, one concern each:
  rules.py      the ruleset as data (pure)           walls.py     the walls in the target ns
  snapshot.py   the backend's save/restore + sysctls  sysctl.py   ARP switches
  conntrack.py  drop tracked flows the wall forbids  watch.py     the detached confirm watcher
  state.py      the state directory                  timer.py     starts/stops the watcher
  persist.py    systemd unit + sysctl.d drop-in      target.py    which namespace work runs in
  wgmark.py     the tunnel socket's fwmark (read/set over UAPI or netlink)
  core.py       the facade below (what the CLI calls)
Shared with the vault: firewall/ (the rule model and its backends), ipv6.py, endpoints.py.
"""

from .core import (
    APPLY_STEPS,
    ApplyRequest,
    ApplyResult,
    RefreshResult,
    Report,
    apply,
    apply_steps,
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
    "ApplyRequest",
    "ApplyResult",
    "PersistPaths",
    "RefreshResult",
    "Report",
    "apply",
    "apply_steps",
    "boot",
    "check",
    "confirm",
    "disable",
    "enable",
    "refresh",
    "revert",
    "status",
]
