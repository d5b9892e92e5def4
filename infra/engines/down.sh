#!/usr/bin/env bash
# Stops what infra/engines/up.sh DIR started and waits until every process is gone.
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
[ $# -eq 1 ] || { echo "usage: infra/engines/down.sh DIR" >&2; exit 2; }
"$here/kafka.sh" stop "$1/kafka" &
"$here/cassandra.sh" stop "$1/cassandra" &
"$here/apicurio.sh" stop "$1/apicurio" &
wait
