#!/usr/bin/env bash
# A local AWS EC2 API on 127.0.0.1, without Docker: moto server (LocalStack's EC2 engine) in a
# Python virtualenv.
#
#   localstack/moto.sh start   # install if needed, start, wait until ready, print the endpoint
#   localstack/moto.sh stop    # stop the server this script started (pid file)
#   localstack/moto.sh reset   # wipe all emulated state
#   localstack/moto.sh status  # exit 0 when running and ready
#   localstack/moto.sh env     # print the environment variables that point an SDK at it
#
# Settings (environment): MOTO_PORT (default 5055), PERIMETER_STATE_DIR (default
# localstack/.state: venv, pid file, log). Only 127.0.0.1 is ever bound.
set -euo pipefail

MOTO_VERSION="5.2.5"
here="$(cd "$(dirname "$0")" && pwd)"
state="${PERIMETER_STATE_DIR:-$here/.state}"
port="${MOTO_PORT:-5055}"
venv="$state/moto-venv"
pidfile="$state/moto-$port.pid"
log="$state/moto-$port.log"
url="http://127.0.0.1:$port"

mkdir -p "$state"

installed() { [ -x "$venv/bin/moto_server" ] && "$venv/bin/python" -c "import moto, sys; sys.exit(moto.__version__ != '$MOTO_VERSION')" 2>/dev/null; }

install() {
  if installed; then return; fi
  echo "installing moto[server]==$MOTO_VERSION into $venv" >&2
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check "moto[server]==$MOTO_VERSION"
}

ready() { curl -fsS -o /dev/null "$url/moto-api/" 2>/dev/null; }

running() { [ -f "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null; }

start() {
  # Several test binaries may start the emulator at once: one at a time installs and starts.
  exec 9>"$state/start-$port.lock"
  flock 9
  if running && ready; then echo "$url"; return; fi
  install
  if ready; then
    echo "port $port already answers like moto but was not started by this script; set MOTO_PORT" >&2
    exit 1
  fi
  # 9>&-: the server must not inherit (and so hold forever) the start lock.
  nohup "$venv/bin/moto_server" -H 127.0.0.1 -p "$port" >"$log" 2>&1 9>&- &
  echo $! >"$pidfile"
  for _ in $(seq 1 100); do
    if ready; then echo "$url"; return; fi
    if ! running; then echo "moto server exited; see $log" >&2; tail -20 "$log" >&2; exit 1; fi
    sleep 0.1
  done
  echo "moto server did not become ready in 10 s; see $log" >&2
  exit 1
}

stop() {
  if ! running; then rm -f "$pidfile"; return; fi
  local pid; pid="$(cat "$pidfile")"
  kill "$pid" 2>/dev/null || true
  for _ in $(seq 1 50); do
    kill -0 "$pid" 2>/dev/null || { rm -f "$pidfile"; return; }
    sleep 0.1
  done
  kill -9 "$pid" 2>/dev/null || true
  rm -f "$pidfile"
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  reset) curl -fsS -X POST "$url/moto-api/reset" >/dev/null ;;
  status) running && ready ;;
  env)
    echo "export AWS_ENDPOINT_URL=$url"
    echo "export AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test AWS_REGION=us-east-1"
    echo "export AWS_EC2_METADATA_DISABLED=true"
    ;;
  *) echo "usage: $0 start|stop|reset|status|env" >&2; exit 2 ;;
esac
