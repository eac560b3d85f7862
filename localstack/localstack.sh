#!/usr/bin/env bash
# LocalStack's EC2 on 127.0.0.1, without Docker: localstack-core's runtime in a Python 3.12
# virtualenv (pinned in localstack/localstack-runtime/requirements.txt, with the constraints
# this version needs).
#
#   localstack/localstack.sh start   # install if needed, start, wait until EC2 runs, print the endpoint
#   localstack/localstack.sh stop    # SIGTERM, then SIGKILL after 10 s (a run once hung after closing its port)
#   localstack/localstack.sh reset   # restart: this version has no state-reset endpoint (404)
#   localstack/localstack.sh status  # exit 0 when running and EC2 is ready
#   localstack/localstack.sh env     # print the environment variables that point an SDK at it
#
# Settings (environment): LOCALSTACK_PORT (default 4566), PERIMETER_STATE_DIR (default
# localstack/.state: venv, pid file, log, LocalStack's own dirs), PYTHON312 (the interpreter
# to build the venv with; default: python3.12 on PATH, else pyenv's 3.12). Only 127.0.0.1 is ever bound.
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
state="${PERIMETER_STATE_DIR:-$here/.state}"
port="${LOCALSTACK_PORT:-4566}"
requirements="$here/localstack-runtime/requirements.txt"
venv="$state/localstack-venv"
run="$state/localstack-$port"
pidfile="$run.pid"
log="$run.log"
url="http://127.0.0.1:$port"

mkdir -p "$state"

stamp() { sha256sum "$requirements" | cut -c1-16; }
installed() { [ -x "$venv/bin/python" ] && [ "$(cat "$venv/.requirements" 2>/dev/null)" = "$(stamp)" ]; }

install() {
  if installed; then return; fi
  local python="${PYTHON312:-}"
  if [ -z "$python" ]; then
    # python3.12 on PATH if it runs (a pyenv shim may not), else pyenv's own copy.
    for candidate in "$(command -v python3.12 || true)" "${PYENV_ROOT:-$HOME/.pyenv}"/versions/3.12*/bin/python3.12; do
      if [ -n "$candidate" ] && [ -x "$candidate" ] && "$candidate" -c '' 2>/dev/null; then
        python="$candidate"
        break
      fi
    done
  fi
  if [ -z "$python" ]; then
    echo "LocalStack $(grep -m1 '^localstack-core' "$requirements") needs Python 3.12: set PYTHON312" >&2
    exit 1
  fi
  echo "installing LocalStack into $venv (about 40 s)" >&2
  rm -rf "$venv"
  "$python" -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check -r "$requirements"
  stamp >"$venv/.requirements"
}

ready() { curl -fsS "$url/_localstack/health" 2>/dev/null | grep -q '"ec2": "running"'; }

running() { [ -f "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null; }

start() {
  exec 9>"$run.lock"
  flock 9
  if running && ready; then echo "$url"; return; fi
  install
  if ready; then
    echo "port $port already answers like LocalStack but was not started by this script; set LOCALSTACK_PORT" >&2
    exit 1
  fi
  mkdir -p "$run/fs" "$run/tmp" "$run/cache"
  # hypercorn: the default gateway server ignores the host and binds 0.0.0.0.
  GATEWAY_LISTEN="127.0.0.1:$port" GATEWAY_SERVER=hypercorn SERVICES=ec2 \
    OVERRIDE_IN_DOCKER=0 EAGER_SERVICE_LOADING=1 DNS_ADDRESS=0 SKIP_SSL_CERT_DOWNLOAD=1 \
    FILESYSTEM_ROOT="$run/fs" LOCALSTACK_VOLUME_DIR="$run/fs" TMPDIR="$run/tmp" \
    CACHE_DIR="$run/cache" DISABLE_EVENTS=1 \
    nohup "$venv/bin/python" -m localstack.runtime.main >"$log" 2>&1 9>&- &
  echo $! >"$pidfile"
  for _ in $(seq 1 600); do
    if ready; then echo "$url"; return; fi
    if ! running; then echo "LocalStack exited; see $log" >&2; tail -20 "$log" >&2; exit 1; fi
    sleep 0.1
  done
  echo "LocalStack's EC2 did not become ready in 60 s; see $log" >&2
  exit 1
}

stop() {
  if ! running; then rm -f "$pidfile"; return; fi
  local pid; pid="$(cat "$pidfile")"
  kill "$pid" 2>/dev/null || true
  for _ in $(seq 1 100); do
    kill -0 "$pid" 2>/dev/null || { rm -f "$pidfile"; return; }
    sleep 0.1
  done
  kill -9 "$pid" 2>/dev/null || true
  rm -f "$pidfile"
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  reset) stop; start >/dev/null ;;
  status) running && ready ;;
  env)
    echo "export AWS_ENDPOINT_URL=$url"
    echo "export AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test AWS_REGION=us-east-1"
    echo "export AWS_EC2_METADATA_DISABLED=true"
    ;;
  *) echo "usage: $0 start|stop|reset|status|env" >&2; exit 2 ;;
esac
