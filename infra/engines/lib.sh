# Shared by the engine scripts (kafka.sh, cassandra.sh, apicurio.sh): fetching jars with
# Maven, picking a JVM, free ports, starting and stopping the processes an engine runs.
# Sourced, not run.

ENGINES_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# Unpacked class paths, one directory per pinned artifact set. Maven's own repository
# (~/.m2) holds the downloads, so an emptied cache costs a copy, not a download.
ENGINES_CACHE=${HERALD_ENGINES_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/herald/engines}

die() {
  echo "$(basename "$0"): $*" >&2
  exit 1
}

# A java binary whose major version is within [min, max]: $HERALD_JAVA, $JAVA_HOME, java on
# $PATH, then every JDK under /usr/lib/jvm.
find_java() {
  local min=$1 max=$2 candidate version
  for candidate in "${HERALD_JAVA:-}" "${JAVA_HOME:+$JAVA_HOME/bin/java}" \
    "$(command -v java 2>/dev/null || true)" /usr/lib/jvm/*/bin/java; do
    [ -n "$candidate" ] && [ -x "$candidate" ] || continue
    version=$("$candidate" -XshowSettings:properties -version 2>&1 |
      awk -F'= ' '/java.specification.version/ {print $2}')
    version=${version#1.}
    version=${version%%.*}
    if [ -n "$version" ] && [ "$version" -ge "$min" ] && [ "$version" -le "$max" ]; then
      echo "$candidate"
      return 0
    fi
  done
  die "no Java between $min and $max found (set HERALD_JAVA); .ci/run installs openjdk-17"
}

need_maven() {
  command -v mvn >/dev/null 2>&1 || die "Maven (mvn) is missing; .ci/run installs it"
}

# The directory holding the jars of infra/engines/<name>.pom.xml's dependencies, fetched
# once. The directory is named after the pom's hash, so a changed pin fetches anew.
fetch_classpath() {
  local name=$1 pom="$ENGINES_DIR/$1.pom.xml" key dir
  key=$(sha256sum "$pom" | cut -c1-12)
  dir="$ENGINES_CACHE/$name-$key"
  if [ ! -f "$dir/.complete" ]; then
    need_maven
    echo "fetching $name with Maven into $dir" >&2
    rm -rf "$dir"
    mkdir -p "$dir"
    # The pom is copied so that Maven's target/ lands in the cache, not in the checkout.
    cp "$pom" "$dir/pom.xml"
    mvn -B -Dstyle.color=never -f "$dir/pom.xml" dependency:copy-dependencies -DincludeScope=runtime \
      -DoutputDirectory="$dir/lib" >"$dir/maven.log" 2>&1 ||
      { tail -n 30 "$dir/maven.log" >&2; die "Maven could not fetch $name"; }
    rm -rf "$dir/target"
    touch "$dir/.complete"
  fi
  echo "$dir/lib"
}

# One artifact (group:artifact:version:type[:classifier]) copied out of Maven, once; prints
# its path.
fetch_artifact() {
  local coordinates=$1 dir file
  dir="$ENGINES_CACHE/$(echo "$coordinates" | tr ':' '_')"
  if [ ! -f "$dir/.complete" ]; then
    need_maven
    echo "fetching $coordinates with Maven into $dir" >&2
    rm -rf "$dir"
    mkdir -p "$dir"
    (cd "$dir" && mvn -B -Dstyle.color=never dependency:copy -Dartifact="$coordinates" \
      -DoutputDirectory=. >maven.log 2>&1) ||
      { tail -n 30 "$dir/maven.log" >&2; die "Maven could not fetch $coordinates"; }
    touch "$dir/.complete"
  fi
  file=$(find "$dir" -maxdepth 1 -type f ! -name .complete ! -name maven.log | head -n 1)
  echo "$file"
}

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# Starts a command in the background in its own session, logging to $log and recording its
# pid in $pidfile. With $owner set, a watchdog stops it when that process ends, so a test
# run that dies leaves no JVM behind.
start_process() {
  local pidfile=$1 log=$2 owner=$3
  shift 3
  setsid "$@" >>"$log" 2>&1 </dev/null &
  local pid=$!
  echo "$pid" >"$pidfile"
  if [ -n "$owner" ]; then
    (
      trap '' HUP
      while kill -0 "$owner" 2>/dev/null && kill -0 "$pid" 2>/dev/null; do sleep 1; done
      if kill -0 "$pid" 2>/dev/null; then
        kill -TERM "$pid" 2>/dev/null
        sleep 10
        kill -KILL "$pid" 2>/dev/null
      fi
    ) >/dev/null 2>&1 </dev/null &
    disown
  fi
}

# Waits until $log contains $pattern, failing early (with the log's end) if the process of
# $pidfile exits, or after $timeout seconds.
wait_for_log() {
  local pidfile=$1 log=$2 pattern=$3 timeout=$4 waited=0
  while ! grep -q -- "$pattern" "$log" 2>/dev/null; do
    if ! kill -0 "$(cat "$pidfile")" 2>/dev/null; then
      tail -n 40 "$log" >&2
      die "the process logging to $log exited before it was ready"
    fi
    if [ "$waited" -ge $((timeout * 5)) ]; then
      tail -n 40 "$log" >&2
      die "not ready after ${timeout}s (waiting for '$pattern' in $log)"
    fi
    sleep 0.2
    waited=$((waited + 1))
  done
}

# Stops the process of $pidfile: SIGTERM, then SIGKILL after $grace seconds; waits until
# it is gone.
stop_process() {
  local pidfile=$1 grace=${2:-20} pid waited=0
  [ -f "$pidfile" ] || return 0
  pid=$(cat "$pidfile")
  if kill -0 "$pid" 2>/dev/null; then
    kill -TERM "$pid" 2>/dev/null || true
    while kill -0 "$pid" 2>/dev/null && [ "$waited" -lt $((grace * 5)) ]; do
      sleep 0.2
      waited=$((waited + 1))
    done
    if kill -0 "$pid" 2>/dev/null; then
      kill -KILL "$pid" 2>/dev/null || true
      while kill -0 "$pid" 2>/dev/null; do sleep 0.1; done
    fi
  fi
  rm -f "$pidfile"
}

kill_process() {
  local pidfile=$1 pid
  [ -f "$pidfile" ] || return 0
  pid=$(cat "$pidfile")
  kill -KILL "$pid" 2>/dev/null || true
  while kill -0 "$pid" 2>/dev/null; do sleep 0.1; done
  rm -f "$pidfile"
}

# Java processes a run directory started, and nothing else: used to refuse a second start.
running_in() {
  local dir=$1 pidfile
  for pidfile in "$dir"/*.pid "$dir"/*/*.pid; do
    [ -f "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null && return 0
  done
  return 1
}

# A CA made for the run and a certificate for 127.0.0.1 and localhost signed by it, in
# $tls: ca.pem, $name.pem with its key, and both in the PKCS12 keystore $name.p12 whose
# password is in keystore-password.
make_tls() {
  local tls=$1 name=$2
  mkdir -p "$tls"
  openssl rand -hex 16 >"$tls/keystore-password"
  openssl req -x509 -newkey rsa:2048 -nodes -days 7 -subj "/CN=herald test CA" \
    -keyout "$tls/ca.key" -out "$tls/ca.pem" 2>/dev/null
  openssl req -newkey rsa:2048 -nodes -subj "/CN=localhost" \
    -keyout "$tls/$name.key" -out "$tls/$name.csr" 2>/dev/null
  printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\n' >"$tls/$name.ext"
  openssl x509 -req -in "$tls/$name.csr" -CA "$tls/ca.pem" -CAkey "$tls/ca.key" \
    -CAcreateserial -days 7 -extfile "$tls/$name.ext" -out "$tls/$name.pem" 2>/dev/null
  openssl pkcs12 -export -in "$tls/$name.pem" -inkey "$tls/$name.key" -certfile "$tls/ca.pem" \
    -name "$name" -passout "pass:$(cat "$tls/keystore-password")" -out "$tls/$name.p12"
  chmod 600 "$tls"/*
}

# A client certificate $name.pem (key $name.key) signed by the CA make_tls made in $tls.
sign_client() {
  local tls=$1 name=$2
  openssl req -newkey rsa:2048 -nodes -subj "/CN=$name" \
    -keyout "$tls/$name.key" -out "$tls/$name.csr" 2>/dev/null
  printf 'extendedKeyUsage=clientAuth\n' >"$tls/$name.ext"
  openssl x509 -req -in "$tls/$name.csr" -CA "$tls/ca.pem" -CAkey "$tls/ca.key" \
    -CAcreateserial -days 7 -extfile "$tls/$name.ext" -out "$tls/$name.pem" 2>/dev/null
  chmod 600 "$tls/$name".*
}
