#!/usr/bin/env bash
# Set up .venv/ (with test tools and Chromium) if needed and run the whole test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh --dev
.venv/bin/ruff check .
exec .venv/bin/python -m pytest "$@"
