#!/usr/bin/env bash
# Quick start, part 2: install everything (Docker included), start dockerd, and run the tests.
set -euo pipefail
cd "$(dirname "$0")"
scripts/setup.sh --tests
scripts/start-dockerd.sh
scripts/make-base-image.sh
.venv/bin/ruff check .
exec .venv/bin/pytest -ra "$@"
