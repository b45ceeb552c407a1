#!/usr/bin/env bash
# LocalStack ready hook: creates the resources infra.Ensure creates on the emulators and
# template.yaml on AWS — the events table (no GSIs, NEW_IMAGE stream), the index table the
# stream consumer fills (no GSIs, no stream), the read-model table, TTL on expiresAt for
# the events and read-model tables, the dead-letter queues (read models', saga's) and their
# archives. The JSON files
# are generated from infra's Go definitions (go test ./infra -run LocalStack -update) and
# a test keeps them equal. Safe to run again: existing resources are left as they are.
set -euo pipefail
init="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

create_table() { # table-name json-file [ttl]
  if awslocal dynamodb describe-table --table-name "$1" >/dev/null 2>&1; then
    echo "table $1 exists"
  else
    awslocal dynamodb create-table --cli-input-json "file://$init/$2" >/dev/null
    awslocal dynamodb wait table-exists --table-name "$1"
    echo "table $1 created"
  fi
  [ "${3:-ttl}" = ttl ] || return 0
  status="$(awslocal dynamodb describe-time-to-live --table-name "$1" \
    --query TimeToLiveDescription.TimeToLiveStatus --output text)"
  if [ "$status" != ENABLED ] && [ "$status" != ENABLING ]; then
    awslocal dynamodb update-time-to-live --table-name "$1" \
      --time-to-live-specification Enabled=true,AttributeName=expiresAt >/dev/null
  fi
}

create_table ecm-events tables/events.json
create_table ecm-readmodels tables/readmodels.json
create_table ecm-index tables/index.json no-ttl
# A read-model table created before the listing index (keys as now): add the index; then
# `make migrate-readmodels` rewrites its documents into the current key schema.
if ! awslocal dynamodb describe-table --table-name ecm-readmodels \
    --query 'Table.GlobalSecondaryIndexes[].IndexName' --output text | grep -qw byCollection; then
  awslocal dynamodb update-table --cli-input-json "file://$init/tables/readmodels-index.json" >/dev/null
  echo "table ecm-readmodels: index byCollection added"
fi

# The archive first: the dead-letter queue's redrive policy names its ARN. CreateQueue with
# the same attributes is idempotent.
awslocal sqs create-queue --cli-input-json "file://$init/queues/dead-letters-archive.json" >/dev/null
awslocal sqs create-queue --cli-input-json "file://$init/queues/dead-letters.json" >/dev/null
awslocal sqs create-queue --cli-input-json "file://$init/queues/saga-dead-letters-archive.json" >/dev/null
awslocal sqs create-queue --cli-input-json "file://$init/queues/saga-dead-letters.json" >/dev/null
echo "queues ecm-dead-letters, ecm-saga-dead-letters and their archives ready"
