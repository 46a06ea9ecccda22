"""`python -m netns_vault.docker.build_images [holder|base|all|gateway]`: build the offline images.

Its own module so that `images` (holder and base) and `gateway_image` (which builds on `images`)
do not import each other.
"""

from __future__ import annotations

import logging
import os
import sys

from ..errors import SystemFailure
from .images import ensure_base_image, ensure_holder_image


def main(argv: list[str]) -> int:
    from .engine import connect

    what = argv[0] if argv else "all"
    if what not in ("holder", "base", "all", "gateway"):
        print("usage: python -m netns_vault.docker.build_images [holder|base|all|gateway]",
              file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.DEBUG if os.environ.get("VAULT_DEBUG") else logging.INFO)
    try:
        client = connect()
        if what in ("holder", "all"):
            print(ensure_holder_image(client))
        if what in ("base", "all"):
            print(ensure_base_image(client))
        if what == "gateway":
            from .gateway_image import ensure_gateway_image

            print(ensure_gateway_image(client))
    except SystemFailure as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
