package main

import (
	"context"
	"fmt"
	"log/slog"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/dynamodb"

	"github.com/ecmstore/ecmstore/infra"
	"github.com/ecmstore/ecmstore/shared/emulator"
	"github.com/ecmstore/ecmstore/shared/event"
	"github.com/ecmstore/ecmstore/shared/eventstore"
	"github.com/ecmstore/ecmstore/shared/eventstore/dynamostore"
)

func TestMain(m *testing.M) { emulator.Main(m) }

// The command, configured as an operator would (endpoint and credentials from the
// environment), indexes events written without an indexer, so Query finds them.
func TestBackfillCommand(t *testing.T) {
	ctx := context.Background()
	ep := emulator.DynamoDB(t)
	t.Setenv("AWS_ENDPOINT_URL_DYNAMODB", string(ep))
	t.Setenv("AWS_REGION", "us-east-1")
	t.Setenv("AWS_ACCESS_KEY_ID", "local")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "local")
	db := emulator.DynamoDBClient(ep)
	s := fmt.Sprint(time.Now().UnixNano())
	events, index := "bf-events-"+s, "bf-index-"+s
	for _, in := range []*dynamodb.CreateTableInput{infra.EventsTable(events), infra.IndexTable(index)} {
		if _, err := db.CreateTable(ctx, in); err != nil {
			t.Fatal(err)
		}
		if err := dynamodb.NewTableExistsWaiter(db).Wait(ctx, &dynamodb.DescribeTableInput{TableName: in.TableName}, time.Minute); err != nil {
			t.Fatal(err)
		}
	}
	store := dynamostore.New(db, events, dynamostore.WithIndex(dynamostore.IndexConfig{Table: index, Shards: 2}))
	for i := range 5 {
		if _, err := store.Append(ctx, eventstore.Stream{Type: "Old", ID: fmt.Sprint(i)}, eventstore.NoStream,
			[]event.Event{event.MustNew("Happened", i)}); err != nil {
			t.Fatal(err)
		}
	}
	n, err := run(ctx, slog.Default(), events, index, 2, 2)
	if err != nil || n != 5 {
		t.Fatalf("backfill: %d events, %v; want 5", n, err)
	}
	p, err := store.Query(ctx, eventstore.Filter{AggregateType: "Old"})
	if err != nil || len(p.Events) != 5 {
		t.Fatalf("query after the backfill: %d events, %v; want 5", len(p.Events), err)
	}
}
