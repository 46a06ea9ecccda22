#!/bin/sh
# Build the local, offline images netns-vault's Docker tests and examples use:
#   netns-vault/holder:<version>   FROM scratch + a generated do-nothing static binary
#   netns-vault/busybox:local      `docker import` of a rootfs around the host's static busybox
#   netns-vault/gateway:<version>  only with `gateway`: the host's python3, netns-vault,
#                                  wireguard-go and iptables-legacy (netns_vault/docker/gateway_image.py)
# Needs a running engine (scripts/start-dockerd.sh) and busybox-static. Never pulls.
# Usage: scripts/make-base-image.sh [holder|base|all|gateway]   (default: all)
set -eu
cd "$(dirname "$0")/.."
PY=${PYTHON:-}
if [ -z "$PY" ]; then
    if [ -x .venv/bin/python ]; then PY=.venv/bin/python; else PY=python3; fi
fi
exec "$PY" -m netns_vault.docker.build_images "${1:-all}"
