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


def scale_client_address(index: int) -> str:
    """Tunnel address of extra client `index` (0-based) for scale runs: 100.96.(1+i//250).(2+i%250),
    outside the world's own clients' 100.96.0.0/24 (the server routes 100.96.0.0/16)."""
    if not 0 <= index < 250 * 254:
        raise ValueError(f"scale client index {index} out of range")
    return f"100.96.{1 + index // 250}.{2 + index % 250}"


def make_many_keys(n: int, workers: int = 2) -> list[tuple[str, str]]:
    """`n` (private, public) key pairs from `wg genkey` / `wg pubkey`, cheaply: one shell per
    worker runs the pairs in a loop (keys travel on pipes, never argv), workers in parallel."""
    import subprocess
    from concurrent.futures import ThreadPoolExecutor

    script = 'for _ in $(seq "$1"); do k=$(wg genkey); printf "%s %s\\n" "$k" "$(printf "%s" "$k" | wg pubkey)"; done'

    def batch(count: int) -> list[tuple[str, str]]:
        if count == 0:
            return []
        out = subprocess.run(["bash", "-c", script, "keys", str(count)], capture_output=True,
                             text=True, check=True, timeout=600).stdout
        pairs = [tuple(line.split()) for line in out.splitlines() if line.strip()]
        if len(pairs) != count or any(len(p) != 2 for p in pairs):
            raise RuntimeError(f"wg genkey/pubkey made {len(pairs)} of {count} keys")
        return [(p[0], p[1]) for p in pairs]

    sizes = [n // workers + (1 if i < n % workers else 0) for i in range(workers)]
    with ThreadPoolExecutor(workers) as pool:
        return [pair for chunk in pool.map(batch, sizes) for pair in chunk]


def make_scale_clients(n: int) -> list[ClientKeys]:
    """`n` extra clients for a scale run, index i with scale_client_address(i)."""
    return [ClientKeys(1000 + i, priv, pub, scale_client_address(i))
            for i, (priv, pub) in enumerate(make_many_keys(n))]
