#!/usr/bin/env bash
# Runs the whole test suite. The integration tests start their own Tansu broker, schema
# registry and SMTP server on free loopback ports, so nothing else needs to run.
set -euo pipefail
cd "$(dirname "$0")/.."
infra/install-tansu.sh
if ! cargo nextest --version >/dev/null 2>&1; then
  cargo install cargo-nextest --locked
fi
exec cargo nextest run --workspace --locked --no-fail-fast "$@"
