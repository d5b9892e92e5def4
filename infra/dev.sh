#!/usr/bin/env bash
# Runs Herald on this machine with no external services: `herald dev`.
# Extra arguments go to `herald dev` (see `herald dev --help`).
set -euo pipefail
cd "$(dirname "$0")/.."
infra/install-tansu.sh >/dev/null
exec cargo run --release --locked --bin herald -- dev "$@"
