#!/usr/bin/env bash
# Runs the whole test suite on the engines users run: Apache Kafka (one node, with a
# plaintext and a SASL_SSL listener), Apache Cassandra as the CQL node, and Apicurio Registry,
# each started once for the run from its Maven Central jars (infra/engines/) and stopped at
# the end. Then the pipeline's own tests again on Tansu, the broker of `herald dev`.
# Arguments go to both `cargo nextest run`s (e.g. a test name filter).
set -euo pipefail
cd "$(dirname "$0")/.."
infra/install-tansu.sh
# The manifest tests render infra/k8s as kubectl apply -k does.
infra/install-kustomize.sh
if ! cargo nextest --version >/dev/null 2>&1; then
  cargo install cargo-nextest --locked
fi
# Build first: the engines need not idle through a compilation.
cargo nextest run --workspace --locked --no-run
# Confluent's Python client judges Herald's Avro.
HERALD_TEST_PYTHON=$(infra/python/venv.sh)
export HERALD_TEST_PYTHON

engines=$(mktemp -d "${TMPDIR:-/tmp}/herald-engines.XXXXXX")
trap 'infra/engines/down.sh "$engines"; rm -rf "$engines"' EXIT
infra/engines/up.sh "$engines" --owner $$
set -a
# shellcheck source=/dev/null
. "$engines/env"
set +a
# A test whose engine is missing fails instead of skipping.
export HERALD_REQUIRE_ENGINES=1

status=0
echo "== the suite on Apache Kafka, Cassandra and Apicurio"
cargo nextest run --workspace --locked --no-fail-fast "$@" || status=$?
echo "== the pipeline's, the consumer runtime's and the send API's tests on Tansu (herald dev's broker)"
# The broker faults run on a three-broker Kafka cluster of their own, whatever the leg:
# once is enough; so do the ingest stores' contract and unit tests, which need no broker.
HERALD_TEST_BROKER=tansu cargo nextest run -p herald -p herald-runtime -p herald-ingest \
  --locked --no-fail-fast \
  -E 'not test(/^broker_faults::/) and (not package(herald-ingest) or binary(api))' "$@" ||
  status=$?
exit "$status"
