"""`vault run`: its arguments parsed by hand, without typer, rich or pyroute2 (it is the hot
path, and it ends in exec). Both the console script (cli.entry) and the typer app's `run`
command (cli.app) come here."""

from __future__ import annotations

import os

USAGE_RUN = ("usage: vault run [-n NAME] [--ephemeral --config F] [--user USER] "
             "[--dbus filtered|none|host] [--system-bus] [--hide PATH]... [--privileged] "
             "-- CMD [ARGS...]")

RUN_HELP = """Runs CMD inside vault NAME as the invoking (sudo) user; -n may be left out when exactly
one vault is up. The program runs confined (see the README, "Confinement"):
  --dbus filtered|none|host  its session bus: a filtered proxy (default), none, or the host's
                             (host warns: programs outside could open URLs for it)
  --dbus-own NAME            let it own this D-Bus name through the proxy (repeatable)
  --system-bus               let it see the system bus (hidden by default)
  --hide PATH                an empty tmpfs (or /dev/null) over PATH for it (repeatable)
  --privileged               keep capabilities, no no_new_privs, no seccomp (warns)
  --ephemeral --config F     a throwaway vault from config F (named -n NAME, or a random
                             e<10 hex>): up before CMD starts, down when it exits; `vault` exits
                             as CMD did. If `vault` itself is killed, `vault down --stale` (and
                             the next `vault run --ephemeral`) takes the vault down"""

_RUN_VALUE_OPTS = {"-n": "name", "--name": "name", "-u": "user", "--user": "user",
                   "--dbus": "dbus", "--dbus-own": "dbus_own", "--hide": "hide",
                   "--config": "config", "-c": "config"}
_RUN_LISTS = ("dbus_own", "hide")
_RUN_FLAGS = {"--privileged": "privileged", "--system-bus": "system_bus",
              "--ephemeral": "ephemeral"}


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
    ephemeral, config = opts.pop("ephemeral", False), opts.pop("config", None)
    if ephemeral != (config is not None):
        raise UsageError(f"--ephemeral and --config go together; {USAGE_RUN}")
    if ephemeral:
        from ..vault.ephemeral import run_ephemeral

        name = opts.pop("name", None)

        def launch(vault_name: str) -> None:
            launcher.run(launcher.RunRequest(argv=argv, name=vault_name, **opts))

        return run_ephemeral(config, launch, name=name)
    try:
        launcher.run(launcher.RunRequest(argv=argv, **opts))
    except (VaultError, OSError, KeyboardInterrupt):
        raise
    except Exception as exc:  # whatever it is, `vault run` says it in one line
        raise SystemFailure(f"vault run: {type(exc).__name__}: {exc}") from exc
    return 0  # not reached: run() execs or raises
