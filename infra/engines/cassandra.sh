#!/usr/bin/env bash
# Apache Cassandra 5.0 from its Maven Central jars (no Docker): the CQL node on which the
# ScyllaDB stores' contract suites and the pipeline's CQL tests run.
#
#   infra/engines/cassandra.sh start DIR [--owner PID]
#   infra/engines/cassandra.sh stop DIR
#
# `start` writes a configuration for one node on free loopback ports, starts it and returns
# once it accepts CQL clients. It is configured as a hardened cluster is: its native port
# takes TLS connections only, from clients presenting a certificate signed by a CA made for
# the run (which signed the node's too), and every client logs in (PasswordAuthenticator).
# DIR/env then holds, for the tests:
#   HERALD_SCYLLA_URI              host:port of the node's CQL port
#   HERALD_TEST_CQL_CA             the CA certificate that signed the node's (PEM)
#   HERALD_TEST_CQL_CERT           a client certificate signed by that CA (PEM) ...
#   HERALD_TEST_CQL_KEY            ... and its key
#   HERALD_TEST_CQL_USERNAME       a role that may create keyspaces
#   HERALD_TEST_CQL_PASSWORD_FILE  a file holding its password
# With --owner, the node stops when that process ends.
set -euo pipefail
# shellcheck source=lib.sh
. "$(dirname "$0")/lib.sh"

CASSANDRA_VERSION=5.0.6

usage() {
  sed -n '5,6p' "$0" | sed 's/^# \{0,1\}//' >&2
  exit 2
}

# The module flags of Cassandra's conf/jvm17-server.options: Cassandra reaches into JDK
# internals (off-heap memory, object sizes, JMX) that Java 17 closes by default.
JVM17_FLAGS=(
  -Djdk.attach.allowAttachSelf=true
  --add-exports java.base/jdk.internal.misc=ALL-UNNAMED
  --add-exports java.management.rmi/com.sun.jmx.remote.internal.rmi=ALL-UNNAMED
  --add-exports java.rmi/sun.rmi.registry=ALL-UNNAMED
  --add-exports java.rmi/sun.rmi.server=ALL-UNNAMED
  --add-exports java.sql/java.sql=ALL-UNNAMED
  --add-exports java.base/java.lang.ref=ALL-UNNAMED
  --add-exports jdk.unsupported/sun.misc=ALL-UNNAMED
  --add-exports jdk.compiler/com.sun.tools.javac.file=ALL-UNNAMED
  --add-exports jdk.attach/sun.tools.attach=ALL-UNNAMED
  --add-opens java.base/java.lang.module=ALL-UNNAMED
  --add-opens java.base/jdk.internal.loader=ALL-UNNAMED
  --add-opens java.base/jdk.internal.ref=ALL-UNNAMED
  --add-opens java.base/jdk.internal.reflect=ALL-UNNAMED
  --add-opens java.base/jdk.internal.math=ALL-UNNAMED
  --add-opens java.base/jdk.internal.module=ALL-UNNAMED
  --add-opens java.base/jdk.internal.util.jar=ALL-UNNAMED
  --add-opens jdk.management/com.sun.management.internal=ALL-UNNAMED
  --add-opens java.base/sun.nio.ch=ALL-UNNAMED
  --add-opens java.base/java.io=ALL-UNNAMED
  --add-opens java.base/java.nio=ALL-UNNAMED
  --add-opens java.base/java.lang.reflect=ALL-UNNAMED
  --add-opens jdk.compiler/com.sun.tools.javac=ALL-UNNAMED
  --add-opens java.base/java.lang=ALL-UNNAMED
  --add-opens java.base/java.util=ALL-UNNAMED
  -Dio.netty.tryReflectionSetAccessible=true
  -Dio.netty.allocator.useCacheForAllThreads=true
  -Dio.netty.allocator.maxOrder=11
)

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
  if running_in "$DIR"; then die "$DIR already holds a running node (cassandra.sh stop $DIR)"; fi
  rm -rf "$DIR/data" "$DIR/commitlog" "$DIR/hints" "$DIR/saved_caches" "$DIR/cdc" "$DIR/tls" "$DIR/env"

  local java classpath native storage jmx
  # Cassandra 5.0 runs on Java 11 and 17, not later.
  java=$(find_java 11 17)
  classpath=$(fetch_classpath cassandra)
  native=$(free_port)
  storage=$(free_port)
  jmx=$(free_port)
  make_tls "$DIR/tls" node
  sign_client "$DIR/tls" client
  local keytool
  keytool=$(dirname "$java")/keytool
  "$keytool" -importcert -noprompt -alias ca -file "$DIR/tls/ca.pem" -storetype PKCS12 \
    -keystore "$DIR/tls/truststore.p12" -storepass "$(cat "$DIR/tls/keystore-password")" >/dev/null
  # The superuser Cassandra creates on first start; production clusters replace it.
  printf 'cassandra\n' >"$DIR/tls/cql-password"

  cat >"$DIR/cassandra.yaml" <<YAML
cluster_name: herald-test
num_tokens: 1
partitioner: org.apache.cassandra.dht.Murmur3Partitioner
endpoint_snitch: SimpleSnitch
seed_provider:
  - class_name: org.apache.cassandra.locator.SimpleSeedProvider
    parameters:
      - seeds: "127.0.0.1:$storage"
listen_address: 127.0.0.1
storage_port: $storage
rpc_address: 127.0.0.1
native_transport_port: $native
start_native_transport: true
data_file_directories: [$DIR/data]
commitlog_directory: $DIR/commitlog
hints_directory: $DIR/hints
saved_caches_directory: $DIR/saved_caches
cdc_raw_directory: $DIR/cdc
commitlog_sync: periodic
commitlog_sync_period: 10000ms
authenticator: PasswordAuthenticator
authorizer: AllowAllAuthorizer
# A test run drops and truncates often; snapshots of what it drops only fill the disk.
auto_snapshot: false
concurrent_compactors: 1
# A busy two-core machine runs the tests beside the node: the defaults (2 s, 5 s, 1 s) are
# for a dedicated server.
write_request_timeout: 5000ms
read_request_timeout: 10000ms
cas_contention_timeout: 5000ms
# Herald's claims are lightweight transactions: Paxos v2 takes fewer round trips and less
# work per transaction than v1, Cassandra 5.0's default (docs/production.md).
paxos_variant: v2
client_encryption_options:
  enabled: true
  # TLS only: a plain client is refused.
  optional: false
  keystore: $DIR/tls/node.p12
  keystore_password: $(cat "$DIR/tls/keystore-password")
  store_type: PKCS12
  require_client_auth: true
  truststore: $DIR/tls/truststore.p12
  truststore_password: $(cat "$DIR/tls/keystore-password")
YAML
  cat >"$DIR/logback.xml" <<'XML'
<configuration>
  <appender name="STDOUT" class="ch.qos.logback.core.ConsoleAppender">
    <encoder><pattern>%d{HH:mm:ss.SSS} %-5level [%thread] %logger{20} - %msg%n</pattern></encoder>
  </appender>
  <root level="INFO"><appender-ref ref="STDOUT"/></root>
</configuration>
XML

  local heap=${HERALD_CASSANDRA_HEAP:-1g}
  : >"$DIR/cassandra.log"
  start_process "$DIR/cassandra.pid" "$DIR/cassandra.log" "$owner" \
    "$java" "-Xmx$heap" "-Xms$heap" -XX:+UseG1GC -XX:+ParallelRefProcEnabled \
    -XX:MaxTenuringThreshold=1 -XX:G1HeapRegionSize=16m -Djava.awt.headless=true \
    "${JVM17_FLAGS[@]}" \
    -javaagent:"$(ls "$classpath"/jamm-*.jar)" \
    -Dcassandra.config="file://$DIR/cassandra.yaml" \
    -Dlogback.configurationFile="$DIR/logback.xml" \
    -Dcassandra-foreground=yes \
    -Dcassandra.storagedir="$DIR" \
    -Dcassandra.jmx.local.port="$jmx" \
    -Dcassandra.skip_wait_for_gossip_to_settle=0 \
    -Dcassandra.ring_delay_ms=0 \
    -Dcassandra.load_ring_state=false \
    -Dcassandra.superuser_setup_delay_ms=0 \
    -cp "$classpath/*" org.apache.cassandra.service.CassandraDaemon
  wait_for_log "$DIR/cassandra.pid" "$DIR/cassandra.log" "Starting listening for CQL clients" 240
  # Logins fail until the superuser role exists.
  wait_for_log "$DIR/cassandra.pid" "$DIR/cassandra.log" "Created default superuser role" 60

  {
    echo "HERALD_SCYLLA_URI=127.0.0.1:$native"
    echo "HERALD_TEST_CQL_CA=$DIR/tls/ca.pem"
    echo "HERALD_TEST_CQL_CERT=$DIR/tls/client.pem"
    echo "HERALD_TEST_CQL_KEY=$DIR/tls/client.key"
    echo "HERALD_TEST_CQL_USERNAME=cassandra"
    echo "HERALD_TEST_CQL_PASSWORD_FILE=$DIR/tls/cql-password"
  } >"$DIR/env"
  echo "Cassandra $CASSANDRA_VERSION: CQL at 127.0.0.1:$native (TLS with client certificates, password logins)" >&2
  echo "127.0.0.1:$native"
}

[ $# -ge 2 ] || usage
command=$1
DIR=$2
shift 2
case $command in
  start) cmd_start "$@" ;;
  stop) [ -d "$DIR" ] && stop_process "$DIR/cassandra.pid" 30 ;;
  *) usage ;;
esac
