#!/usr/bin/env bash
# Quick start, part 2: install everything (Docker included), start dockerd, and run the tests.
set -euo pipefail
cd "$(dirname "$0")"
scripts/setup.sh --tests
# wireguard-go and the gateway image need the TUN device node (absent in some containers/VMs).
test -c /dev/net/tun || { mkdir -p /dev/net && mknod /dev/net/tun c 10 200; }
scripts/start-dockerd.sh
scripts/make-base-image.sh
.venv/bin/ruff check .
.venv/bin/mypy netns_vault
exec .venv/bin/pytest -ra "$@"
