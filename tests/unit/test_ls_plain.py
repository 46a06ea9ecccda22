"""`vault ls` to a pipe without rich (cli/fast.py) prints exactly what the typer app's rich table
prints there."""

import io

import pytest
from rich.console import Console
from rich.table import Table

from netns_vault.cli import fast, listing
from netns_vault.cli.app import esc

ROWS = [
    {"name": "a", "driver": "userspace", "addresses": ["10.0.0.2/32"],
     "peers": [{"endpoint": "192.0.2.1:51820", "resolved": None, "last_handshake": None,
                "rx_bytes": 0, "tx_bytes": 2048}], "processes": [], "supervisor": None},
    {"name": "wide", "driver": "kernel", "addresses": ["10.0.0.3/32", "fd00::3/128"],
     "peers": [{"endpoint": "vpn.example:1", "resolved": "[bold]x[/bold] 端点\x1b[31m",
                "last_handshake": None, "rx_bytes": 5 * 1024 ** 3, "tx_bytes": 1}],
     "processes": [{"pid": 1, "command": "x"}] * 12, "supervisor": None},
    {"name": "broken", "error": "cannot read [state]\nfile", "supervisor": None},
    {"name": "nopeers", "driver": "userspace", "addresses": [], "peers": [], "processes": [],
     "supervisor": None},
]


def rich_render(rows: list[dict]) -> str:
    table = Table(*listing.HEADERS)
    for row in rows:
        table.add_row(*(esc(c) for c in listing.cells(row)))
    buf = io.StringIO()
    Console(file=buf, soft_wrap=True, highlight=False, width=100_000).print(table)
    return buf.getvalue()


@pytest.mark.parametrize("n", [1, 2, 3, 4])
def test_plain_table_is_rich_table(n: int) -> None:
    rows = ROWS[:n]
    plain = listing.plain_table(listing.HEADERS, [[fast._esc(c) for c in listing.cells(r)]
                                                  for r in rows])
    assert plain + "\n" == rich_render(rows)
