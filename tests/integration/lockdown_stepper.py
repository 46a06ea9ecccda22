"""Run one `vault lockdown` command through the real CLI code, with a fault aimed at one step.

    python lockdown_stepper.py ACTION STEP -- lockdown apply --config C --state-dir D

ACTION is fail (raise SystemFailure), sigint or sigkill (the process signals itself) right after
step STEP of `apply` (lockdown.APPLY_STEPS). The fault comes in through the core API's step hook
(`apply(..., on_step=...)`): no environment variable makes the root tool misbehave.
Tests run this under `nsenter --net=` into the world's host, so the command acts on "the host
namespace" exactly as on a real machine (no --netns: the walls go up in this very process).
"""

from __future__ import annotations

import functools
import sys

from stepper import hook  # the same step hook as `vault up`'s (this directory is sys.path[0])


def main(argv: list[str]) -> int:
    sep = argv.index("--")
    (action, step), args = argv[:sep], argv[sep + 1:]
    from netns_vault import lockdown
    from netns_vault.cli import entry

    lockdown.apply = functools.partial(lockdown.apply, on_step=hook(action, step, sigint_grace=5))  # type: ignore[assignment]
    return entry.main(args)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
