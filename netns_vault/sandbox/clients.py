"""The WireGuard keys of a world (its server and its clients) and the clients' wg-quick files."""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from .layout import DNS_ADDR, ENDPOINT_ADDR, ENDPOINT_PORT, client_address


@dataclass(frozen=True)
class ClientKeys:
    index: int
    private_key: str = field(repr=False)
    public_key: str
    address: str


@dataclass(frozen=True)
class WorldKeys:
    server_private_key: str = field(repr=False)
    server_public_key: str
    clients: list[ClientKeys]


def make_keys(n_clients: int) -> WorldKeys:
    """Fresh keys for the server and `n_clients` clients (client i gets client_address(i))."""
    from ..keys import generate_private_key, public_key

    server = generate_private_key()
    clients = []
    for i in range(n_clients):
        priv = generate_private_key()
        clients.append(ClientKeys(i, priv, public_key(priv), client_address(i)))
    return WorldKeys(server, public_key(server), clients)


def client_config_text(client: ClientKeys, server_public_key: str, dns: bool = True,
                       endpoint_host: str | None = None) -> str:
    """The wg-quick config of `client` (all traffic through the world's server)."""
    lines = ["[Interface]", f"PrivateKey = {client.private_key}",
             f"Address = {client.address}/32"]
    if dns:
        lines.append(f"DNS = {DNS_ADDR}")
    host = endpoint_host or ENDPOINT_ADDR
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"
    lines += ["", "[Peer]", f"PublicKey = {server_public_key}",
              f"Endpoint = {host}:{ENDPOINT_PORT}", "AllowedIPs = 0.0.0.0/0, ::/0",
              "PersistentKeepalive = 0", ""]
    return "\n".join(lines)


def write_private_file(path: str, text: str) -> str:
    """Write `text` to `path` with mode 0600 (also when the file existed); returns `path`."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        os.fchmod(fh.fileno(), 0o600)
        fh.write(text)
    return path
