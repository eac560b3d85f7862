#!/usr/bin/env bash
# The local GCP Compute firewall API and Azure ARM NSG API on 127.0.0.1: perimeter's own emulator (the workspace crate
# localstack/emulator, binary `local-cloud`), built with cargo on first use.
#
#   localstack/local-cloud.sh start   # build if needed, start, wait until ready, print the URL
#   localstack/local-cloud.sh stop    # stop the emulator this script started (pid file)
#   localstack/local-cloud.sh reset   # forget all emulated state, faults and call counters
#   localstack/local-cloud.sh status  # exit 0 when running and ready
#   localstack/local-cloud.sh env     # print the variables that point perimeter at it
#
# Settings (environment): LOCAL_CLOUD_PORT (default 5060), PERIMETER_STATE_DIR (default
# localstack/.state: pid file, log). Only 127.0.0.1 is ever bound.
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/.." && pwd)"
state="${PERIMETER_STATE_DIR:-$here/.state}"
port="${LOCAL_CLOUD_PORT:-5060}"
pidfile="$state/local-cloud-$port.pid"
log="$state/local-cloud-$port.log"
url="http://127.0.0.1:$port"
mkdir -p "$state"

ready() { curl -fsS -o /dev/null "$url/_emulator/health" 2>/dev/null; }
running() { [ -f "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null; }

binary() {
  local target="${CARGO_TARGET_DIR:-$root/target}"
  (cd "$root" && cargo build -q -p perimeter-local-cloud --bin local-cloud) >&2
  echo "$target/debug/local-cloud"
}

start() {
  exec 9>"$state/local-cloud-$port.lock"
  flock 9
  if running && ready; then echo "$url"; return; fi
  if ready; then
    echo "port $port already answers like local-cloud but was not started by this script; set LOCAL_CLOUD_PORT" >&2
    exit 1
  fi
  local exe; exe="$(binary)"
  # 9>&-: the server must not inherit (and so hold forever) the start lock.
  nohup "$exe" --port "$port" >"$log" 2>&1 9>&- &
  echo $! >"$pidfile"
  for _ in $(seq 1 100); do
    if ready; then echo "$url"; return; fi
    if ! running; then echo "local-cloud exited; see $log" >&2; tail -20 "$log" >&2; exit 1; fi
    sleep 0.05
  done
  echo "local-cloud did not become ready in 5 s; see $log" >&2
  exit 1
}

stop() {
  if ! running; then rm -f "$pidfile"; return; fi
  kill "$(cat "$pidfile")" 2>/dev/null || true
  rm -f "$pidfile"
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  reset) curl -fsS -X POST "$url/_emulator/reset" >/dev/null ;;
  status) running && ready ;;
  env)
    echo "export PERIMETER_GCP_ENDPOINT=$url"
    echo "export PERIMETER_GCP_CREDENTIALS=anonymous"
    echo "export PERIMETER_AZURE_ENDPOINT=$url"
    echo "export PERIMETER_AZURE_TOKEN=local-cloud-token"
    ;;
  *) echo "usage: $0 start|stop|reset|status|env" >&2; exit 2 ;;
esac
