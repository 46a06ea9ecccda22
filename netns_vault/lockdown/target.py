"""Where lockdown work runs: in a child forked into the target namespace, or right here.

`netns` is a name under /run/netns, a path (e.g. /proc/self/fd/N for the confirm timer), or None
for the caller's own namespace (the real host). Its inode identifies it in the state file.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any, TypeVar

from ..errors import SystemFailure
from ..nsexec import netns_path, run_in_netns

T = TypeVar("T")


def in_target(netns: str | None, fn: Callable[..., T], *args: Any) -> T:
    """fn(*args) in `netns` (a forked child), or right here for the current namespace (None).

    In the child, fn's result travels back as JSON: return lists and dicts, not tuples."""
    if netns is None:
        return fn(*args)
    return run_in_netns(netns, fn, *args)


def ns_inode(netns: str | None) -> int:
    """The inode of the target namespace: what the state file records to recognise it."""
    path = "/proc/self/ns/net" if netns is None else netns_path(netns)
    try:
        return os.stat(path).st_ino
    except OSError:
        raise SystemFailure(f"network namespace {path} does not exist") from None
