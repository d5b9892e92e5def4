#!/usr/bin/env bash
# Apache Kafka in KRaft mode from its Maven Central jars (no Docker), for the tests, the
# benchmarks and `herald chaos`.
#
#   infra/engines/kafka.sh start DIR [--brokers N] [--sasl-ssl] [--owner PID]
#   infra/engines/kafka.sh stop DIR
#   infra/engines/kafka.sh kill DIR NODE       SIGKILL one broker (NODE is 1..N)
#   infra/engines/kafka.sh stop-node DIR NODE  stop one broker cleanly (SIGTERM: controlled
#                                              shutdown, leadership handed over first)
#   infra/engines/kafka.sh restart DIR NODE    start a killed or stopped broker again
#   infra/engines/kafka.sh tool DIR TOOL [ARGS...]
#                                              Kafka's own tools: consumer-groups, topics,
#                                              get-offsets, or a class name
#
# `start` formats storage in DIR (which must not hold a running cluster), starts every node
# as its own process (each is broker and controller) on free loopback ports, and returns once
# each says it started. One node: replication factor 1. Three or more: replication factor 3
# and min.insync.replicas=2, as production runs. --sasl-ssl adds a SASL_SSL listener
# (SCRAM-SHA-512, a certificate signed by a CA made for the run) beside the plaintext one,
# and turns on the StandardAuthorizer: ANONYMOUS (the plaintext listeners) and the SASL user
# are super users; one more SCRAM user per role and one for the operator's commands hold
# only the ACLs a test grants them.
# DIR/env then holds, for the tests:
#   HERALD_TEST_KAFKA             bootstrap servers of the plaintext listeners
#   HERALD_TEST_KAFKA_SASL_SSL    bootstrap servers of the SASL_SSL listeners (--sasl-ssl)
#   HERALD_TEST_KAFKA_CA          the CA certificate that signed the brokers' (PEM)
#   HERALD_TEST_KAFKA_USERNAME    a SCRAM-SHA-512 user
#   HERALD_TEST_KAFKA_PASSWORD_FILE  a file holding its password (every user's)
#   HERALD_TEST_KAFKA_ROLE_USERS  the users without ACLs, comma-separated
#   HERALD_TEST_KAFKA_DIR         DIR, for `kafka.sh tool|kill|restart`
# With --owner, every broker stops when that process ends.
set -euo pipefail
# shellcheck source=lib.sh
. "$(dirname "$0")/lib.sh"

KAFKA_VERSION=4.1.1
ROLE_USERS="herald-ingest herald-enricher herald-dispatch herald-operator herald-setup-check"

usage() {
  sed -n '5,14p' "$0" | sed 's/^# \{0,1\}//' >&2
  exit 2
}

node_dir() { echo "$DIR/node-$1"; }

# Starts node $1 of the cluster in $DIR from the configuration `start` wrote.
start_node() {
  local node=$1 nd java classpath heap owner
  nd=$(node_dir "$node")
  java=$(cat "$DIR/java")
  classpath=$(cat "$DIR/classpath")
  heap=$(cat "$DIR/heap")
  owner=$(cat "$DIR/owner" 2>/dev/null || true)
  : >"$nd/kafka.log"
  start_process "$nd/kafka.pid" "$nd/kafka.log" "$owner" \
    "$java" "-Xmx$heap" "-Xms$heap" -XX:+UseG1GC -XX:MaxGCPauseMillis=20 \
    -Djava.awt.headless=true -Dlog4j2.configurationFile="$nd/log4j2.yaml" \
    -cp "$classpath/*" kafka.Kafka "$nd/server.properties"
}

wait_node() {
  local nd
  nd=$(node_dir "$1")
  wait_for_log "$nd/kafka.pid" "$nd/kafka.log" "Kafka Server started" 120
}

write_log_config() {
  cat >"$1" <<'YAML'
Configuration:
  Appenders:
    Console:
      name: STDOUT
      PatternLayout:
        pattern: "[%d] %p %m (%c)%n"
  Loggers:
    Logger:
      - name: kafka.request.logger
        level: WARN
      - name: org.apache.kafka.storage.internals.log
        level: WARN
      - name: kafka.log
        level: WARN
    Root:
      level: INFO
      AppenderRef:
        - ref: STDOUT
YAML
}

cmd_start() {
  local brokers=1 sasl_ssl=false owner=""
  while [ $# -gt 0 ]; do
    case $1 in
      --brokers) brokers=$2; shift 2 ;;
      --sasl-ssl) sasl_ssl=true; shift ;;
      --owner) owner=$2; shift 2 ;;
      *) usage ;;
    esac
  done
  [ "$brokers" -ge 1 ] || die "--brokers must be at least 1"
  mkdir -p "$DIR"
  DIR=$(cd "$DIR" && pwd)
  if running_in "$DIR"; then die "$DIR already holds a running cluster (kafka.sh stop $DIR)"; fi
  rm -rf "$DIR"/node-* "$DIR/tls" "$DIR/env"

  local java classpath
  java=$(find_java 17 25)
  classpath=$(fetch_classpath kafka)
  echo "$java" >"$DIR/java"
  echo "$classpath" >"$DIR/classpath"
  echo "$brokers" >"$DIR/nodes"
  echo "$owner" >"$DIR/owner"
  if [ "$brokers" -eq 1 ]; then echo 512m; else echo 384m; fi >"$DIR/heap"
  [ -n "${HERALD_KAFKA_HEAP:-}" ] && echo "$HERALD_KAFKA_HEAP" >"$DIR/heap"
  if $sasl_ssl; then
    make_tls "$DIR/tls" broker
    echo herald >"$DIR/tls/username"
    openssl rand -hex 24 >"$DIR/tls/password"
    chmod 600 "$DIR/tls/username" "$DIR/tls/password"
  fi

  local replication=1 min_insync=1
  if [ "$brokers" -ge 3 ]; then
    replication=3
    min_insync=2
  fi
  local -a plain secure controller
  local node voters=""
  for node in $(seq 1 "$brokers"); do
    plain[node]=$(free_port)
    controller[node]=$(free_port)
    secure[node]=$(free_port)
    voters+="${voters:+,}$node@127.0.0.1:${controller[node]}"
  done

  local cluster_id bootstrap="" bootstrap_secure=""
  cluster_id=$("$java" -cp "$classpath/*" kafka.tools.StorageTool random-uuid 2>/dev/null | tail -n 1)
  for node in $(seq 1 "$brokers"); do
    local nd listeners advertised protocols
    nd=$(node_dir "$node")
    mkdir -p "$nd/data"
    listeners="PLAINTEXT://127.0.0.1:${plain[node]},CONTROLLER://127.0.0.1:${controller[node]}"
    advertised="PLAINTEXT://127.0.0.1:${plain[node]}"
    protocols="PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT"
    if $sasl_ssl; then
      listeners+=",SASL_SSL://127.0.0.1:${secure[node]}"
      advertised+=",SASL_SSL://127.0.0.1:${secure[node]}"
      protocols+=",SASL_SSL:SASL_SSL"
      bootstrap_secure+="${bootstrap_secure:+,}127.0.0.1:${secure[node]}"
    fi
    bootstrap+="${bootstrap:+,}127.0.0.1:${plain[node]}"
    cat >"$nd/server.properties" <<PROPERTIES
process.roles=broker,controller
node.id=$node
controller.quorum.voters=$voters
controller.listener.names=CONTROLLER
listeners=$listeners
advertised.listeners=$advertised
listener.security.protocol.map=$protocols
inter.broker.listener.name=PLAINTEXT
log.dirs=$nd/data
num.partitions=1
default.replication.factor=$replication
min.insync.replicas=$min_insync
offsets.topic.replication.factor=$replication
offsets.topic.num.partitions=10
transaction.state.log.replication.factor=$replication
transaction.state.log.min.isr=$min_insync
share.coordinator.state.topic.replication.factor=$replication
share.coordinator.state.topic.min.isr=$min_insync
auto.create.topics.enable=false
delete.topic.enable=true
unclean.leader.election.enable=false
# Tests start and stop groups all the time; a first member must not wait 3 s for company.
group.initial.rebalance.delay.ms=0
# A consumer-protocol member that stops heartbeating (SIGKILLed) keeps its partitions for
# the session timeout (45 s by default, and no less): Herald's groups take 10 s
# (docs/production.md, "Consumer group protocol").
group.consumer.min.session.timeout.ms=6000
group.consumer.session.timeout.ms=10000
group.consumer.min.heartbeat.interval.ms=1000
group.consumer.heartbeat.interval.ms=2000
PROPERTIES
    if $sasl_ssl; then
      cat >>"$nd/server.properties" <<PROPERTIES
sasl.enabled.mechanisms=SCRAM-SHA-512
listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;
# ACLs decide, as on a hardened cluster: the plaintext listeners' ANONYMOUS (tests, the
# brokers themselves) and the SASL user herald may do anything; the per-role users only
# what they are granted.
authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer
allow.everyone.if.no.acl.found=false
super.users=User:ANONYMOUS;User:$(cat "$DIR/tls/username")
ssl.keystore.type=PKCS12
ssl.keystore.location=$DIR/tls/broker.p12
ssl.keystore.password=$(cat "$DIR/tls/keystore-password")
PROPERTIES
    fi
    write_log_config "$nd/log4j2.yaml"
    local -a format=(kafka.tools.StorageTool format -t "$cluster_id" -c "$nd/server.properties")
    if $sasl_ssl; then
      local user
      for user in "$(cat "$DIR/tls/username")" $ROLE_USERS; do
        format+=(--add-scram "SCRAM-SHA-512=[name=$user,password=$(cat "$DIR/tls/password")]")
      done
    fi
    "$java" -cp "$classpath/*" "${format[@]}" >"$nd/format.log" 2>&1 ||
      { cat "$nd/format.log" >&2; die "formatting node $node failed"; }
  done

  for node in $(seq 1 "$brokers"); do start_node "$node"; done
  for node in $(seq 1 "$brokers"); do wait_node "$node"; done

  {
    echo "HERALD_TEST_KAFKA=$bootstrap"
    echo "HERALD_TEST_KAFKA_DIR=$DIR"
    if $sasl_ssl; then
      echo "HERALD_TEST_KAFKA_SASL_SSL=$bootstrap_secure"
      echo "HERALD_TEST_KAFKA_CA=$DIR/tls/ca.pem"
      echo "HERALD_TEST_KAFKA_USERNAME=$(cat "$DIR/tls/username")"
      echo "HERALD_TEST_KAFKA_PASSWORD_FILE=$DIR/tls/password"
      echo "HERALD_TEST_KAFKA_ROLE_USERS=${ROLE_USERS// /,}"
    fi
  } >"$DIR/env"
  echo "Kafka $KAFKA_VERSION: $brokers broker(s) at $bootstrap${bootstrap_secure:+ (SASL_SSL at $bootstrap_secure)}" >&2
  echo "$bootstrap"
}

cmd_stop() {
  [ -d "$DIR" ] || return 0
  local pidfile
  # Every broker at once: stopped one by one, the last would wait for a quorum that is gone.
  for pidfile in "$DIR"/node-*/kafka.pid; do
    [ -f "$pidfile" ] && kill -TERM "$(cat "$pidfile")" 2>/dev/null || true
  done
  for pidfile in "$DIR"/node-*/kafka.pid; do
    stop_process "$pidfile" 30
  done
}

cmd_node() {
  local action=$1 node=$2
  [ -f "$(node_dir "$node")/server.properties" ] || die "no node $node in $DIR"
  case $action in
    kill) kill_process "$(node_dir "$node")/kafka.pid" ;;
    stop-node) stop_process "$(node_dir "$node")/kafka.pid" 60 ;;
    restart)
      local pidfile
      pidfile="$(node_dir "$node")/kafka.pid"
      if [ -f "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null; then
        die "node $node is running"
      fi
      start_node "$node"
      wait_node "$node"
      ;;
  esac
}

cmd_tool() {
  local tool=$1 class
  shift
  case $tool in
    consumer-groups) class=org.apache.kafka.tools.consumer.group.ConsumerGroupCommand ;;
    topics) class=org.apache.kafka.tools.TopicCommand ;;
    get-offsets) class=org.apache.kafka.tools.GetOffsetShell ;;
    dump-log) class=kafka.tools.DumpLogSegments ;;
    *) class=$tool ;;
  esac
  local java classpath
  if [ -f "$DIR/java" ]; then java=$(cat "$DIR/java"); else java=$(find_java 17 25); fi
  if [ -f "$DIR/classpath" ]; then classpath=$(cat "$DIR/classpath"); else classpath=$(fetch_classpath kafka); fi
  exec "$java" -Xmx256m -XX:TieredStopAtLevel=1 -Dlog4j2.level=WARN -cp "$classpath/*" "$class" "$@"
}

[ $# -ge 2 ] || usage
command=$1
DIR=$2
shift 2
case $command in
  start) cmd_start "$@" ;;
  stop) cmd_stop ;;
  kill | stop-node | restart) [ $# -eq 1 ] || usage; cmd_node "$command" "$1" ;;
  tool) [ $# -ge 1 ] || usage; cmd_tool "$@" ;;
  *) usage ;;
esac
