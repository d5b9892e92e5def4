#!/usr/bin/env bash
# Prints COUNT send-API request bodies, one per line, each an email to a different address,
# for `oha -Z` (a body per request from a file): fixed-rate load that, like real traffic,
# spreads over many keys instead of one user handled in order.
#
#   infra/load/bodies.sh 100000 > /tmp/bodies.txt
#   oha -z 15s -q 1000 -c 32 --no-tui -m POST -H "Authorization: Bearer $HERALD_KEY" \
#     -H 'Content-Type: application/json' -Z /tmp/bodies.txt http://127.0.0.1:8080/v1/notifications
set -euo pipefail
count=${1:-100000}
for ((i = 1; i <= count; i++)); do
  printf '{"to":[{"email":"user%d@example.com"}],"from":{"email":"noreply@example.com"},"subject":"Hello from Herald","content":[{"type":"text/plain","value":"It works."}]}\n' "$i"
done
