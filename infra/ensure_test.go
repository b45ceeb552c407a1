package infra_test

import (
	"context"
	"fmt"
	"maps"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	sqstypes "github.com/aws/aws-sdk-go-v2/service/sqs/types"

	"github.com/ecmstore/ecmstore/infra"
	"github.com/ecmstore/ecmstore/shared/emulator"
)

func TestMain(m *testing.M) { emulator.Main(m) }

func testNames() infra.Names {
	s := fmt.Sprint(time.Now().UnixNano())
	return infra.Names{EventsTable: "ev-" + s, ReadModelTable: "rm-" + s, DLQ: "dlq-" + s, DLQArchive: "arc-" + s,
		SagaDLQ: "saga-dlq-" + s, SagaDLQArchive: "saga-arc-" + s, IndexTable: "ix-" + s}
}

// snapshot is what Ensure could change: tables (with their TTL) and queue attributes.
type snapshot struct {
	tables map[string]string
	queues map[string]map[string]string
}

func observe(t *testing.T, db *dynamodb.Client, q *sqs.Client, n infra.Names) snapshot {
	t.Helper()
	ctx := context.Background()
	s := snapshot{tables: map[string]string{}, queues: map[string]map[string]string{}}
	for _, table := range []string{n.EventsTable, n.ReadModelTable, n.IndexTable} {
		d, err := db.DescribeTable(ctx, &dynamodb.DescribeTableInput{TableName: aws.String(table)})
		if err != nil {
			t.Fatal(err)
		}
		ttl, err := db.DescribeTimeToLive(ctx, &dynamodb.DescribeTimeToLiveInput{TableName: aws.String(table)})
		if err != nil {
			t.Fatal(err)
		}
		s.tables[table] = fmt.Sprintf("status=%s created=%v stream=%s gsis=%d ttl=%s:%s", d.Table.TableStatus,
			d.Table.CreationDateTime.UnixNano(), aws.ToString(d.Table.LatestStreamArn), len(d.Table.GlobalSecondaryIndexes),
			ttl.TimeToLiveDescription.TimeToLiveStatus, aws.ToString(ttl.TimeToLiveDescription.AttributeName))
	}
	for _, name := range []string{n.DLQ, n.DLQArchive, n.SagaDLQ, n.SagaDLQArchive} {
		u, err := q.GetQueueUrl(ctx, &sqs.GetQueueUrlInput{QueueName: aws.String(name)})
		if err != nil {
			t.Fatal(err)
		}
		a, err := q.GetQueueAttributes(ctx, &sqs.GetQueueAttributesInput{QueueUrl: u.QueueUrl,
			AttributeNames: []sqstypes.QueueAttributeName{sqstypes.QueueAttributeNameAll}})
		if err != nil {
			t.Fatal(err)
		}
		s.queues[name] = a.Attributes
	}
	return s
}

// Ensure creates the tables and queues as infra defines them, and a second run changes
// nothing.
func TestEnsureCreatesOnceAndIsIdempotent(t *testing.T) {
	ctx := context.Background()
	db := emulator.DynamoDBClient(emulator.DynamoDB(t))
	q := emulator.SQSClient(emulator.SQS(t))
	n := testNames()
	url1, err := infra.Ensure(ctx, db, q, n)
	if err != nil {
		t.Fatal(err)
	}
	first := observe(t, db, q, n)

	if ev := first.tables[n.EventsTable]; !strings.Contains(ev, "status=ACTIVE") || !strings.Contains(ev, "gsis=0") ||
		!strings.Contains(ev, "/stream/") || !strings.Contains(ev, "ttl=ENABLED:expiresAt") {
		t.Errorf("events table: %s", ev)
	}
	if rm := first.tables[n.ReadModelTable]; !strings.Contains(rm, "status=ACTIVE") || !strings.Contains(rm, "gsis=1") ||
		!strings.Contains(rm, "ttl=ENABLED:expiresAt") {
		t.Errorf("read-model table: %s", rm)
	}
	if ix := first.tables[n.IndexTable]; !strings.Contains(ix, "status=ACTIVE") || !strings.Contains(ix, "gsis=0") ||
		strings.Contains(ix, "/stream/") {
		t.Errorf("index table: %s", ix)
	}
	desc, err := db.DescribeTable(ctx, &dynamodb.DescribeTableInput{TableName: aws.String(n.EventsTable)})
	if err != nil || desc.Table.StreamSpecification.StreamViewType != types.StreamViewTypeNewImage {
		t.Errorf("events stream: %+v %v", desc.Table.StreamSpecification, err)
	}
	for _, pair := range []struct{ queue, archive, url string }{{n.DLQ, n.DLQArchive, url1.DLQ}, {n.SagaDLQ, n.SagaDLQArchive, url1.SagaDLQ}} {
		dlq, archive := first.queues[pair.queue], first.queues[pair.archive]
		for name, want := range map[string]map[string]string{
			pair.archive: infra.DLQArchiveQueue(pair.archive).Attributes,
			pair.queue:   infra.DLQQueue(pair.queue, archive["QueueArn"]).Attributes,
		} {
			for k, v := range want {
				if got := first.queues[name][k]; got != v && !(k == "RedrivePolicy" && sameJSONish(got, v)) {
					t.Errorf("queue %s: %s = %q, want %q", name, k, got, v)
				}
			}
		}
		if !strings.Contains(dlq["RedrivePolicy"], archive["QueueArn"]) || !strings.HasSuffix(pair.url, "/"+pair.queue) {
			t.Errorf("dead-letter queue %s: %v", pair.url, dlq)
		}
	}

	url2, err := infra.Ensure(ctx, db, q, n)
	if err != nil {
		t.Fatalf("second Ensure: %v", err)
	}
	second := observe(t, db, q, n)
	if url1 != url2 || !maps.Equal(first.tables, second.tables) ||
		!maps.EqualFunc(first.queues, second.queues, maps.Equal) {
		t.Errorf("the second Ensure changed something:\n%q %+v\n%q %+v", url1, first, url2, second)
	}
}

// sameJSONish compares redrive policies that differ only in how a server quotes numbers.
func sameJSONish(a, b string) bool {
	strip := strings.NewReplacer(`"`, "", " ", "")
	return strip.Replace(a) == strip.Replace(b)
}

// OldReadModelTable is the read-model table as the first key schema created it: the same
// keys, no listing index.
func oldReadModelTable(name string) *dynamodb.CreateTableInput {
	in := infra.ReadModelTable(name)
	in.GlobalSecondaryIndexes = nil
	in.AttributeDefinitions = in.AttributeDefinitions[:2]
	return in
}

// A read-model table created before the listing index gets it, backfilled and ACTIVE,
// and keeps its items.
func TestEnsureAddsTheListingIndex(t *testing.T) {
	ctx := context.Background()
	db := emulator.DynamoDBClient(emulator.DynamoDB(t))
	q := emulator.SQSClient(emulator.SQS(t))
	n := testNames()
	if _, err := db.CreateTable(ctx, oldReadModelTable(n.ReadModelTable)); err != nil {
		t.Fatal(err)
	}
	key := map[string]types.AttributeValue{infra.AttrPK: &types.AttributeValueMemberS{Value: "coll"},
		infra.AttrSK: &types.AttributeValueMemberS{Value: "key"}}
	if err := dynamodb.NewTableExistsWaiter(db).Wait(ctx, &dynamodb.DescribeTableInput{TableName: aws.String(n.ReadModelTable)}, time.Minute); err != nil {
		t.Fatal(err)
	}
	if _, err := db.PutItem(ctx, &dynamodb.PutItemInput{TableName: aws.String(n.ReadModelTable), Item: key}); err != nil {
		t.Fatal(err)
	}
	if _, err := infra.Ensure(ctx, db, q, n); err != nil {
		t.Fatal(err)
	}
	desc, err := db.DescribeTable(ctx, &dynamodb.DescribeTableInput{TableName: aws.String(n.ReadModelTable)})
	if err != nil {
		t.Fatal(err)
	}
	if g := desc.Table.GlobalSecondaryIndexes; len(g) != 1 || aws.ToString(g[0].IndexName) != infra.IndexByCollection ||
		g[0].IndexStatus != types.IndexStatusActive {
		t.Fatalf("indexes after Ensure: %+v", g)
	}
	if got, err := db.GetItem(ctx, &dynamodb.GetItemInput{TableName: aws.String(n.ReadModelTable), Key: key}); err != nil || got.Item == nil {
		t.Fatalf("the old item is gone: %v", err)
	}
	if _, err := infra.Ensure(ctx, db, q, n); err != nil {
		t.Fatalf("second Ensure: %v", err)
	}
}

// A table that exists with another shape is reported, not silently used.
func TestEnsureRefusesADifferentTable(t *testing.T) {
	ctx := context.Background()
	db := emulator.DynamoDBClient(emulator.DynamoDB(t))
	q := emulator.SQSClient(emulator.SQS(t))
	n := testNames()
	wrong := infra.ReadModelTable(n.EventsTable) // string sort key, no indexes, no stream
	if _, err := db.CreateTable(ctx, wrong); err != nil {
		t.Fatal(err)
	}
	_, err := infra.Ensure(ctx, db, q, n)
	if err == nil || !strings.Contains(err.Error(), n.EventsTable) {
		t.Fatalf("Ensure over a different events table: %v", err)
	}
}

// An events table created by earlier versions, with the three GSIs the queries used to
// read, is accepted as it is: the new code never uses them, and dropping them is a
// separate UpdateTable step (README).
func TestEnsureAcceptsTheOldEventsTableWithGSIs(t *testing.T) {
	ctx := context.Background()
	db := emulator.DynamoDBClient(emulator.DynamoDB(t))
	q := emulator.SQSClient(emulator.SQS(t))
	n := testNames()
	if _, err := db.CreateTable(ctx, OldEventsTable(n.EventsTable)); err != nil {
		t.Fatal(err)
	}
	if _, err := infra.Ensure(ctx, db, q, n); err != nil {
		t.Fatalf("Ensure over the old events table: %v", err)
	}
	d, err := db.DescribeTable(ctx, &dynamodb.DescribeTableInput{TableName: aws.String(n.EventsTable)})
	if err != nil || len(d.Table.GlobalSecondaryIndexes) != 3 {
		t.Fatalf("old table changed: %v %v", d, err)
	}
}

// OldEventsTable is the events table as versions before the index table created it:
// three GSIs with ProjectionType ALL.
func OldEventsTable(name string) *dynamodb.CreateTableInput {
	in := infra.EventsTable(name)
	for _, a := range []string{infra.AttrEventType, infra.AttrAggregateType, infra.AttrCorrelationID, infra.AttrTimeKey} {
		in.AttributeDefinitions = append(in.AttributeDefinitions, types.AttributeDefinition{AttributeName: aws.String(a), AttributeType: types.ScalarAttributeTypeS})
	}
	for idx, hash := range map[string]string{"byType": infra.AttrEventType, "byAggregateType": infra.AttrAggregateType, "byCorrelation": infra.AttrCorrelationID} {
		in.GlobalSecondaryIndexes = append(in.GlobalSecondaryIndexes, types.GlobalSecondaryIndex{IndexName: aws.String(idx),
			KeySchema: []types.KeySchemaElement{{AttributeName: aws.String(hash), KeyType: types.KeyTypeHash},
				{AttributeName: aws.String(infra.AttrTimeKey), KeyType: types.KeyTypeRange}},
			Projection: &types.Projection{ProjectionType: types.ProjectionTypeAll}})
	}
	return in
}
