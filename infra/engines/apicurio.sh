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
# API answers. The same API is served over HTTPS by the registry itself on a second port,
# and on a third by a TLS terminator in front of it (stunnel, as a sidecar proxy would) that
# takes only clients holding a certificate the run's CA signed: this build of Apicurio fixes
# client-certificate checking off when it is built. DIR/env then holds, for the tests:
#   HERALD_TEST_REGISTRY       the Confluent-compatible API's URL (.../apis/ccompat/v7)
#   HERALD_TEST_REGISTRY_TLS   the same over the registry's HTTPS
#   HERALD_TEST_REGISTRY_MTLS  the same over HTTPS that requires a client certificate
#   HERALD_TEST_REGISTRY_CA    the CA that signed both servers' certificate
#   HERALD_TEST_REGISTRY_CERT  a client certificate it signed (PEM), with
#   HERALD_TEST_REGISTRY_KEY   its key
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
  local java app port tls_port secret owner
  java=$(cat "$DIR/java")
  app=$(cat "$DIR/app")
  port=$(cat "$DIR/port")
  tls_port=$(cat "$DIR/tls-port")
  secret=$(cat "$DIR/tls/keystore-password")
  owner=$(cat "$DIR/owner" 2>/dev/null || true)
  : >"$DIR/apicurio.log"
  # The runner jar finds lib/ beside itself; the working directory keeps its files in DIR.
  (cd "$DIR" && start_process "$DIR/apicurio.pid" "$DIR/apicurio.log" "$owner" \
    "$java" -Xmx384m -XX:+UseG1GC -Djava.awt.headless=true \
    -Dquarkus.http.host=127.0.0.1 -Dquarkus.http.port="$port" \
    -Dquarkus.http.ssl-port="$tls_port" -Dquarkus.http.insecure-requests=enabled \
    -Dquarkus.http.ssl.certificate.key-store-file="$DIR/tls/registry.p12" \
    -Dquarkus.http.ssl.certificate.key-store-password="$secret" \
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
  local tls_url="https://127.0.0.1:$tls_port/apis/ccompat/v7"
  curl -sf --cacert "$DIR/tls/ca.pem" "$tls_url/subjects" >/dev/null ||
    die "the registry does not answer over HTTPS at $tls_url"
  echo "$url"
}

# The terminator on $DIR/mtls-port: TLS with a client certificate the CA signed, forwarded
# to the registry's plain port.
run_mtls_front() {
  local tls=$DIR/tls mtls_port owner
  mtls_port=$(cat "$DIR/mtls-port")
  owner=$(cat "$DIR/owner" 2>/dev/null || true)
  cat >"$DIR/stunnel.conf" <<EOF
foreground = yes
pid =
syslog = no
debug = 4
[registry]
accept = 127.0.0.1:$mtls_port
connect = 127.0.0.1:$(cat "$DIR/port")
cert = $tls/registry.pem
key = $tls/registry.key
CAfile = $tls/ca.pem
verifyChain = yes
requireCert = yes
EOF
  start_process "$DIR/mtls.pid" "$DIR/mtls.log" "$owner" stunnel "$DIR/stunnel.conf"
  local url="https://127.0.0.1:$mtls_port/apis/ccompat/v7" waited=0
  until curl -sf --cacert "$tls/ca.pem" --cert "$tls/client.pem" --key "$tls/client.key" \
    "$url/subjects" >/dev/null 2>&1; do
    [ "$waited" -lt 100 ] || { cat "$DIR/mtls.log" >&2; die "no HTTPS with client certificates at $url"; }
    sleep 0.2
    waited=$((waited + 1))
  done
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
  free_port >"$DIR/tls-port"
  free_port >"$DIR/mtls-port"
  rm -rf "$DIR/tls"
  make_tls "$DIR/tls" registry
  sign_client "$DIR/tls" client
  "$(dirname "$(cat "$DIR/java")")/keytool" -importcert -noprompt -alias ca \
    -file "$DIR/tls/ca.pem" -storetype PKCS12 -keystore "$DIR/tls/truststore.p12" \
    -storepass "$(cat "$DIR/tls/keystore-password")" >/dev/null 2>&1
  rm -f "$DIR"/registry.*.db
  url=$(run_registry)
  run_mtls_front
  curl -sf -X PUT -H 'Content-Type: application/json' -d '{"compatibility":"BACKWARD"}' \
    "$url/config" >/dev/null || die "the registry refused the compatibility level BACKWARD"
  {
    echo "HERALD_TEST_REGISTRY=$url"
    echo "HERALD_TEST_REGISTRY_TLS=https://127.0.0.1:$(cat "$DIR/tls-port")/apis/ccompat/v7"
    echo "HERALD_TEST_REGISTRY_MTLS=https://127.0.0.1:$(cat "$DIR/mtls-port")/apis/ccompat/v7"
    echo "HERALD_TEST_REGISTRY_CA=$DIR/tls/ca.pem"
    echo "HERALD_TEST_REGISTRY_CERT=$DIR/tls/client.pem"
    echo "HERALD_TEST_REGISTRY_KEY=$DIR/tls/client.key"
  } >"$DIR/env"
  echo "Apicurio Registry $APICURIO_VERSION: $url (compatibility BACKWARD; HTTPS on port $(cat "$DIR/tls-port"), with client certificates on $(cat "$DIR/mtls-port"))" >&2
  echo "$url"
}

[ $# -ge 2 ] || usage
command=$1
DIR=$2
shift 2
case $command in
  start) cmd_start "$@" ;;
  stop) [ -d "$DIR" ] && stop_process "$DIR/mtls.pid" 5 && stop_process "$DIR/apicurio.pid" 20 ;;
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
