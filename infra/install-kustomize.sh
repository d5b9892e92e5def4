#!/usr/bin/env bash
# Installs kustomize, which the manifest tests (herald/tests/e2e/infra/kubernetes.rs) render
# infra/k8s with, from the Go module proxy into ~/.cache/herald/bin, unless it is there.
# Needs Go (1.24 or newer).
set -euo pipefail

KUSTOMIZE_VERSION=v5.8.0
BIN="$HOME/.cache/herald/bin"

if [ -x "$BIN/kustomize" ] && "$BIN/kustomize" version 2>/dev/null | grep -qx "$KUSTOMIZE_VERSION"; then
  echo "kustomize $KUSTOMIZE_VERSION: $BIN/kustomize"
  exit 0
fi
mkdir -p "$BIN"
GOBIN="$BIN" GOFLAGS=-mod=mod go install "sigs.k8s.io/kustomize/kustomize/v5@$KUSTOMIZE_VERSION"
echo "kustomize $KUSTOMIZE_VERSION: $BIN/kustomize"
