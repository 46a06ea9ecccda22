"""The `--confirm-within` watcher process itself (timer.py starts and stops it): waits until its
deadline, then puts the earlier rules back unless `vault lockdown confirm` came first.

    python -m netns_vault.lockdown.watch --state-dir D --token T --deadline UNIX [--netns-fd N]
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import time

from ..errors import VaultError
from .core import expire, pending_deadline
from .timer import MODULE

log = logging.getLogger(__name__)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog=MODULE)
    parser.add_argument("--state-dir", required=True)
    parser.add_argument("--token", required=True)
    parser.add_argument("--deadline", type=float, required=True)
    parser.add_argument("--netns-fd", type=int)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG,
                        format="%(asctime)s timer[%(process)d] %(levelname)s %(message)s")
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    netns = f"/proc/self/fd/{args.netns_fd}" if args.netns_fd is not None else None

    deadline: float | None = args.deadline
    log.info("waiting until %s for `vault lockdown confirm`",
             time.strftime("%H:%M:%S", time.localtime(deadline)))
    while deadline is not None and (left := deadline - time.time()) > 0:
        time.sleep(min(left, 1.0))
        # apply moves the deadline once the walls are up, so the full time counts from then
        deadline = pending_deadline(args.token, state_dir=args.state_dir)
    if deadline is None:
        log.info("nothing to do: confirmed, reverted or replaced meanwhile")
        return 0
    try:
        if expire(args.token, netns=netns, state_dir=args.state_dir):
            log.warning("not confirmed in time: the earlier rules are back")
        else:
            log.info("nothing to do: confirmed, reverted or replaced meanwhile")
    except VaultError as exc:
        log.error("could not put the earlier rules back: %s", exc)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
