#!/usr/bin/env bash
# Set up .venv/ if needed and start the app on the embedded default model, listening on localhost only: the person
# at this machine may then load local folders too. Serving others: --server.address 0.0.0.0 (a later option wins)
# turns local folders off by default (README, "Running it for others"). replica.py is app.py with a warm start: the
# default model loads as the server starts, so the first visitor does not wait for it.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/python -m streamlit run replica.py --server.address localhost "$@"
