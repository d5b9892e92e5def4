#!/usr/bin/env bash
# Apicurio Registry 3 from Maven Central (no Docker): a real schema registry with a
# Confluent-compatible API, for the codec's and the producers' tests.
#
#   infra/engines/apicurio.sh start DIR [--owner PID]
#   infra/engines/apicurio.sh stop DIR
#   infra/engines/apicurio.sh kill DIR       SIGKILL it (a registry outage)
#   infra/engines/apicurio.sh restart DIR    start it again on the same port with its data
#
# `start` runs the registry on a free loopback port, its schemas in an H2 database in DIR
# (so that a restart keeps them, ids included), sets the global compatibility level to
# BACKWARD (as a Confluent registry's default is), and returns once its Confluent-compatible
# API answers. DIR/env then holds, for the tests:
#   HERALD_TEST_REGISTRY       the Confluent-compatible API's URL (.../apis/ccompat/v7)
# With --owner, the registry stops when that process ends.
set -euo pipefail
# shellcheck source=lib.sh
. "$(dirname "$0")/lib.sh"

# 3.0.9 is the newest line that runs on Java 17 (3.1 and later need Java 21).
APICURIO_VERSION=3.0.9

usage() {
  sed -n '5,8p' "$0" | sed 's/^# \{0,1\}//' >&2
  exit 2
}

# Starts the registry of $DIR on the port in $DIR/port and waits until it answers.
run_registry() {
  local java app port owner
  java=$(cat "$DIR/java")
  app=$(cat "$DIR/app")
  port=$(cat "$DIR/port")
  owner=$(cat "$DIR/owner" 2>/dev/null || true)
  : >"$DIR/apicurio.log"
  # The runner jar finds lib/ beside itself; the working directory keeps its files in DIR.
  (cd "$DIR" && start_process "$DIR/apicurio.pid" "$DIR/apicurio.log" "$owner" \
    "$java" -Xmx384m -XX:+UseG1GC -Djava.awt.headless=true \
    -Dquarkus.http.host=127.0.0.1 -Dquarkus.http.port="$port" \
    -Dquarkus.management.enabled=false \
    -Dapicurio.storage.kind=sql -Dapicurio.storage.sql.kind=h2 \
    -Dapicurio.datasource.url="jdbc:h2:file:$DIR/registry;DB_CLOSE_ON_EXIT=FALSE;WRITE_DELAY=0" \
    -jar "$app/apicurio-registry-app-$APICURIO_VERSION-runner.jar")
  local url="http://127.0.0.1:$port/apis/ccompat/v7" waited=0
  until curl -sf "$url/subjects" >/dev/null 2>&1; do
    if ! kill -0 "$(cat "$DIR/apicurio.pid")" 2>/dev/null; then
      tail -n 40 "$DIR/apicurio.log" >&2
      die "the registry exited before it answered"
    fi
    [ "$waited" -lt 600 ] || { tail -n 40 "$DIR/apicurio.log" >&2; die "the registry does not answer after 120s"; }
    sleep 0.2
    waited=$((waited + 1))
  done
  echo "$url"
}

cmd_start() {
  local owner=""
  while [ $# -gt 0 ]; do
    case $1 in
      --owner) owner=$2; shift 2 ;;
      *) usage ;;
    esac
  done
  mkdir -p "$DIR"
  DIR=$(cd "$DIR" && pwd)
  if running_in "$DIR"; then die "$DIR already holds a running registry (apicurio.sh stop $DIR)"; fi
  rm -f "$DIR/env"

  local archive app url
  find_java 17 25 >"$DIR/java"
  archive=$(fetch_artifact "io.apicurio:apicurio-registry-app:$APICURIO_VERSION:tar.gz:all")
  app="$(dirname "$archive")/app"
  if [ ! -f "$app/.unpacked" ]; then
    rm -rf "$app"
    mkdir -p "$app"
    tar -xzf "$archive" -C "$app"
    touch "$app/.unpacked"
  fi
  echo "$app" >"$DIR/app"
  echo "$owner" >"$DIR/owner"
  free_port >"$DIR/port"
  rm -f "$DIR"/registry.*.db
  url=$(run_registry)
  curl -sf -X PUT -H 'Content-Type: application/json' -d '{"compatibility":"BACKWARD"}' \
    "$url/config" >/dev/null || die "the registry refused the compatibility level BACKWARD"
  echo "HERALD_TEST_REGISTRY=$url" >"$DIR/env"
  echo "Apicurio Registry $APICURIO_VERSION: $url (compatibility BACKWARD)" >&2
  echo "$url"
}

[ $# -ge 2 ] || usage
command=$1
DIR=$2
shift 2
case $command in
  start) cmd_start "$@" ;;
  stop) [ -d "$DIR" ] && stop_process "$DIR/apicurio.pid" 20 ;;
  kill) kill_process "$DIR/apicurio.pid" ;;
  restart)
    [ -f "$DIR/port" ] || die "no registry was started in $DIR"
    if [ -f "$DIR/apicurio.pid" ] && kill -0 "$(cat "$DIR/apicurio.pid")" 2>/dev/null; then
      die "the registry of $DIR is running"
    fi
    run_registry
    ;;
  *) usage ;;
esac
