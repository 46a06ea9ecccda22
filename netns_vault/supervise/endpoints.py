"""Endpoint re-resolution and fallback rotation, per peer.

A peer's candidates are its `Endpoint` followed by its `# netns-vault: FallbackEndpoint = ...`
lines. Each round re-resolves the candidate in use; if its address did not change, the next
candidate is taken (when there is one). Names are resolved on the host, like `vault up` does.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..config import Endpoint, WgConfig
from ..endpoints import lookup
from ..errors import SystemFailure

Resolved = tuple[str, int]


def resolve(ep: Endpoint) -> Resolved | None:
    """IPv4 first (as `vault up` resolves: endpoints.lookup); None when the name does not
    resolve (now)."""
    if ep.is_literal:
        return (ep.host, ep.port)
    try:
        addresses = lookup(ep.host, ep.port)
    except (SystemFailure, UnicodeError):
        return None
    return (addresses[0], ep.port) if addresses else None


def show(addr: Resolved | None) -> str:
    if addr is None:
        return "none"
    host, port = addr
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


@dataclass
class PeerEndpoints:
    candidates: list[Endpoint]
    current: Resolved | None
    index: int = 0

    def next_round(self) -> tuple[Resolved | None, str] | None:
        """Re-resolve the candidate in use, else move on to the next one. Returns (new address,
        description) when the address to use changed, None when it stays."""
        if not self.candidates:
            return None
        now = resolve(self.candidates[self.index])
        if now is not None and now != self.current:
            return now, str(self.candidates[self.index])
        for step in range(1, len(self.candidates)):
            i = (self.index + step) % len(self.candidates)
            addr = resolve(self.candidates[i])
            if addr is not None and addr != self.current:
                self.index = i
                return addr, f"{self.candidates[i]} (fallback {i})" if i else str(
                    self.candidates[i])
        return None


@dataclass
class EndpointSet:
    peers: list[PeerEndpoints] = field(default_factory=list)

    @classmethod
    def of(cls, cfg: WgConfig, resolved: list[Resolved | None]) -> EndpointSet:
        out = []
        for peer, addr in zip(cfg.peers, resolved, strict=True):
            cands = ([peer.endpoint] if peer.endpoint else []) + list(peer.fallback_endpoints)
            out.append(PeerEndpoints(cands, addr))
        return cls(out)

    def current(self) -> list[Resolved | None]:
        return [p.current for p in self.peers]
