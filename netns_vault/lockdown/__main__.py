"""`python -m netns_vault.lockdown boot --spec FILE`: what the systemd unit runs at boot.

Kept free of typer and rich: it runs before the network, on every boot.
"""

from __future__ import annotations

import argparse
import logging
import sys

from ..errors import VaultError
from .core import boot
from .state import DEFAULT_STATE_DIR


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m netns_vault.lockdown")
    sub = parser.add_subparsers(dest="command", required=True)
    p_boot = sub.add_parser("boot", help="apply the lockdown persisted by `vault lockdown enable`")
    p_boot.add_argument("--spec", required=True)
    p_boot.add_argument("--state-dir", default=DEFAULT_STATE_DIR)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="netns-vault lockdown: %(message)s")
    try:
        result = boot(args.spec, state_dir=args.state_dir)
    except VaultError as exc:
        print(f"netns-vault lockdown: {exc}", file=sys.stderr)
        return exc.exit_code
    print(f"netns-vault lockdown: in force for {result.spec.tunnel}, endpoints "
          + ", ".join(map(str, result.spec.endpoints)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
