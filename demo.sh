#!/usr/bin/env bash
# Quick start, part 1: install everything and run `vault demo` (a closed world in namespaces:
# it touches neither your network nor your firewall, and leaves nothing behind).
set -euo pipefail
cd "$(dirname "$0")"
scripts/setup.sh
exec .venv/bin/vault demo "$@"
