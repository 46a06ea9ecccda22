"""`vault up`, `vault down` and `vault ls` without typer or rich (issue 13): their arguments
parsed by hand, their answer printed as plain text, exactly what the typer app prints when the output is not a
terminal (rich then renders no colours, and never wraps: see app._console).

`fast_main` returns None when it is not sure it would do exactly what the typer app does: a
terminal on stdout or stderr (colours), FORCE_COLOR, `--help`, `--wait` (a spinner), an option it
does not know, a missing value or argument (typer says the usage error). The caller then goes to
the typer app, which stays the one place for help and every other command.
"""

from __future__ import annotations

import os
import sys

_UP_VALUES = {"--config": "config", "-c": "config", "--driver": "driver", "--firewall": "firewall",
              "--timeout": "timeout", "--config-dir": "config_dir"}
_REPEATABLE = {"config"}
_UP_FLAGS = {"--docker": "docker"}
_DOWN_FLAGS = {"--kill": "kill", "--force": "force"}


def _plain_output() -> bool:
    if os.environ.get("FORCE_COLOR") or os.environ.get("TTY_COMPATIBLE") == "1":
        return False
    try:
        return not (sys.stdout.isatty() or sys.stderr.isatty())
    except (AttributeError, ValueError):
        return False


def _parse(args: list[str], values: dict[str, str], flags: dict[str, str]
           ) -> tuple[list[str], dict] | None:
    """(positional, options) or None when anything is unusual."""
    pos: list[str] = []
    opts: dict = {}
    i = 0
    while i < len(args):
        arg = args[i]
        if arg.startswith("-") and arg != "-":
            key, value = arg, None
            if arg.startswith("--") and "=" in arg:
                key, value = arg.split("=", 1)
            if key in values:
                if value is None:
                    if i + 1 >= len(args) or args[i + 1].startswith("-"):
                        return None  # let typer say it
                    value = args[i + 1]
                    i += 1
                if values[key] in _REPEATABLE:
                    opts.setdefault(values[key], []).append(value)
                elif values[key] in opts:
                    return None
                else:
                    opts[values[key]] = value
            elif key in flags and value is None:
                opts[flags[key]] = True
            else:
                return None  # --help, --wait, --no-..., "--", anything else
        else:
            pos.append(arg)
        i += 1
    return pos, opts


def fast_main(args: list[str]) -> int | None:
    """`vault [-v] up|down ...` when the plain path applies; None to use the typer app."""
    verbose = False
    while args and args[0] in ("-v", "--verbose"):
        verbose, args = True, args[1:]
    if not args or args[0] not in ("up", "down", "ls") or not _plain_output():
        return None
    if args[0] == "ls":
        parsed = _parse(args[1:], {}, {"--json": "json"})
        if parsed is None or parsed[0]:
            return None
        return _ls(bool(parsed[1].get("json")), verbose)
    if args[0] == "up":
        parsed = _parse(args[1:], _UP_VALUES, _UP_FLAGS)
        if parsed is None or not parsed[0]:
            return None
        if "timeout" in parsed[1]:
            try:
                float(parsed[1]["timeout"])
            except ValueError:
                return None
        _logging(verbose)
        return _up(parsed[0], parsed[1])
    parsed = _parse(args[1:], {}, _DOWN_FLAGS)
    if parsed is None or not parsed[0]:
        return None
    _logging(verbose)
    return _down(parsed[0], parsed[1])


def _ls(as_json: bool, verbose: bool) -> int | None:
    if not as_json and not (sys.stdout.encoding or "").lower().replace("-", "").startswith("utf8"):
        return None  # rich would draw an ASCII box: leave it to rich
    _logging(verbose)
    from . import listing

    rows = listing.rows()
    if as_json:
        import json

        print(json.dumps(rows, indent=2))
    elif not rows:
        print("no vault is up")
    else:
        print(listing.plain_table(listing.HEADERS, [[_esc(c) for c in listing.cells(r)]
                                                    for r in rows]))
    return 0


def _logging(verbose: bool) -> None:
    """As the typer app's callback (logging itself is imported only if something logs)."""
    from ..logs import configure

    configure(verbose)


def _esc(value: object) -> str:
    from ..text import one_line

    return one_line(str(value))


def _up(names: list[str], opts: dict) -> int:
    from .. import vault
    from ..errors import InterruptedAfterChange

    firewall = opts.get("firewall", "auto")
    kind = "docker" if opts.get("docker") else "netns"
    driver = opts.get("driver", "auto")
    configs = opts.get("config") or []
    if len(names) == 1 and len(configs) == 1 and "config_dir" not in opts:
        results = [vault.up(names[0], configs[0], driver_choice=driver, provider_kind=kind,
                            firewall=firewall)]
    else:
        results = vault.up_many(vault.specs_for(names, configs, opts.get("config_dir")),
                                driver_choice=driver, provider_kind=kind, firewall=firewall)
    try:
        for result in results:
            for notice in result.notices:
                print(f"notice: {_esc(notice)}", file=sys.stderr)
            print(f"✔ vault {_esc(result.name)} is up "
                  f"(namespace {_esc(result.netns)}, {_esc(result.driver)} driver, "
                  f"{_esc(result.firewall)} firewall{' (auto)' if firewall == 'auto' else ''}, "
                  f"{_esc(', '.join(result.addresses))} via "
                  f"{_esc(', '.join(result.endpoints) or 'no endpoint')})")
        sys.stdout.flush()
    except KeyboardInterrupt:
        raise InterruptedAfterChange(
            f"interrupted after vault {results[0].name} was up; it is up" if len(results) == 1
            else f"interrupted after vaults {', '.join(r.name for r in results)} were up; "
                 "they are up") from None
    return 0


def _down(names: list[str], opts: dict) -> int:
    from .. import vault

    kill, force = bool(opts.get("kill")), bool(opts.get("force"))
    if len(names) == 1:
        results: list = [vault.down(names[0], kill=kill, force=force)]
    else:
        results = vault.down_many(names, kill=kill, force=force, keep_going=True)
    for result in results:
        if isinstance(result, BaseException):
            continue
        if not result.existed:
            print(f"vault {_esc(result.name)} is not up; nothing to do")
            continue
        print(f"✔ vault {_esc(result.name)} is down")
        if result.processes:
            verb = "ended" if result.killed else "still running, now without any network"
            for pid, cmd in result.processes:
                print(f"  pid {pid} {verb}: {_esc(cmd)}")
            if not result.killed:
                print("  (use --kill to end them)")
    errors = [r for r in results if isinstance(r, BaseException)]
    sys.stdout.flush()
    for exc in errors[1:]:
        print(f"vault: {_esc(exc)}", file=sys.stderr)
    if errors:
        raise errors[0]
    return 0
