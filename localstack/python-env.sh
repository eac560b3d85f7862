#!/usr/bin/env bash
# The Python virtualenv with the official cloud clients that the emulator's conformance tests
# drive (localstack/conformance/requirements.txt). Prints the venv's python on stdout.
#
#   localstack/python-env.sh          # install if needed (idempotent), print the interpreter
#
# Settings: PERIMETER_STATE_DIR (default localstack/.state).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
state="${PERIMETER_STATE_DIR:-$here/.state}"
venv="$state/conformance-venv"
requirements="$here/conformance/requirements.txt"
mkdir -p "$state"

# Several test binaries may ask at once: one installs, the others wait for it.
exec 9>"$state/conformance-venv.lock"
flock 9
stamp="$venv/.requirements"
if [ -x "$venv/bin/python" ] && [ -f "$stamp" ] && cmp -s "$stamp" "$requirements"; then
  echo "$venv/bin/python"
  exit 0
fi
echo "installing the official cloud clients into $venv" >&2
rm -rf "$venv"
python3 -m venv "$venv"
"$venv/bin/pip" install --quiet --disable-pip-version-check -r "$requirements" >&2
cp "$requirements" "$stamp"
echo "$venv/bin/python"
