#!/usr/bin/env bash
# Several replicas of the app behind HAProxy: sticky sessions, websocket upgrade, health checks, a status page.
#
#   bash scripts/serve.sh --replicas 3 [--port 8500]      # one machine: 3 replicas + the balancer on :8500
#   bash scripts/serve.sh --replicas 2 --no-balancer --replica-address 0.0.0.0   # a replica machine
#   bash scripts/serve.sh --upstreams a=10.0.0.11:8601,b=10.0.0.12:8601 --bind 0.0.0.0 --port 80  # the balancer
#
# Options:
#   --replicas N            replicas to start here (default 2), on ports --replica-port, +1, … (default 8601)
#   --replica-address ADDR  where replicas listen (default 127.0.0.1; 0.0.0.0 for a balancer on another machine)
#   --name-prefix P         replicas are named P1, P2, … (default r; one prefix per machine keeps names distinct)
#   --port P, --bind ADDR   where the balancer listens (default 127.0.0.1:8500)
#   --upstreams LIST        name=host:port,… : balance these replicas instead of starting local ones
#   --no-balancer           start only the replicas
#   --stats-auth USER:PASS  password for the balancer's status page (/haproxy)
#   --client-conns N        open sessions (tabs of the app, one websocket each) per client address (default 16);
#                           past it a short page says why (429); the page's files are not counted
#   --client-rate N         new sessions per client address and minute (default 60); past it: a 429 page
#   --run-dir DIR           generated haproxy.cfg and the logs (default: a new folder under /tmp)
#   --no-restart            a replica that exits stays down (default: restarted after 2 s)
#   --no-setup              skip scripts/setup.sh (the caller set up .venv/ and HAProxy already)
#   -- ARGS                 passed to every `streamlit run` (e.g. -- --server.maxMessageSize 400)
# Every ATTN_EXPLORER_* setting in this environment (and .streamlit/secrets.toml) reaches every local replica.
# Local replicas on a loopback address behind this balancer trust its X-Forwarded-For (ATTN_EXPLORER_TRUST_FORWARDED
# =1, unless set): the app's per-visitor caps then apply per client address, not per tab.
# Ctrl-C or TERM stops the balancer and every replica.
set -euo pipefail
cd "$(dirname "$0")/.."

replicas=2 replica_port=8601 replica_address=127.0.0.1 name_prefix=r port=8500 bind=127.0.0.1
upstreams="" balancer=1 stats_auth="" client_conns=16 client_rate=60 run_dir="" restart=1 setup=1 streamlit_args=()
while [ $# -gt 0 ]; do
  case "$1" in
    --replicas) replicas=$2; shift 2 ;;
    --replica-port) replica_port=$2; shift 2 ;;
    --replica-address) replica_address=$2; shift 2 ;;
    --name-prefix) name_prefix=$2; shift 2 ;;
    --port) port=$2; shift 2 ;;
    --bind) bind=$2; shift 2 ;;
    --upstreams) upstreams=$2; replicas=0; shift 2 ;;
    --no-balancer) balancer=0; shift ;;
    --stats-auth) stats_auth=$2; shift 2 ;;
    --client-conns) client_conns=$2; shift 2 ;;
    --client-rate) client_rate=$2; shift 2 ;;
    --run-dir) run_dir=$2; shift 2 ;;
    --no-restart) restart=0; shift ;;
    --no-setup) setup=0; shift ;;
    --) shift; streamlit_args=("$@"); break ;;
    -h|--help) awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; exit 0 ;;
    *) echo "serve.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
done
[[ "$replicas" =~ ^[0-9]+$ ]] || { echo "serve.sh: --replicas needs a number" >&2; exit 2; }
[ "$replicas" -gt 0 ] || [ -n "$upstreams" ] || { echo "serve.sh: nothing to serve" >&2; exit 2; }

if [ $setup = 1 ]; then bash scripts/setup.sh --serve; fi
py=.venv/bin/python
haproxy_bin=$(command -v haproxy || echo /usr/sbin/haproxy)
if [ $balancer = 1 ] && [ ! -x "$haproxy_bin" ]; then
  echo "serve.sh: HAProxy is missing: bash scripts/setup.sh --serve installs Debian's haproxy" >&2; exit 1
fi
run_dir=${run_dir:-$(mktemp -d "${TMPDIR:-/tmp}/attention-explorer-serve.XXXXXX")}
mkdir -p "$run_dir"

pids=()
stop() {
  trap - INT TERM EXIT
  echo "[serve] stopping" >&2
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
}
trap 'stop; exit 130' INT
trap 'stop; exit 143' TERM
trap stop EXIT

# One replica, restarted when it exits unless we are stopping: `streamlit run replica.py` is app.py plus its
# status route /replica/status (cluster/status.py).
run_replica() {
  local name=$1 replica_port=$2 log="$run_dir/replica-$1.log" child=""
  trap '[ -n "$child" ] && kill -TERM "$child" 2>/dev/null; wait "$child" 2>/dev/null; exit 0' TERM INT
  while :; do
    ATTN_EXPLORER_REPLICA=$name TOKENIZERS_PARALLELISM=false \
      "$py" -m streamlit run replica.py --server.headless true --server.address "$replica_address" \
      --server.port "$replica_port" --browser.gatherUsageStats false --server.fileWatcherType none \
      ${streamlit_args[@]+"${streamlit_args[@]}"} >>"$log" 2>&1 &
    child=$!
    local status=0
    wait "$child" || status=$?
    [ $restart = 1 ] || { echo "[serve] replica $name exited ($status)" >&2; exit 0; }
    echo "[serve] replica $name exited ($status); restarting in 2 s (log: $log)" >&2
    sleep 2 & child=$!
    wait "$child" || true
  done
}

# Replicas listen on a loopback address but serve visitors through the balancer: no local folders unless asked for.
export ATTN_EXPLORER_ALLOW_LOCAL_FOLDERS="${ATTN_EXPLORER_ALLOW_LOCAL_FOLDERS:-0}"
# Behind this balancer, on loopback, only the balancer (and this machine's users) reach the replicas: the client's
# address it appends to X-Forwarded-For is the visitor. Replicas listening on other addresses trust no header
# unless the operator says so.
if [ $balancer = 1 ] && [[ "$replica_address" =~ ^(127\.|localhost$|::1$) ]]; then
  export ATTN_EXPLORER_TRUST_FORWARDED="${ATTN_EXPLORER_TRUST_FORWARDED:-1}"
fi
settings=$(env | grep -o '^ATTN_EXPLORER_[A-Z_]*' | sort | paste -sd ' ' || true)
upstream_list=()
for ((i = 0; i < replicas; i++)); do
  name="$name_prefix$((i + 1))" p=$((replica_port + i))
  run_replica "$name" "$p" &
  pids+=($!)
  host=$replica_address; [ "$host" = 0.0.0.0 ] && host=127.0.0.1
  upstream_list+=("$name=$host:$p")
  echo "[serve] replica $name on $replica_address:$p (settings: ${settings:-defaults}; log: $run_dir/replica-$name.log)"
done
[ -n "$upstreams" ] && IFS=, read -r -a upstream_list <<<"$upstreams"

if [ $balancer = 1 ]; then
  config="$run_dir/haproxy.cfg"
  "$py" -m cluster.haproxy --port "$port" --bind "$bind" ${stats_auth:+--stats-auth "$stats_auth"} \
    --client-conns "$client_conns" --client-rate "$client_rate" "${upstream_list[@]}" >"$config"
  "$haproxy_bin" -c -q -f "$config"
  "$haproxy_bin" -db -f "$config" >>"$run_dir/haproxy.log" 2>&1 &
  haproxy_pid=$!
  pids+=($haproxy_pid)
  url="http://$([ "$bind" = 0.0.0.0 ] && echo 127.0.0.1 || echo "$bind"):$port"
  echo "[serve] balancer on $bind:$port ($config; log: $run_dir/haproxy.log)"
  echo "[serve] status: $url/haproxy (balancer), $url/replica/<name>/status (one replica)," \
       "$py -m cluster.report $url (all)"
  "$py" -m cluster.report --wait 300 ${stats_auth:+--stats-auth "$stats_auth"} "$url" &
  pids+=($!)  # waited for in the background, so that Ctrl-C or TERM stops everything at once
  wait $! || true
  echo "[serve] open $url — Ctrl-C stops everything"
  status=0; wait "$haproxy_pid" || status=$?
  echo "[serve] the balancer exited ($status): see $run_dir/haproxy.log" >&2
  exit 1
fi
wait
