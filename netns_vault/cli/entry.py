"""The `vault` console script.

`vault run` is handled here without importing typer, rich or pyroute2: it is the hot path, and
it ends in exec. Every other command goes to the typer app. Errors become exit codes in exactly
one place: `report()`.
"""

from __future__ import annotations

import contextlib
import os
import sys

USAGE_RUN = ("usage: vault run [-n NAME] [--user USER] [--dbus filtered|none|host] "
             "[--system-bus] [--hide PATH]... [--privileged] -- CMD [ARGS...]")


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


RUN_HELP = """Runs CMD inside vault NAME as the invoking (sudo) user; -n may be left out when exactly
one vault is up. The program runs confined (see the README, "Confinement"):
  --dbus filtered|none|host  its session bus: a filtered proxy (default), none, or the host's
                             (host warns: programs outside could open URLs for it)
  --dbus-own NAME            let it own this D-Bus name through the proxy (repeatable)
  --system-bus               let it see the system bus (hidden by default)
  --hide PATH                an empty tmpfs (or /dev/null) over PATH for it (repeatable)
  --privileged               keep capabilities, no no_new_privs, no seccomp (warns)"""

_RUN_VALUE_OPTS = {"-n": "name", "--name": "name", "-u": "user", "--user": "user",
                   "--dbus": "dbus", "--dbus-own": "dbus_own", "--hide": "hide"}
_RUN_LISTS = ("dbus_own", "hide")
_RUN_FLAGS = {"--privileged": "privileged", "--system-bus": "system_bus"}


def parse_run_args(args: list[str]) -> tuple[dict, list[str]]:
    """[options] [--] CMD... -> (options for launcher.RunRequest, argv)."""
    from ..errors import UsageError

    opts: dict = {"dbus_own": [], "hide": []}
    i = 0
    while i < len(args):
        arg = args[i]
        if arg == "--":
            return opts, args[i + 1:]
        key, value = arg, None
        if arg.startswith("--") and "=" in arg:
            key, value = arg.split("=", 1)
        if key in _RUN_VALUE_OPTS:
            if value is None:
                if i + 1 >= len(args):
                    raise UsageError(f"{arg} needs a value; {USAGE_RUN}")
                value = args[i + 1]
                i += 1
            field = _RUN_VALUE_OPTS[key]
            if field in _RUN_LISTS:
                opts[field].append(value)
            else:
                opts[field] = value
        elif arg in _RUN_FLAGS:
            opts[_RUN_FLAGS[arg]] = True
        elif arg in ("-h", "--help"):
            print(USAGE_RUN)
            print(RUN_HELP)
            raise SystemExit(0)
        elif arg.startswith("-"):
            raise UsageError(f"unknown option {arg}; {USAGE_RUN}")
        else:
            return opts, args[i:]
        i += 1
    return opts, []


def run_main(args: list[str]) -> int:
    from .. import launcher
    from ..errors import SystemFailure, UsageError, VaultError
    from ..names import validate_name

    opts, argv = parse_run_args(args)
    if opts.get("name") is not None:
        validate_name(opts["name"])
    if not argv:
        raise UsageError(f"nothing to run; {USAGE_RUN}")
    if os.geteuid() != 0:
        cmd = launcher.sudo_argv(["run", *args])
        try:
            os.execvp(cmd[0], cmd)
        except FileNotFoundError:
            raise SystemFailure("vault run needs root and sudo is not installed") from None
    try:
        launcher.run(launcher.RunRequest(argv=argv, **opts))
    except (VaultError, OSError, KeyboardInterrupt):
        raise
    except Exception as exc:  # whatever it is, `vault run` says it in one line
        raise SystemFailure(f"vault run: {type(exc).__name__}: {exc}") from exc
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
