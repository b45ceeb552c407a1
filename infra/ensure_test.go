package infra_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	sqstypes "github.com/aws/aws-sdk-go-v2/service/sqs/types"

	"github.com/ecmstore/ecmstore/infra"
	"github.com/ecmstore/ecmstore/shared/emulator"
)

func TestMain(m *testing.M) { emulator.Main(m) }

// Ensure creates the tables and queues on the emulators, and a second run changes nothing.
func TestEnsureIsIdempotent(t *testing.T) {
	ctx := context.Background()
	db := emulator.DynamoDBClient(emulator.DynamoDB(t))
	q := emulator.SQSClient(emulator.SQS(t))
	s := fmt.Sprint(time.Now().UnixNano())
	n := infra.Names{EventsTable: "ev-" + s, ReadModelTable: "rm-" + s, DLQ: "dlq-" + s, DLQArchive: "arc-" + s}
	url1, err := infra.Ensure(ctx, db, q, n)
	if err != nil {
		t.Fatal(err)
	}
	url2, err := infra.Ensure(ctx, db, q, n)
	if err != nil || url1 != url2 || !strings.Contains(url1, n.DLQ) {
		t.Fatalf("second ensure: %q %q %v", url1, url2, err)
	}
	desc, err := db.DescribeTable(ctx, &dynamodb.DescribeTableInput{TableName: aws.String(n.EventsTable)})
	if err != nil || len(desc.Table.GlobalSecondaryIndexes) != 3 || desc.Table.StreamSpecification == nil ||
		desc.Table.StreamSpecification.StreamViewType != "NEW_IMAGE" {
		t.Fatalf("events table: %+v %v", desc.Table, err)
	}
	attrs, err := q.GetQueueAttributes(ctx, &sqs.GetQueueAttributesInput{QueueUrl: aws.String(url1),
		AttributeNames: []sqstypes.QueueAttributeName{sqstypes.QueueAttributeNameAll}})
	if err != nil {
		t.Fatal(err)
	}
	if attrs.Attributes["MessageRetentionPeriod"] != "1209600" || !strings.Contains(attrs.Attributes["RedrivePolicy"], n.DLQArchive) {
		t.Fatalf("dead-letter queue attributes: %v", attrs.Attributes)
	}
}
