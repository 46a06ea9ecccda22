"""Vault names and the system names derived from them.

Validated before anything is touched: a name ends up in a netns path, an interface name, a
file name under /run and /etc/netns, and a container name.
"""

from __future__ import annotations

import re

from . import paths
from .errors import UsageError

# "vw-" + 12 characters fills IFNAMSIZ (15 usable bytes) exactly.
MAX_NAME_LEN = 12
_NAME_RE = re.compile(r"[a-z0-9][a-z0-9-]*")

NETNS_PREFIX = paths.NETNS_PREFIX
IFACE_PREFIX = paths.IFACE_PREFIX


def is_valid_name(name: str) -> bool:
    return isinstance(name, str) and len(name) <= MAX_NAME_LEN and bool(_NAME_RE.fullmatch(name))


def validate_name(name: str) -> str:
    if not isinstance(name, str) or not name:
        raise UsageError("vault name is empty")
    if len(name) > MAX_NAME_LEN:
        raise UsageError(
            f"vault name {name!r} is {len(name)} characters long; the limit is {MAX_NAME_LEN}"
        )
    if not _NAME_RE.fullmatch(name):
        raise UsageError(
            f"vault name {name!r} is not allowed: use lowercase letters, digits and '-', "
            "starting with a letter or digit"
        )
    return name


class VaultNames:
    """Every system name that belongs to one vault. (A plain class: `vault run` imports this,
    and dataclasses would cost it several milliseconds.)"""

    __slots__ = ("name",)

    def __init__(self, name: str):
        self.name = name

    def __eq__(self, other: object) -> bool:
        return isinstance(other, VaultNames) and other.name == self.name

    def __hash__(self) -> int:
        return hash(self.name)

    def __repr__(self) -> str:
        return f"VaultNames({self.name!r})"

    @classmethod
    def of(cls, name: str) -> VaultNames:
        return cls(validate_name(name))

    @property
    def netns(self) -> str:
        return paths.NETNS_PREFIX + self.name

    @property
    def netns_path(self) -> str:
        return paths.netns_path(self.netns)

    @property
    def iface(self) -> str:
        return paths.IFACE_PREFIX + self.name

    @property
    def etc_dir(self) -> str:
        return f"{paths.ETC_NETNS_DIR}/{self.netns}"

    @property
    def container(self) -> str:
        return self.netns
