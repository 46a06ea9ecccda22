"""What is up and how it is doing: `ls`, `status`, and waiting for the first handshake."""

from __future__ import annotations

import contextlib
import os
import time
from typing import Any

from .. import namespace, paths, procfs, state
from ..errors import NotFoundError
from ..names import VaultNames
from ..nsexec import run_in_netns
from ..tunnel import get_driver
from . import inside
from .install import tunnel_handle
from .provider import provider_for


def up_names() -> list[str]:
    """Vaults that are up: state files plus vault-* namespaces without one."""
    return sorted(set(state.state_names()) | set(paths.vault_names_up()))


def status(name: str, _procs: dict[tuple[int, int], list[int]] | None = None,
           _stats: Any = None) -> dict[str, Any]:
    """One vault. `_procs` (procfs.netns_map()) saves a scan of /proc per vault in a listing;
    `_stats` is the tunnel's stats (or the exception) already asked for."""
    names = VaultNames.of(name)
    record = state.read_state(names.name)
    exists = namespace.netns_exists(names.netns)
    if record is None and not exists:
        raise NotFoundError(f"no vault named {name!r} is up")
    record = record or {}
    handle = tunnel_handle(names, record)
    out: dict[str, Any] = {
        "name": names.name,
        "netns": names.netns,
        "up": exists,
        "provider": record.get("provider", "netns"),
        "driver": handle.driver,
        "interface": handle.ifname,
        "addresses": record.get("addresses", []),
        "dns": record.get("dns", []),
        "peers": [],
        "processes": [],
    }
    stats_by_key: dict[str, Any] = {}
    try:
        if isinstance(_stats, BaseException):
            raise _stats
        stats = _stats or get_driver(handle.driver).stats(handle, names.netns)
        stats_by_key = {p.public_key: p for p in stats.peers}
        out["listen_port"] = stats.listen_port
    except Exception as exc:
        out["tunnel_error"] = str(exc)
    out["peers"] = [peer_status(peer, stats_by_key.get(peer["public_key"]))
                    for peer in record.get("peers", [])]
    if exists:
        own = set(provider_for(out["provider"]).own_pids(names))
        if _procs is None:
            pids = namespace.pids_in_netns(names.netns)
        else:
            try:
                st = os.stat(names.netns_path)
                pids = _procs.get((st.st_dev, st.st_ino), [])
            except OSError:
                pids = []
        out["processes"] = [{"pid": p, "command": namespace.process_name(p)}
                            for p in pids if p not in own]
    return out


def peer_status(peer: dict, stats: Any) -> dict[str, Any]:
    """A peer as state recorded it, with the tunnel's live figures (`stats`, or None)."""
    return {
        "public_key": peer["public_key"],
        "endpoint": peer.get("endpoint"),
        "resolved": peer.get("resolved"),
        "last_handshake": stats.last_handshake if stats else None,
        "rx_bytes": stats.rx_bytes if stats else 0,
        "tx_bytes": stats.tx_bytes if stats else 0,
    }


def _userspace_stats(names: list[str]) -> dict[str, Any]:
    """The UAPI stats of every userspace vault of `names`, asked of all their wireguard-go at
    once (each answers in a few ms of its own scheduling; 100 in a row add up). The kernel
    driver's stats fork into the namespace: asked one by one in status()."""
    handles: dict[str, Any] = {}
    for name in names:
        with contextlib.suppress(Exception):
            handle = tunnel_handle(VaultNames.of(name), state.read_state(name))
            if handle.driver == "userspace":
                handles[name] = handle
    if len(handles) < 2:
        return {}
    from ..tunnel.uapi import get_many, socket_path_for

    paths = [h.uapi_socket or socket_path_for(h.ifname) for h in handles.values()]
    return dict(zip(handles, get_many(paths), strict=True))


def list_vaults() -> list[dict[str, Any]]:
    out = []
    procs = procfs.netns_map()  # one scan of /proc for all of them
    names = up_names()
    stats = _userspace_stats(names)
    for name in names:
        try:
            out.append(status(name, procs, stats.get(name)))
        except Exception as exc:
            out.append({"name": name, "error": str(exc)})
    return out


def last_handshake(name: str) -> float | None:
    names = VaultNames.of(name)
    handle = tunnel_handle(names, state.read_state(names.name))
    stats = get_driver(handle.driver).stats(handle, names.netns)
    times = [p.last_handshake for p in stats.peers if p.last_handshake]
    return max(times) if times else None


def nudge_target(record: dict) -> str:
    if record.get("dns"):
        return record["dns"][0]
    return "192.0.2.1"  # TEST-NET-1: routed into the tunnel like everything else, harmless


def wait_for_handshake(name: str, timeout: float, poll: float = 0.2) -> float | None:
    """Block until the first handshake or the timeout; returns its time or None."""
    names = VaultNames.of(name)
    target = nudge_target(state.read_state(names.name) or {})
    deadline = time.monotonic() + timeout
    next_nudge = 0.0
    while True:
        when = last_handshake(name)
        now = time.monotonic()
        if when is not None or now >= deadline:
            return when
        if now >= next_nudge:  # WireGuard retries on its own, but only while it has data
            with contextlib.suppress(Exception):
                run_in_netns(names.netns, inside.nudge, target)
            next_nudge = now + 5.0
        time.sleep(poll)
