#!/usr/bin/env bash
# A Python virtual environment with infra/python/requirements.txt installed, made once and
# kept under ~/.cache/herald (named after the requirements' hash); prints its python.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
requirements="$here/requirements.txt"
key=$(sha256sum "$requirements" | cut -c1-12)
venv="${HERALD_PYTHON_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/herald}/python-$key"
if [ ! -f "$venv/.complete" ]; then
  rm -rf "$venv"
  python3 -m venv "$venv" >&2
  "$venv/bin/pip" install -q --disable-pip-version-check -r "$requirements" >&2
  touch "$venv/.complete"
fi
echo "$venv/bin/python"
