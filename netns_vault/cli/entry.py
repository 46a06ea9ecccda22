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

from .run import parse_run_args, run_main  # noqa: E402  (light: `vault run` is the hot path)

__all__ = ["main", "parse_run_args", "report", "run_main"]

EXIT_INTERRUPTED = 130  # as errors.EXIT_INTERRUPTED (not imported here: startup stays light)


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


def main(argv: list[str] | None = None) -> int:
    global _phase
    args = list(sys.argv[1:] if argv is None else argv)
    try:
        _phase = "running"
        if args and args[0] == "run":
            return run_main(args[1:])
        from .fast import fast_main  # `up`/`down` to a pipe: no typer, no rich

        fast = fast_main(args)
        if fast is not None:
            return fast
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
