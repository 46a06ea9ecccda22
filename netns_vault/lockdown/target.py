"""Where lockdown work runs: in a child forked into the target namespace, or right here.

`netns` is a name under /run/netns, a path (e.g. /proc/self/fd/N for the confirm timer), or None
for the caller's own namespace (the real host). Its inode identifies it in the state file.
"""

from __future__ import annotations

import os

from ..errors import SystemFailure
from ..nsexec import in_target, netns_path

__all__ = ["in_target", "ns_inode"]


def ns_inode(netns: str | None) -> int:
    """The inode of the target namespace: what the state file records to recognise it."""
    path = "/proc/self/ns/net" if netns is None else netns_path(netns)
    try:
        return os.stat(path).st_ino
    except OSError:
        raise SystemFailure(f"network namespace {path} does not exist") from None
