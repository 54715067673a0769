#!/usr/bin/env bash
# Set up .venv/ if needed and start the app on the embedded default model, listening on localhost only: the person
# at this machine may then load local folders too. Serving others: --server.address 0.0.0.0 (a later option wins)
# turns local folders off by default (README, "Running it for others").
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/python -m streamlit run app.py --server.address localhost "$@"
