"""wireguard-go processes, recognised by their command line (`wireguard-go ... IFNAME`): the one
place that knows what one looks like. Standard library only: `vault down` signals the vault's
wireguard-go before it imports the rest of itself (vault/teardown.py)."""

from __future__ import annotations

import os

from . import procfs

BINARY = "wireguard-go"


def serves(argv: list[str], ifname: str) -> bool:
    """True if `argv` is the command line of a wireguard-go serving `ifname`."""
    return len(argv) >= 2 and os.path.basename(argv[0]) == BINARY and argv[-1] == ifname


def is_wireguard_go(pid: int, ifname: str) -> bool:
    """True if `pid` is a live `wireguard-go ... IFNAME` process (not a zombie): checked before
    it is ever signalled, because pids are reused."""
    return serves(procfs.cmdline(pid), ifname) and procfs.alive(pid)


def find_servers(ifname: str) -> list[int]:
    """Every live wireguard-go serving `ifname`, found by /proc/PID/cmdline (with or without a
    state file that names it)."""
    return procfs.find_pids(lambda argv: serves(argv, ifname))
