#!/usr/bin/env bash
# Installs the Tansu broker (a Kafka-protocol broker) that `herald dev` and the tests run,
# unless it is already there. Built from crates.io with storage engines enabled (the crate's
# default features have none) and with the patches in infra/tansu/ applied to its
# tansu-broker crate (see docs/tansu.md), into ~/.cache/herald/tansu-<version>-<patches>,
# where `herald dev` and the tests look first. Takes about 10 minutes on 2 cores, once.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)

TANSU_VERSION=0.6.0
# Raised with every change to infra/tansu/: a build with other patches is another install.
PATCH_LEVEL=p1
ROOT="$HOME/.cache/herald/tansu-$TANSU_VERSION-$PATCH_LEVEL"

have_tansu() {
  local bin
  for bin in "${HERALD_TANSU_BIN:-}" "$ROOT/bin/tansu"; do
    if [ -n "$bin" ] && [ -x "$bin" ] && "$bin" --version 2>/dev/null | grep -q "$TANSU_VERSION"; then
      echo "$bin"
      return 0
    fi
  done
  return 1
}

if bin=$(have_tansu); then
  echo "tansu $TANSU_VERSION ($PATCH_LEVEL): $bin"
  exit 0
fi

echo "installing tansu $TANSU_VERSION with Herald's patches (about 10 minutes, once)..."
work=$(mktemp -d "${TMPDIR:-/tmp}/herald-tansu.XXXXXX")
trap 'rm -rf "$work"' EXIT
# The tansu-broker crate's source as cargo downloads it, then patched.
mkdir -p "$work/fetch/src"
cat >"$work/fetch/Cargo.toml" <<TOML
[package]
name = "fetch-tansu-broker"
version = "0.0.0"
edition = "2021"
publish = false
[dependencies]
tansu-broker = "=$TANSU_VERSION"
TOML
: >"$work/fetch/src/lib.rs"
(cd "$work/fetch" && cargo fetch --quiet)
source=$(ls -d "${CARGO_HOME:-$HOME/.cargo}"/registry/src/*/"tansu-broker-$TANSU_VERSION" | head -n 1)
cp -r "$source" "$work/tansu-broker"
chmod -R u+w "$work/tansu-broker"
for patch in "$here"/tansu/*.patch; do
  patch --quiet -p1 -d "$work/tansu-broker" <"$patch"
done

install_args=(install tansu --version "$TANSU_VERSION" --locked --features dynostore,libsql
  --root "$ROOT" --config "patch.crates-io.tansu-broker.path=\"$work/tansu-broker\"")
# Keep Tansu's build out of the project's target directory, but reuse a persistent one if CI gives it.
if [ -n "${CARGO_TARGET_DIR:-}" ]; then
  install_args+=(--target-dir "$CARGO_TARGET_DIR/tansu-install")
fi
cargo "${install_args[@]}"
have_tansu
