"""The `vault-launch` console script: NAME [--] CMD [ARGS...], for users allowed by `vault allow`.

As the user it checks the allow-list (for a clear refusal) and re-executes itself with
`sudo -n`: never a password prompt, so it works without a terminal, from a menu. As root
(through sudo) it hands over to allow.launch, which decides. Standard library only: it is
the launch path of every desktop entry.
"""

from __future__ import annotations

import os
import sys


def main(args: list[str]) -> int:
    from .. import allow

    if args[:1] in (["-h"], ["--help"]):
        print(allow.USAGE)
        print("Runs CMD in vault NAME as you, without a password, if `vault allow` let you in.")
        return 0
    name, argv = allow.parse_launch_args(args)
    if os.geteuid() != 0:
        launcher = allow.precheck(name, os.getuid())
        cmd = ["sudo", "-n", "--", launcher, name, "--", *argv]
        try:
            os.execvp(cmd[0], cmd)
        except FileNotFoundError:
            from ..errors import SystemFailure

            raise SystemFailure("vault-launch needs sudo, which is not installed") from None
    allow.launch(name, argv, dict(os.environ))
    return 0  # not reached: launch() execs or raises


def console() -> None:
    from .entry import report

    try:
        code = main(sys.argv[1:])
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 0
    except BaseException as exc:
        code = report(exc)
    sys.stderr.flush()
    os._exit(code)


if __name__ == "__main__":
    console()
