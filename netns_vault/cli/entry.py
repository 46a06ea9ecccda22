"""The `vault` console script.

`vault run` is handled here without importing typer, rich or pyroute2: it is the hot path, and
it ends in exec. Every other command goes to the typer app. Errors become exit codes in exactly
one place: `report()`.
"""

from __future__ import annotations

import contextlib
import os
import sys

USAGE_RUN = "usage: vault run [-n NAME] [--user USER] -- CMD [ARGS...]"


def report(exc: BaseException) -> int:
    """The one boundary where errors become a line on stderr and an exit code."""
    from ..errors import EXIT_SYSTEM, EXIT_USAGE, VaultError

    if isinstance(exc, VaultError):
        print(f"vault: {exc}", file=sys.stderr)
        return exc.exit_code
    if isinstance(exc, KeyboardInterrupt):
        print("vault: interrupted; everything done so far was undone", file=sys.stderr)
        return 130
    if isinstance(exc, PermissionError):
        print(f"vault: permission denied: {exc.filename or exc} (run as root or with sudo)",
              file=sys.stderr)
        return EXIT_SYSTEM
    if isinstance(exc, OSError):
        print(f"vault: {exc.strerror or exc}", file=sys.stderr)
        return EXIT_SYSTEM
    # click's exceptions (typer vendors its own copy of click, so match by class name)
    kinds = {cls.__name__ for cls in type(exc).__mro__}
    if "Exit" in kinds:
        return int(getattr(exc, "exit_code", 0))
    if "Abort" in kinds:
        print("vault: aborted", file=sys.stderr)
        return 130
    if "ClickException" in kinds:
        message = exc.format_message() if hasattr(exc, "format_message") else str(exc)
        print(f"vault: {message} (see vault --help)", file=sys.stderr)
        return EXIT_USAGE
    raise exc


def parse_run_args(args: list[str]) -> tuple[str | None, str | None, list[str]]:
    """[-n NAME] [--user USER] [--] CMD... -> (name, user, argv)."""
    from ..errors import UsageError

    name = user = None
    i = 0
    while i < len(args):
        arg = args[i]
        if arg == "--":
            return name, user, args[i + 1:]
        if arg in ("-n", "--name", "-u", "--user"):
            if i + 1 >= len(args):
                raise UsageError(f"{arg} needs a value; {USAGE_RUN}")
            if arg in ("-n", "--name"):
                name = args[i + 1]
            else:
                user = args[i + 1]
            i += 2
            continue
        if arg.startswith("--name="):
            name = arg.split("=", 1)[1]
        elif arg.startswith("--user="):
            user = arg.split("=", 1)[1]
        elif arg in ("-h", "--help"):
            print(USAGE_RUN)
            print("Runs CMD inside vault NAME as the invoking (sudo) user; -n may be left out "
                  "when exactly one vault is up.")
            raise SystemExit(0)
        elif arg.startswith("-"):
            raise UsageError(f"unknown option {arg}; {USAGE_RUN}")
        else:
            return name, user, args[i:]
        i += 1
    return name, user, []


def run_main(args: list[str]) -> int:
    from .. import launcher
    from ..names import validate_name

    name, user, argv = parse_run_args(args)
    if name is not None:
        validate_name(name)
    if not argv:
        from ..errors import UsageError

        raise UsageError(f"nothing to run; {USAGE_RUN}")
    if os.geteuid() != 0:
        cmd = launcher.sudo_argv(["run", *args])
        try:
            os.execvp(cmd[0], cmd)
        except FileNotFoundError:
            from ..errors import SystemFailure

            raise SystemFailure("vault run needs root and sudo is not installed") from None
    launcher.run(launcher.RunRequest(argv=argv, name=name, user=user))
    return 0  # not reached: run() execs or raises


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    try:
        if args and args[0] == "run":
            return run_main(args[1:])
        from .app import app, mount_subapps

        mount_subapps(args)
        rv = app(args=args, prog_name="vault", standalone_mode=False)
        return rv if isinstance(rv, int) else 0
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else 0
    except BaseException as exc:
        return report(exc)


def console() -> None:
    """The console script: main(), then exit without the interpreter's teardown.

    Tearing down a process that imported typer, rich, pyroute2 and python-iptables costs tens of
    milliseconds for nothing; exit handlers still run and output is flushed first.
    """
    code = main()
    import atexit

    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):
            stream.flush()
    os._exit(code)


if __name__ == "__main__":
    console()
