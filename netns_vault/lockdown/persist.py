"""`vault lockdown enable` / `disable`: the lockdown at boot, before any interface is up.

Files (each directory a parameter, so tests write to a temp dir):
  UNIT_DIR/netns-vault-lockdown.service    oneshot, DefaultDependencies=no,
                                           Wants= and Before=network-pre.target
  UNIT_DIR/sysinit.target.wants/...        the symlink `systemctl enable` would make
  SYSCTL_DIR/90-netns-vault-lockdown.conf  IPv6 off (systemd-sysctl applies it early)
  SPEC_PATH                                the LockdownSpec in force, endpoints already resolved
                                           (there is no DNS before the network is up)

Not iptables-persistent (whose restore would also wipe our chains), not /etc/sysctl.conf.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from typing import Any

from ..errors import UsageError
from ..logs import get_logger
from .rules import LockdownSpec

log = get_logger(__name__)

UNIT_NAME = "netns-vault-lockdown.service"
SYSCTL_NAME = "90-netns-vault-lockdown.conf"
WANTED_BY = "sysinit.target"


@dataclass(frozen=True)
class PersistPaths:
    unit_dir: str = "/etc/systemd/system"
    sysctl_dir: str = "/etc/sysctl.d"
    spec_path: str = "/etc/netns-vault/lockdown.json"

    @property
    def unit(self) -> str:
        return os.path.join(self.unit_dir, UNIT_NAME)

    @property
    def wants_link(self) -> str:
        return os.path.join(self.unit_dir, f"{WANTED_BY}.wants", UNIT_NAME)

    @property
    def sysctl(self) -> str:
        return os.path.join(self.sysctl_dir, SYSCTL_NAME)

    def all(self) -> list[str]:
        return [self.wants_link, self.unit, self.sysctl, self.spec_path]


def render_unit(spec_path: str, python: str | None = None) -> str:
    python = python or sys.executable
    return f"""\
# Written by `vault lockdown enable`; removed by `vault lockdown disable`.
[Unit]
Description=netns-vault lockdown: host-wide VPN kill switch
DefaultDependencies=no
Wants=network-pre.target
Before=network-pre.target shutdown.target
After=local-fs.target systemd-modules-load.service netfilter-persistent.service
Wants=local-fs.target systemd-modules-load.service
Conflicts=shutdown.target
ConditionPathExists={spec_path}

[Service]
Type=oneshot
RemainAfterExit=yes
ExecStart={python} -m netns_vault.lockdown boot --spec {spec_path}

[Install]
WantedBy={WANTED_BY}
"""


def render_sysctl() -> str:
    return """\
# Written by `vault lockdown enable`; removed by `vault lockdown disable`.
# IPv6 off from early boot: the lockdown also drops it with ip6tables.
net.ipv6.conf.all.disable_ipv6 = 1
net.ipv6.conf.default.disable_ipv6 = 1
net.ipv6.conf.lo.disable_ipv6 = 1
"""


def _write(path: str, text: str, mode: int = 0o644) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "w") as fh:
        fh.write(text)
        fh.flush()
        os.fsync(fh.fileno())
    os.chmod(tmp, mode)
    os.rename(tmp, path)


def _systemd_running() -> bool:
    return os.path.isdir("/run/systemd/system") and shutil.which("systemctl") is not None


def _daemon_reload(paths: PersistPaths) -> None:
    if paths.unit_dir == PersistPaths().unit_dir and _systemd_running():
        log.debug("systemctl daemon-reload")
        subprocess.run(["systemctl", "daemon-reload"], check=False, capture_output=True)


def enable(record: dict[str, Any], paths: PersistPaths | None = None,
           python: str | None = None) -> list[str]:
    """Write the unit, its wants link, the sysctl drop-in and the spec file; returns the paths.

    `record` is what boot needs: {"spec": LockdownSpec.to_dict(), "endpoint_hosts", "phys",
    "fwmark", "config"} (the hosts let `refresh` re-resolve names after a boot)."""
    paths = paths or PersistPaths()
    LockdownSpec.from_dict(record["spec"])  # refuse to persist something boot cannot read
    _write(paths.spec_path, json.dumps(record, indent=2, sort_keys=True) + "\n", 0o600)
    _write(paths.unit, render_unit(paths.spec_path, python))
    _write(paths.sysctl, render_sysctl())
    os.makedirs(os.path.dirname(paths.wants_link), exist_ok=True)
    with contextlib.suppress(FileNotFoundError):
        os.unlink(paths.wants_link)
    os.symlink(paths.unit, paths.wants_link)
    log.debug("ln -s %s %s  # systemctl enable %s", paths.unit, paths.wants_link, UNIT_NAME)
    _daemon_reload(paths)
    return [paths.unit, paths.wants_link, paths.sysctl, paths.spec_path]


def disable(paths: PersistPaths | None = None) -> list[str]:
    """Remove what enable wrote; idempotent. Returns the paths that were there."""
    paths = paths or PersistPaths()
    removed = []
    for path in paths.all():
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
            removed.append(path)
            log.debug("rm %s", path)
    _daemon_reload(paths)
    return removed


def load_record(spec_path: str) -> dict[str, Any]:
    """The record enable() wrote (raises UsageError if it is missing or unreadable)."""
    try:
        with open(spec_path) as fh:
            record = json.load(fh)
        LockdownSpec.from_dict(record["spec"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise UsageError(f"{spec_path}: not a lockdown spec written by `vault lockdown "
                         f"enable` ({exc})") from None
    return record
