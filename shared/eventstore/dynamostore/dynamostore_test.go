package dynamostore_test

import (
	"context"
	"fmt"
	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/ecmstore/ecmstore/shared/event"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/dynamodb"

	"github.com/ecmstore/ecmstore/infra"
	"github.com/ecmstore/ecmstore/shared/docstore"
	"github.com/ecmstore/ecmstore/shared/docstore/doctest"
	"github.com/ecmstore/ecmstore/shared/emulator"
	"github.com/ecmstore/ecmstore/shared/eventstore"
	"github.com/ecmstore/ecmstore/shared/eventstore/dynamostore"
	"github.com/ecmstore/ecmstore/shared/eventstore/storetest"
)

func TestMain(m *testing.M) { emulator.Main(m) }

// tables creates a fresh events table and read-model table on the emulator.
func tables(t testing.TB, opts ...func(*dynamodb.Options)) (*dynamodb.Client, string, string) {
	t.Helper()
	ep := emulator.DynamoDB(t)
	db := emulator.DynamoDBClient(ep, opts...)
	suffix := fmt.Sprintf("%d", time.Now().UnixNano())
	events, models := "events-"+suffix, "models-"+suffix
	for _, in := range []*dynamodb.CreateTableInput{infra.EventsTable(events), infra.ReadModelTable(models)} {
		if _, err := db.CreateTable(context.Background(), in); err != nil {
			t.Fatalf("create table: %v", err)
		}
	}
	return db, events, models
}

func TestConformance(t *testing.T) {
	db, events, _ := tables(t)
	s := dynamostore.New(db, events)
	storetest.Run(t, func(*testing.T) eventstore.Backend { return s })
}

func TestDocs(t *testing.T) {
	db, _, models := tables(t)
	d := dynamostore.NewDocs(db, models)
	doctest.Run(t, func(*testing.T) docstore.Store { return d })
}

// With a snapshot TTL, snapshots carry expiresAt and DeleteSnapshots leaves them to TTL.
func TestSnapshotTTL(t *testing.T) {
	ctx := context.Background()
	db, events, _ := tables(t)
	s := dynamostore.New(db, events, dynamostore.WithSnapshotTTL(time.Hour))
	st := eventstore.Stream{Type: "T", ID: "ttl"}
	if _, err := s.Append(ctx, st, 0, []event.Event{event.MustNew("E", 1)}); err != nil {
		t.Fatal(err)
	}
	if err := s.SaveSnapshot(ctx, eventstore.Snapshot{Stream: st, Version: 1, StateVersion: 1, Timestamp: time.Now(), State: []byte(`{}`)}); err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteSnapshots(ctx, st, 100); err != nil {
		t.Fatal(err)
	}
	out, err := db.GetItem(ctx, &dynamodb.GetItemInput{TableName: aws.String(events), Key: map[string]types.AttributeValue{
		"pk": &types.AttributeValueMemberS{Value: st.Key()}, "sk": &types.AttributeValueMemberN{Value: "1.5"}}})
	if err != nil || out.Item == nil {
		t.Fatalf("snapshot gone: %v", err)
	}
	exp, ok := out.Item["expiresAt"].(*types.AttributeValueMemberN)
	if !ok || exp.Value <= fmt.Sprint(time.Now().Unix()) {
		t.Fatalf("expiresAt = %v", out.Item["expiresAt"])
	}
}
