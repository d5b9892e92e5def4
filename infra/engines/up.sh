#!/usr/bin/env bash
# Starts the engines the test suite runs on, once for a whole run, side by side:
# Apache Kafka (one node, with a plaintext and a SASL_SSL listener), Apache Cassandra (the CQL
# node) and Apicurio Registry. Writes every address to DIR/env (see each script), for
# `set -a; . DIR/env`. With --owner PID they stop when that process ends.
#
#   infra/engines/up.sh DIR [--owner PID]
#   infra/engines/down.sh DIR
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
[ $# -ge 1 ] || { sed -n '7,8p' "$0" | sed 's/^# //' >&2; exit 2; }
dir=$1
shift
mkdir -p "$dir"
dir=$(cd "$dir" && pwd)

pids=()
"$here/kafka.sh" start "$dir/kafka" --sasl-ssl "$@" >/dev/null & pids+=($!)
"$here/cassandra.sh" start "$dir/cassandra" "$@" >/dev/null & pids+=($!)
"$here/apicurio.sh" start "$dir/apicurio" "$@" >/dev/null & pids+=($!)
failed=0
for pid in "${pids[@]}"; do wait "$pid" || failed=1; done
if [ "$failed" -ne 0 ]; then
  "$here/down.sh" "$dir"
  echo "up.sh: an engine did not start (its log is under $dir)" >&2
  exit 1
fi
cat "$dir/kafka/env" "$dir/cassandra/env" "$dir/apicurio/env" >"$dir/env"
