#!/usr/bin/env bash
# Installs the Tansu broker (a Kafka-protocol broker) that `herald dev` and the tests run,
# unless it is already there. Built from crates.io with storage engines enabled: the crate's
# default features have none. Takes about 10 minutes on 2 cores, once.
set -euo pipefail

TANSU_VERSION=0.6.0

have_tansu() {
  local bin
  for bin in "${HERALD_TANSU_BIN:-}" "$(command -v tansu 2>/dev/null || true)" "$HOME/.cargo/bin/tansu"; do
    if [ -n "$bin" ] && [ -x "$bin" ] && "$bin" --version 2>/dev/null | grep -q "$TANSU_VERSION"; then
      echo "$bin"
      return 0
    fi
  done
  return 1
}

if bin=$(have_tansu); then
  echo "tansu $TANSU_VERSION: $bin"
  exit 0
fi

echo "installing tansu $TANSU_VERSION (about 10 minutes, once)..."
install_args=(install tansu --version "$TANSU_VERSION" --locked --features dynostore,libsql)
# Keep Tansu's build out of the project's target directory, but reuse a persistent one if CI gives it.
if [ -n "${CARGO_TARGET_DIR:-}" ]; then
  install_args+=(--target-dir "$CARGO_TARGET_DIR/tansu-install")
fi
cargo "${install_args[@]}"
have_tansu
