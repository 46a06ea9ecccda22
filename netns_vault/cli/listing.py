"""`vault ls`: its rows and cells, without typer or rich (issue 13), for the typer app (which
renders them with rich) and for cli/fast.py (which renders them as rich would to a pipe)."""

from __future__ import annotations

import time
from typing import Any

HEADERS = ("name", "driver", "address", "endpoint", "handshake", "rx / tx", "processes",
           "supervisor")


def ago(ts: float | None) -> str:
    if not ts:
        return "never"
    secs = int(time.time() - ts)
    return f"{secs}s ago" if secs < 120 else f"{secs // 60}m ago"


def size(n: int) -> str:
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return str(n)


def supervisor_view(name: str) -> dict | None:
    """What `vault supervise` says of the vault (None when it is not supervised)."""
    from ..supervise import runstate

    return runstate.read_view(name)


def describe(view: dict | None) -> str:
    from ..supervise import runstate

    text = runstate.describe(view)
    return f"{text} (pid {view['pid']})" if view else text


def rows() -> list[dict[str, Any]]:
    from .. import vault

    out = vault.list_vaults()
    for row in out:
        row["supervisor"] = supervisor_view(row["name"])
    return out


def cells(row: dict[str, Any]) -> list[str]:
    """One row of the table, as plain text (outside text not yet made one line or escaped)."""
    if "error" in row:
        return [str(row["name"]), "?", "?", "?", "?", "?", str(row["error"]),
                describe(row["supervisor"])]
    peers = row.get("peers", [])
    return [
        str(row["name"]), str(row["driver"]), ", ".join(row["addresses"]),
        ", ".join(p.get("resolved") or p.get("endpoint") or "-" for p in peers),
        ", ".join(ago(p["last_handshake"]) for p in peers),
        ", ".join(f"{size(p['rx_bytes'])} / {size(p['tx_bytes'])}" for p in peers),
        str(len(row["processes"])), describe(row["supervisor"]),
    ]


def plain_table(headers: tuple[str, ...] | list[str], body: list[list[str]]) -> str:
    """The table as rich renders a default `Table` on a console that is not a terminal, never
    wraps and is wide enough (app._console): heavy-head box, one space of padding, each column
    as wide as its widest cell. Cells are plain text already made one line."""
    from rich.cells import cell_len  # rich's measure of a cell (wide characters), nothing else

    widths = [cell_len(h) for h in headers]
    for row in body:
        widths = [max(w, cell_len(c)) for w, c in zip(widths, row, strict=True)]

    def line(left: str, fill: str, mid: str, right: str) -> str:
        return left + mid.join(fill * (w + 2) for w in widths) + right

    def text(sep: str, values: tuple[str, ...] | list[str]) -> str:
        return sep + sep.join(f" {v}{' ' * (w - cell_len(v))} "
                              for v, w in zip(values, widths, strict=True)) + sep

    lines = [line("┏", "━", "┳", "┓"), text("┃", headers), line("┡", "━", "╇", "┩")]
    lines += [text("│", row) for row in body]
    lines.append(line("└", "─", "┴", "┘"))
    return "\n".join(lines)
