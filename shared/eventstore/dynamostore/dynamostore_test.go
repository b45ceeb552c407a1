package dynamostore_test

import (
	"context"
	"fmt"
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
