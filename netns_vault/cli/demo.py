"""`vault demo`: draws the events of netns_vault.demo with rich; the core does the work."""

from __future__ import annotations

import signal
import time
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.padding import Padding
from rich.table import Table
from rich.text import Text

from .. import demo as core
from ..errors import CheckFailed, SystemFailure, UsageError

out = Console(highlight=False)
err = Console(stderr=True, highlight=False)

LABELS = {
    "world": "closed world",
    "vault": "vault up",
    "page": "1 page via the tunnel",
    "dns": "2 DNS via the tunnel",
    "killed": "3 server down: kill switch",
    "restored": "4 server back: restored",
    "deleted": "5 link deleted: kill switch",
    "reloaded": "6 vault reload: restored",
}

INTRO = (
    "[bold]netns-vault demo[/]: a real vault against a closed, simulated world.\n"
    "[dim]Everything runs in throw-away network namespaces (a simulated internet with a WireGuard "
    "server, DNS and a web server, and a simulated host); nothing touches this machine's "
    "network{end}.[/]"
)


def _mark(ok: bool) -> str:
    return "[green]✔[/]" if ok else "[red]✘[/]"


def _interrupt(signum: int, _frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def _render(demo: core.Demo) -> None:
    """Narrate the steps live: a spinner while one runs, then ✔ or ✘ and what was measured."""
    status = None
    title = ""
    try:
        for event in demo.events():
            if isinstance(event, core.StepStarted):
                title = event.title
                status = out.status(escape(title), spinner="dots")
                status.start()
            elif isinstance(event, core.StepProgress):
                if status is not None:
                    status.update(f"{escape(title)} [dim]— {escape(event.message)}[/]")
            else:
                if status is not None:
                    status.stop()
                    status = None
                r = event.result
                out.print(f"{_mark(r.ok)} [bold]{escape(title)}[/] [dim]({r.elapsed:.1f} s)[/]")
                for fact in r.facts:  # wrapped lines keep the indent
                    if fact.ok:
                        out.print(Padding(Text(fact.detail, style="dim"), (0, 0, 0, 6),
                                          expand=False))
                    else:
                        out.print(Padding(Text("✘ " + fact.detail, style="red"), (0, 0, 0, 4),
                                          expand=False))
    finally:
        if status is not None:
            status.stop()


def _summary(demo: core.Demo, teardown_line: str | None, elapsed: float) -> None:
    table = Table(title="netns-vault demo: summary", title_justify="left", show_lines=False)
    table.add_column("step")
    table.add_column("", justify="center")
    table.add_column("what was measured")
    for r in demo.results:
        table.add_row(LABELS.get(r.key, r.key), _mark(r.ok), escape(r.summary))
    if teardown_line is not None:
        table.add_row("teardown", _mark(not teardown_line.startswith("!")),
                      escape(teardown_line.lstrip("!")))
    out.print()
    out.print(table)
    failed = demo.failed_steps()
    if not failed:
        out.print(f"[green]✔ every step held[/] in {elapsed:.0f} s: the vault's only way out is "
                  "the tunnel, and when the tunnel dies nothing leaks.")


def _kept_hints(kept: core.KeptDemo) -> None:
    exe = core.vault_executable()
    host = f"/run/netns/{kept.host_ns}"
    out.print()
    out.print(f"[bold]The demo is still up[/] (world {kept.world_id}, vault {core.DEMO_NAME}). "
              "Try:")
    for cmd, why in (
        (f"sudo {exe} run -n {core.DEMO_NAME} -- curl http://web.demo/",
         "inside the vault: the server sees the tunnel address"),
        (f"sudo nsenter --net={host} curl http://{core.sandbox.WEB_ADDR}/",
         "the simulated host, outside the vault: the server sees 192.0.2.2"),
        (f"sudo {exe} check {core.DEMO_NAME}", "the vault's invariants, on the live system"),
        (f"sudo {exe} status {core.DEMO_NAME}", "tunnel, handshake, byte counters"),
        (f"sudo {exe} run -n {core.DEMO_NAME} -- ping -c1 {core.sandbox.GATEWAY}",
         "the host's own network is out of reach from inside"),
    ):
        out.print(f"  {escape(cmd)}\n    [dim]{escape(why)}[/]")
    out.print("Tear it down with:")
    out.print(f"  {escape(f'sudo {exe} demo --teardown')}")


def demo_cmd(
    keep: Annotated[bool, typer.Option(
        "--keep", help="Leave the world and the vault up afterwards, to explore; "
                       "remove them later with --teardown.")] = False,
    teardown: Annotated[bool, typer.Option(
        "--teardown", help="Remove a demo left up by --keep.")] = False,
) -> None:
    """Show what netns-vault does, live, in a closed simulated world (about 25 s)."""
    if keep and teardown:
        raise UsageError("--keep and --teardown exclude each other")
    if teardown:
        with err.status("removing the kept demo…"):
            removed = core.teardown_kept()
        out.print(f"{_mark(True)} kept demo removed: {escape(', '.join(removed))}")
        return
    demo = core.Demo(keep=keep)
    demo.preflight()  # root, tools, and the name `demo` free: before anything changes
    out.print(INTRO.format(end=", and it stays up for you to explore (--keep)" if keep else
                           ", and everything is removed at the end"))
    out.print()
    t0 = time.monotonic()
    old_term = signal.signal(signal.SIGTERM, _interrupt)  # SIGTERM tears down like Ctrl-C
    teardown_line: str | None = None
    kept = None
    try:
        try:
            _render(demo)
        except BaseException as exc:
            why = "interrupted" if isinstance(exc, KeyboardInterrupt) else "stopped by an error"
            err.print(f"[yellow]demo {why}[/]: tearing everything down…")
            problems = demo.teardown()
            for p in problems:
                err.print(f"[red]✘ teardown: {escape(p)}[/]")
            if not problems:
                err.print(f"{_mark(True)} torn down: nothing is left behind")
            raise
        if keep:
            kept = demo.keep()
        else:
            with out.status("tearing down: vault down, world stopped…"):
                problems = demo.teardown()
            teardown_line = ("nothing left: vault, namespaces, processes, files" if not problems
                             else "!" + "; ".join(problems))
    finally:
        signal.signal(signal.SIGTERM, old_term)
    _summary(demo, teardown_line, time.monotonic() - t0)
    if kept is not None:
        _kept_hints(kept)
    failed = demo.failed_steps()
    if failed:
        raise CheckFailed("demo: " + ", ".join(LABELS.get(r.key, r.key) for r in failed)
                          + " did not hold")
    if teardown_line is not None and teardown_line.startswith("!"):
        raise SystemFailure("demo teardown left something behind: " + teardown_line[1:])


def register(app: typer.Typer) -> None:
    app.command("demo")(demo_cmd)
