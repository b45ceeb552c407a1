#!/usr/bin/env bash
# LocalStack ready hook: creates the same resources as infra/ (and template.yaml). The
# table definitions are JSON generated from infra by `go test ./infra -run LocalStack
# -update`, and a test keeps them equal.
set -euo pipefail
dir="$(cd "$(dirname "$0")/.." && pwd)"
for t in events readmodels; do
  name="$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["TableName"])' "$dir/tables/$t.json")"
  awslocal dynamodb describe-table --table-name "$name" >/dev/null 2>&1 ||
    awslocal dynamodb create-table --cli-input-json "file://$dir/tables/$t.json"
done
awslocal dynamodb update-time-to-live --table-name ecm-readmodels \
  --time-to-live-specification Enabled=true,AttributeName=expiresAt >/dev/null 2>&1 || true
archive_url="$(awslocal sqs create-queue --queue-name ecm-dead-letters-archive \
  --attributes MessageRetentionPeriod=1209600 --query QueueUrl --output text)"
archive_arn="$(awslocal sqs get-queue-attributes --queue-url "$archive_url" \
  --attribute-names QueueArn --query Attributes.QueueArn --output text)"
awslocal sqs create-queue --queue-name ecm-dead-letters --attributes "{
  \"MessageRetentionPeriod\": \"1209600\",
  \"SqsManagedSseEnabled\": \"true\",
  \"VisibilityTimeout\": \"60\",
  \"RedrivePolicy\": \"{\\\"deadLetterTargetArn\\\":\\\"$archive_arn\\\",\\\"maxReceiveCount\\\":\\\"5\\\"}\"
}" >/dev/null
echo "ecmstore resources ready"
