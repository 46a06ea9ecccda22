"""The tunnel driver interface: what the vault (`netns_vault/vault/`) needs from a WireGuard implementation.

A `TunnelHandle` goes into the state JSON, so it never holds a key.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

from ..value import ValueObject

if TYPE_CHECKING:
    from ..config import WgConfig


class TunnelHandle(ValueObject):
    """Identifies a created tunnel. Stored in state JSON; NEVER holds a key."""

    __slots__ = ("driver", "ifname", "pid", "uapi_socket")

    def __init__(self, driver: str, ifname: str, pid: int | None = None,
                 uapi_socket: str | None = None):
        self.driver = driver  # "kernel" | "userspace"
        self.ifname = ifname
        self.pid = pid  # wireguard-go pid (userspace)
        self.uapi_socket = uapi_socket

    def to_dict(self) -> dict[str, Any]:
        return {
            "driver": self.driver,
            "ifname": self.ifname,
            "pid": self.pid,
            "uapi_socket": self.uapi_socket,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TunnelHandle:
        pid = d.get("pid")
        return cls(
            driver=str(d["driver"]),
            ifname=str(d["ifname"]),
            pid=int(pid) if pid is not None else None,
            uapi_socket=d.get("uapi_socket"),
        )


class PeerStats(ValueObject):
    __slots__ = ("public_key", "endpoint", "last_handshake", "rx_bytes", "tx_bytes")

    def __init__(self, public_key: str, endpoint: str | None, last_handshake: float | None,
                 rx_bytes: int, tx_bytes: int):
        self.public_key = public_key
        self.endpoint = endpoint
        self.last_handshake = last_handshake
        self.rx_bytes = rx_bytes
        self.tx_bytes = tx_bytes


class TunnelStats(ValueObject):
    __slots__ = ("listen_port", "peers")

    def __init__(self, listen_port: int | None, peers: list[PeerStats] | None = None):
        self.listen_port = listen_port
        self.peers: list[PeerStats] = peers if peers is not None else []


class TunnelDriver(Protocol):
    name: str

    def unavailable_reason(self) -> str | None:
        """None when the driver is usable here, else a one-line reason."""
        ...

    def create(self, ifname: str, log_path: str | None = None) -> TunnelHandle:
        """Create the link in the CALLING process's current netns (the host side)."""
        ...

    def configure(
        self,
        handle: TunnelHandle,
        cfg: WgConfig,
        endpoints: list[tuple[str, int] | None],
        netns: str,
    ) -> None:
        """After the link was moved into `netns`; endpoints[i] is the resolved cfg.peers[i]."""
        ...

    def stats(self, handle: TunnelHandle, netns: str) -> TunnelStats: ...

    def destroy(self, handle: TunnelHandle, netns: str | None) -> None:
        """Idempotent; never raises for "already gone"."""
        ...
