"""The `vault` console script.

`vault run` is handled here without importing typer, rich or pyroute2: it is the hot path, and
it ends in exec. Every other command goes to the typer app. Errors become exit codes in exactly
one place: `report()`.
"""

from __future__ import annotations

import os
import signal
import sys

# Ctrl-C is one line at every moment of the console script's life, never a traceback: before
# `main` is under way (imports) it ends the process quietly, since nothing was done yet; while
# `main` runs it is a KeyboardInterrupt, which the core rolls back and `report` turns into a line;
# once an answer is being reported, it is ignored. Installed first thing, before heavy imports.
_phase = "starting"


def _on_sigint(signum, frame) -> None:
    if _phase == "running":
        raise KeyboardInterrupt
    if _phase == "starting":
        os.write(2, b"vault: interrupted; rolled back (nothing was done yet)\n")
        os._exit(130)
    # "done": the command has finished; let its answer out


def install_sigint_handler() -> None:
    if signal.getsignal(signal.SIGINT) is not signal.SIG_IGN:  # e.g. a background job: keep it
        signal.signal(signal.SIGINT, _on_sigint)


if os.path.basename(sys.argv[0] if sys.argv else "") == "vault":  # the console script
    install_sigint_handler()

import contextlib  # noqa: E402

EXIT_INTERRUPTED = 130  # as errors.EXIT_INTERRUPTED (not imported here: startup stays light)
USAGE_RUN = ("usage: vault run [-n NAME] [--user USER] [--dbus filtered|none|host] "
             "[--system-bus] [--hide PATH]... [--privileged] -- CMD [ARGS...]")


def report(exc: BaseException) -> int:
    """The one boundary where errors become a line on stderr and an exit code."""
    from ..errors import EXIT_INTERRUPTED, EXIT_SYSTEM, EXIT_USAGE, VaultError

    if isinstance(exc, VaultError):
        _say(str(exc))
        return exc.exit_code
    if isinstance(exc, KeyboardInterrupt):
        _say("interrupted; rolled back")
        return EXIT_INTERRUPTED
    if isinstance(exc, PermissionError):
        _say(f"permission denied: {exc.filename or exc} (run as root or with sudo)")
        return EXIT_SYSTEM
    if isinstance(exc, OSError):
        _say(f"{exc.strerror or exc}")
        return EXIT_SYSTEM
    # click's exceptions (typer vendors its own copy of click, so match by class name)
    kinds = {cls.__name__ for cls in type(exc).__mro__}
    if "Exit" in kinds:
        return int(getattr(exc, "exit_code", 0))
    if "Abort" in kinds:
        _say("interrupted; rolled back")
        return EXIT_INTERRUPTED
    if "ClickException" in kinds:
        message = exc.format_message() if hasattr(exc, "format_message") else str(exc)
        _say(f"{message} (see vault --help)")
        return EXIT_USAGE
    raise exc


def _say(message: str) -> None:
    """One line on stderr, whatever the message holds (a path with a newline or an ESC)."""
    from ..text import one_line

    print(f"vault: {one_line(message)}", file=sys.stderr)


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
    global _phase
    args = list(sys.argv[1:] if argv is None else argv)
    try:
        _phase = "running"
        if args and args[0] == "run":
            return run_main(args[1:])
        from .app import app, mount_subapps

        mount_subapps(args)
        rv = app(args=args, prog_name="vault", standalone_mode=False)
        if rv == EXIT_INTERRUPTED:  # typer's answer to a KeyboardInterrupt, silently
            return report(KeyboardInterrupt())
        return rv if isinstance(rv, int) else 0
    except SystemExit as exc:
        _phase = "done"
        return exc.code if isinstance(exc.code, int) else 0
    except BaseException as exc:
        _phase = "done"
        return report(exc)
    finally:
        _phase = "done"


def console() -> None:
    """The console script: main(), then exit without the interpreter's teardown.

    Tearing down a process that imported typer, rich, pyroute2 and python-iptables costs tens of
    milliseconds for nothing; exit handlers still run and output is flushed first.
    """
    install_sigint_handler()
    code = main()
    import atexit

    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):
            stream.flush()
    os._exit(code)


if __name__ == "__main__":
    console()
